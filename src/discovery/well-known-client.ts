// Step 3 of the Matrix spec's "Resolving server names" as a remote homeserver does it:
// GET https://<name>/.well-known/matrix/server, following redirects (loops detected), then
// validating the JSON and its `m.server` (host[:port]; no scheme, no path). Promises: the
// outcome says whether peers would use a delegation (`delegation`), and every finding
// explains what peers do with what they got; cache headers are reported because peers
// keep the answer (or the failure) for that long.

import { isIP } from 'node:net';
import { parseServerName } from '../config/server-name.js';
import type { DnsClient } from './dns.js';
import { httpsGet, humanDuration, type HttpsGetResult } from './https-get.js';
import { describeTlsError } from './tls-errors.js';
import type { Finding } from './report.js';

const MAX_REDIRECTS = 10;
/** Synapse reads at most 50 KiB of a well-known response. */
const MAX_BODY_BYTES = 50 * 1024;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

export interface Delegation {
  host: string;
  port: number | null;
  /** As written in m.server. */
  text: string;
}

export interface WellKnownOutcome {
  delegation: Delegation | null;
  findings: Finding[];
}

export interface WellKnownOptions {
  dns: DnsClient;
  ca: string[] | undefined;
  /** Port of the HTTPS lookup; 443 except in test setups. */
  port: number;
  timeoutMs: number;
}

/** Parses an m.server value; returns the delegation or why peers reject it. */
export function parseMServer(value: string): { ok: true; delegation: Delegation } | { ok: false; reason: string; fix: string } {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(value);
  if (scheme) {
    const bare = value.slice(scheme[0].length).replace(/\/.*$/, '');
    return { ok: false, reason: `"${value}" has a scheme (${scheme[1]}://); m.server is host[:port] only`, fix: `serve {"m.server": "${bare}"} (no ${scheme[1]}://, no path)` };
  }
  if (value.includes('/')) {
    return { ok: false, reason: `"${value}" has a path; m.server is host[:port] only`, fix: `serve {"m.server": "${value.replace(/\/.*$/, '')}"}` };
  }
  // The rule fedtls's own well_known.server is checked by (config/server-name.ts).
  const parts = parseServerName(value);
  if (!parts.ok) return { ok: false, reason: `"${value}" ${parts.problem}`, fix: `in m.server, ${parts.fix}` };
  return { ok: true, delegation: { host: parts.host.toLowerCase(), port: parts.port, text: value } };
}

/** How long peers keep this answer, from Cache-Control/Expires (spec: 24 h when absent, at most 48 h). */
function describeCaching(headers: HttpsGetResult['headers']): string {
  const cacheControl = headers['cache-control'];
  const expires = headers.expires;
  const shown = [cacheControl ? `Cache-Control: ${cacheControl}` : null, expires ? `Expires: ${expires}` : null].filter(Boolean).join(', ');
  if (cacheControl && /no-store|no-cache/i.test(cacheControl)) return `${shown}: peers fetch it again every time (extra latency, but changes apply at once)`;
  const maxAge = cacheControl ? /max-age=(\d+)/i.exec(cacheControl) : null;
  if (maxAge) return `${shown}: peers keep it for ${humanDuration(Math.min(Number(maxAge[1]), 172_800) * 1000)}`;
  if (expires && !Number.isNaN(Date.parse(expires))) return `${shown}: peers keep it until ${new Date(Date.parse(expires)).toISOString()}`;
  return 'no cache headers: peers keep it for 24 h by default (a changed delegation takes up to a day to be seen)';
}

function isConnectionError(code: string | undefined): boolean {
  return ['ECONNREFUSED', 'ENOTFOUND', 'ENODATA', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNRESET', 'EAI_AGAIN', 'EADDRNOTAVAIL'].includes(code ?? '');
}

function getWellKnown(url: URL, options: WellKnownOptions, verify: boolean): Promise<HttpsGetResult> {
  return httpsGet({
    url, servername: isIP(url.hostname) ? undefined : url.hostname, ca: options.ca, rejectUnauthorized: verify,
    lookup: options.dns.lookup, timeoutMs: options.timeoutMs, maxBodyBytes: MAX_BODY_BYTES,
  });
}

/** After a TLS failure: would the file have delegated if its certificate were fine? (Read without verification; only to tell the admin.) */
async function delegationBehindBadTls(url: URL, options: WellKnownOptions): Promise<boolean> {
  try {
    const response = await getWellKnown(url, options, false);
    const document = response.status === 200 ? JSON.parse(response.body) as unknown : null;
    return typeof document === 'object' && document !== null && typeof (document as Record<string, unknown>)['m.server'] === 'string';
  } catch {
    return false;
  }
}

export async function fetchServerWellKnown(name: string, options: WellKnownOptions): Promise<WellKnownOutcome> {
  const first = new URL(`https://${name}${options.port === 443 ? '' : `:${options.port}`}/.well-known/matrix/server`);
  const findings: Finding[] = [];
  const chain: string[] = [];
  const noDelegation = (status: Finding['status'], summary: string, fix?: string, details?: string[]): WellKnownOutcome => {
    findings.push({ check: 'well_known', status, summary, ...(details?.length ? { details } : {}), ...(fix ? { fix } : {}) });
    return { delegation: null, findings };
  };
  const peersSkip = 'peers ignore the file and go on with SRV records and port 8448';

  let url = first;
  for (let hop = 0; ; hop += 1) {
    if (chain.includes(url.href)) {
      return noDelegation('fail', `redirect loop: ${[...chain, url.href].join(' → ')}`,
        `serve /.well-known/matrix/server directly with status 200 at ${first.origin} (no redirect), or remove the redirect rule that sends it back`,
        [peersSkip]);
    }
    chain.push(url.href);
    if (hop > MAX_REDIRECTS) {
      return noDelegation('fail', `more than ${MAX_REDIRECTS} redirects: ${chain.join(' → ')}`, 'serve the file directly with status 200', [peersSkip]);
    }
    if (url.protocol !== 'https:') {
      return noDelegation('fail', `redirected to ${url.href}, which is not https`, `serve the file over https at ${first.origin} without redirects`, [peersSkip]);
    }
    let response: HttpsGetResult;
    try {
      response = await getWellKnown(url, options, true);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const where = chain.length > 1 ? ` (after redirects: ${chain.join(' → ')})` : '';
      if (isConnectionError(code) && hop === 0) {
        return noDelegation('info', `no HTTPS server answers at ${url.host} (${code}): no delegation`, undefined,
          ['peers go on with SRV records and port 8448; fine when server_name itself serves federation']);
      }
      const tls = describeTlsError(error as NodeJS.ErrnoException, url.hostname);
      if (tls) {
        const fix = `${tls.fix} (on the web server for ${url.hostname}, port ${url.port || 443})`;
        if (await delegationBehindBadTls(url, options)) {
          return noDelegation('fail', `the delegation file at ${url.href}${where} is there, but peers cannot read it: ${tls.summary}`, fix, [peersSkip]);
        }
        return noDelegation('warn', `an HTTPS server answers at ${url.host}${where} with a certificate peers refuse: ${tls.summary}`,
          `${fix}, if you mean to delegate; otherwise nothing to do`, ['peers treat this as "no delegation" and go on with SRV records and port 8448']);
      }
      return noDelegation('fail', `fetching ${url.href}${where} failed: ${code ?? (error as Error).message}`, `make https://${url.host}/.well-known/matrix/server answer 200`, [peersSkip]);
    }

    if (REDIRECT_STATUSES.has(response.status)) {
      const location = response.headers.location;
      if (!location) return noDelegation('fail', `${url.href} answered ${response.status} without a Location header`, 'serve the file directly with status 200', [peersSkip]);
      try {
        url = new URL(location, url);
      } catch {
        return noDelegation('fail', `${url.href} redirects to "${location}", which is not a URL`, 'serve the file directly with status 200', [peersSkip]);
      }
      continue;
    }

    const via = chain.length > 1 ? [`followed redirects: ${chain.join(' → ')} (peers do; serving it directly saves them a round trip)`] : [];
    const caching = describeCaching(response.headers);
    if (response.status === 404 || response.status === 410) {
      return noDelegation('info', `${url.href} answered ${response.status}: no delegation`, undefined,
        [...via, 'peers go on with SRV records and port 8448; fine when server_name itself serves federation']);
    }
    if (response.status !== 200) {
      return noDelegation('fail', `${url.href} answered ${response.status}`, `make it answer 200 with {"m.server": "<host>[:<port>]"}, or 404 if you do not delegate`, [...via, peersSkip, `cache: ${caching}`]);
    }
    let document: unknown;
    try {
      document = JSON.parse(response.body);
    } catch {
      const start = response.body.slice(0, 60).replace(/\s+/g, ' ');
      return noDelegation('fail', `${url.href} is not JSON (it starts with "${start}")`, 'serve exactly {"m.server": "<host>[:<port>]"} with Content-Type: application/json', [...via, peersSkip]);
    }
    const value = typeof document === 'object' && document !== null && !Array.isArray(document) ? (document as Record<string, unknown>)['m.server'] : undefined;
    if (typeof value !== 'string') {
      return noDelegation('fail', `${url.href} has no "m.server" text in ${response.body.slice(0, 100)}`, 'serve {"m.server": "<host>[:<port>]"}', [...via, peersSkip]);
    }
    const parsed = parseMServer(value);
    if (!parsed.ok) {
      return noDelegation('fail', `m.server is invalid: ${parsed.reason}`, parsed.fix, [...via, peersSkip]);
    }
    const contentType = String(response.headers['content-type'] ?? '');
    const details = [...via, `cache: ${caching}`];
    if (!/json/i.test(contentType)) details.push(`Content-Type is "${contentType || 'missing'}"; peers accept it, browsers and some tools want application/json`);
    findings.push({ check: 'well_known', status: 'ok', summary: `${first.href} delegates to ${JSON.stringify(value)}`, details });
    return { delegation: parsed.delegation, findings };
  }
}
