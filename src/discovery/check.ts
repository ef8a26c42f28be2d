// `fedtls check`'s whole run: resolve the server name as peers do, look up the addresses of
// every resulting target, probe each address, and gather one report. The options that
// replace port 443 and 8448 exist for test setups on loopback only.

import tls from 'node:tls';
import { createDnsClient } from './dns.js';
import { probeAddress } from './probe.js';
import { buildReport, type CheckReport, type Finding } from './report.js';
import { resolveServerName } from './resolve.js';

export interface CheckOptions {
  serverName: string;
  /** DNS server as HOST:PORT (node:dns form); null = this machine's resolver. */
  resolver: string | null;
  /** Extra trusted roots (PEM texts), added to the system roots. */
  extraRoots: string[];
  timeoutMs: number;
  wellKnownPort: number;
  fallbackPort: number;
  /** well_known.server from the config, when the server name came from it. */
  configuredDelegation: string | null;
}

export async function runCheck(options: CheckOptions): Promise<CheckReport> {
  const dns = createDnsClient({ server: options.resolver, timeoutMs: options.timeoutMs });
  const ca = options.extraRoots.length > 0 ? [...tls.rootCertificates, ...options.extraRoots] : undefined;
  const resolution = await resolveServerName(options.serverName, {
    dns, ca, timeoutMs: options.timeoutMs, wellKnownPort: options.wellKnownPort, fallbackPort: options.fallbackPort,
    configuredDelegation: options.configuredDelegation,
  });
  const findings: Finding[] = [...resolution.findings];
  const probes: Promise<Finding[]>[] = [];
  for (const target of resolution.targets) {
    const addresses = await dns.addresses(target.host);
    if (!addresses.ok || addresses.records.length === 0) {
      findings.push({
        check: 'address', status: 'fail',
        summary: addresses.ok ? `${target.host} has no A or AAAA record` : `looking up ${target.host} failed (${addresses.code})`,
        fix: `add an A (and AAAA, if it has IPv6) record for ${target.host} pointing at the machine that runs fedtls`,
      });
      continue;
    }
    findings.push({ check: 'address', status: 'ok', summary: `${target.host} → ${addresses.records.join(', ')}` });
    for (const address of addresses.records) {
      probes.push(probeAddress(target, address, { serverName: options.serverName, ca, timeoutMs: options.timeoutMs }));
    }
  }
  for (const probed of await Promise.all(probes)) findings.push(...probed);
  if (resolution.targets.length === 0 && !findings.some((f) => f.status === 'fail')) {
    findings.push({ check: 'address', status: 'fail', summary: 'no address to connect to', fix: 'publish a working .well-known, SRV record or A record' });
  }
  return buildReport(options.serverName, dns.description, findings);
}
