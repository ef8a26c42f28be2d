// The Matrix spec's "Resolving server names", step by step, as a remote homeserver runs it:
// 1. IP literal / 2. explicit port → used as is; 3. /.well-known/matrix/server (its m.server
// then goes through the same IP / port / SRV / 8448 steps); 4. SRV _matrix-fed._tcp;
// 5. deprecated SRV _matrix._tcp; 6. port 8448. Promises: the targets are exactly where peers
// would connect, with the certificate name, SNI and Host header they would use; every
// decision is a finding (SRV targets that are CNAMEs are flagged: RFC 2782 forbids them).

import { isIP } from 'node:net';
import { isValidServerName, parseServerName } from '../config/server-name.js';
import type { DnsClient } from './dns.js';
import type { FederationTarget } from './probe.js';
import type { Finding } from './report.js';
import { fetchServerWellKnown } from './well-known-client.js';

export interface ResolveOptions {
  dns: DnsClient;
  ca: string[] | undefined;
  timeoutMs: number;
  /** Port of the https well-known lookup: 443 except in test setups. */
  wellKnownPort: number;
  /** The fallback federation port: 8448 except in test setups. */
  fallbackPort: number;
  /** fedtls's own well_known.server when checking the configured server_name: compared with what peers see. */
  configuredDelegation?: string | null;
}

export interface Resolution {
  findings: Finding[];
  targets: FederationTarget[];
}

async function srvTargets(name: string, certNameReason: string, options: ResolveOptions, findings: Finding[]): Promise<FederationTarget[] | null> {
  for (const [service, deprecated] of [['_matrix-fed._tcp', false], ['_matrix._tcp', true]] as const) {
    const query = `${service}.${name}`;
    const result = await options.dns.srv(query);
    if (!result.ok) {
      findings.push({ check: 'srv', status: 'warn', summary: `SRV lookup of ${query} failed (${result.code})`,
        details: ['peers that get the same error may treat it as "no SRV record" and use port 8448, or give up'],
        fix: `make the DNS servers for ${name} answer SRV queries (NOERROR with or without records)` });
      continue;
    }
    if (result.records.length === 0) {
      findings.push({ check: 'srv', status: 'info', summary: `no SRV record ${query}` });
      continue;
    }
    if (result.records.length === 1 && (result.records[0]!.name === '' || result.records[0]!.name === '.')) {
      findings.push({ check: 'srv', status: 'fail', summary: `${query} says the service is not available here (target ".")`, fix: `remove the SRV record ${query}, or point it at your federation host` });
      return [];
    }
    const listed = result.records.map((r) => `${r.name}:${r.port} (priority ${r.priority}, weight ${r.weight})`).join(', ');
    findings.push(deprecated
      ? { check: 'srv', status: 'warn', summary: `${query} → ${listed}`, details: ['this SRV name is deprecated; peers that no longer read it fall back to port 8448'], fix: `publish the same record as _matrix-fed._tcp.${name}` }
      : { check: 'srv', status: 'ok', summary: `${query} → ${listed}` });
    const targets: FederationTarget[] = [];
    for (const record of result.records) {
      const alias = await options.dns.cname(record.name);
      if (alias.ok && alias.records.length > 0) {
        findings.push({
          check: 'srv', status: 'warn', summary: `the SRV target ${record.name} is a CNAME (→ ${alias.records.join(', ')})`,
          details: ['RFC 2782 forbids SRV targets that are aliases; many resolvers follow them, some peers do not'],
          fix: `point ${query} at ${alias.records[0]} directly, or give ${record.name} its own A/AAAA records`,
        });
      }
      targets.push({ host: record.name, port: record.port, certName: name, hostHeader: name, certNameReason });
    }
    return targets;
  }
  return null;
}

/** Steps for a host name without a port (the server name, or a delegated host). */
async function hostWithoutPort(name: string, certNameReason: string, options: ResolveOptions, findings: Finding[]): Promise<FederationTarget[]> {
  const fromSrv = await srvTargets(name, certNameReason, options, findings);
  if (fromSrv) return fromSrv;
  findings.push({ check: 'fallback', status: 'info', summary: `no SRV records: peers connect to ${name} port ${options.fallbackPort}` });
  return [{ host: name, port: options.fallbackPort, certName: name, hostHeader: name, certNameReason }];
}

/** A Matrix server name: the one rule of config/server-name.ts, so check and check-config agree. */
export { isValidServerName };

export async function resolveServerName(serverName: string, options: ResolveOptions): Promise<Resolution> {
  const findings: Finding[] = [];
  const parts = parseServerName(serverName);
  if (!parts.ok) {
    findings.push({ check: 'server_name', status: 'fail', summary: `"${serverName}" is not a valid server name: it ${parts.problem}`, fix: parts.fix });
    return { findings, targets: [] };
  }
  const host = parts.host.toLowerCase();
  if (isIP(host)) {
    const port = parts.port ?? options.fallbackPort;
    findings.push({ check: 'server_name', status: 'info', summary: `${serverName} is an IP literal: peers connect to port ${port} directly (no .well-known, no SRV); the certificate must be valid for the IP address` });
    return { findings, targets: [{ host, port, certName: host, hostHeader: serverName, certNameReason: 'the server name is this IP address' }] };
  }
  if (parts.port !== null) {
    findings.push({ check: 'server_name', status: 'info', summary: `${serverName} has an explicit port: peers connect to ${host} port ${parts.port} directly (no .well-known, no SRV)` });
    return { findings, targets: [{ host, port: parts.port, certName: host, hostHeader: serverName, certNameReason: 'it is the host of the server name' }] };
  }
  findings.push({ check: 'server_name', status: 'info', summary: `${serverName}: a host name without a port; peers look for /.well-known/matrix/server first` });

  const wellKnown = await fetchServerWellKnown(host, { dns: options.dns, ca: options.ca, port: options.wellKnownPort, timeoutMs: options.timeoutMs });
  findings.push(...wellKnown.findings);
  const delegation = wellKnown.delegation;
  const configured = options.configuredDelegation;
  if (configured && configured !== delegation?.text) {
    findings.push({
      check: 'well_known', status: 'warn',
      summary: `fedtls is configured to serve {"m.server": "${configured}"} (well_known.server), but peers ${delegation ? `see "${delegation.text}"` : 'see no delegation'} at https://${host}/`,
      fix: `fedtls answers /.well-known/matrix/server only on its own listeners: make port 443 of ${host} reach fedtls (listen.https), or serve the same file from the web server there`,
    });
  }
  if (!delegation) {
    return { findings, targets: await hostWithoutPort(host, 'it is the server name (no delegation in effect)', options, findings) };
  }
  const reason = `it is the delegated host in ${host}'s /.well-known/matrix/server`;
  if (isIP(delegation.host)) {
    const port = delegation.port ?? options.fallbackPort;
    return { findings, targets: [{ host: delegation.host, port, certName: delegation.host, hostHeader: delegation.text, certNameReason: reason }] };
  }
  if (delegation.port !== null) {
    return { findings, targets: [{ host: delegation.host, port: delegation.port, certName: delegation.host, hostHeader: delegation.text, certNameReason: reason }] };
  }
  return { findings, targets: await hostWithoutPort(delegation.host, reason, options, findings) };
}
