// DNS as a remote homeserver sees it, for `fedtls check`: SRV, CNAME and address lookups
// through either this machine's resolver or one given DNS server (`--resolver HOST:PORT`).
// Promises: lookups never throw; "no such name/record" is an empty answer, anything else
// (timeout, SERVFAIL, refused) is reported as an error code the report can explain. The
// `lookup` function lets HTTP/TLS connections resolve names through the same DNS.

import dns, { type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP } from 'node:net';

export interface SrvTarget {
  name: string;
  port: number;
  priority: number;
  weight: number;
}

export type DnsAnswer<T> = { ok: true; records: T[] } | { ok: false; code: string };

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;
export type LookupFunction = (hostname: string, options: LookupOptions, callback: LookupCallback) => void;

export interface DnsClient {
  /** For the report: "this machine's resolver" or "DNS server 127.0.0.1:5353". */
  description: string;
  srv(name: string): Promise<DnsAnswer<SrvTarget>>;
  /** The CNAME target(s) of `name`; empty when `name` is not an alias. */
  cname(name: string): Promise<DnsAnswer<string>>;
  /** A and AAAA addresses of `name` (CNAMEs followed). */
  addresses(name: string): Promise<DnsAnswer<string>>;
  lookup: LookupFunction;
}

const NO_ANSWER = new Set(['ENOTFOUND', 'ENODATA', 'NXDOMAIN', 'ENONAME']);

async function answer<T>(query: () => Promise<T[]>): Promise<DnsAnswer<T>> {
  try {
    return { ok: true, records: await query() };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
    return NO_ANSWER.has(code) ? { ok: true, records: [] } : { ok: false, code };
  }
}

const stripDot = (name: string): string => name.replace(/\.$/, '').toLowerCase();

/** Validates `HOST:PORT` / `[V6]:PORT` / `HOST` for --resolver; returns the form node:dns accepts or null. */
export function parseResolverAddress(text: string): string | null {
  const bracketed = /^\[([0-9a-f:.]+)\](?::(\d{1,5}))?$/i.exec(text);
  if (bracketed && isIP(bracketed[1]!) === 6) return bracketed[2] ? `[${bracketed[1]}]:${bracketed[2]}` : bracketed[1]!;
  if (isIP(text)) return text;
  const plain = /^([\d.]+):(\d{1,5})$/.exec(text);
  if (plain && isIP(plain[1]!) === 4 && Number(plain[2]) > 0 && Number(plain[2]) < 65536) return text;
  return null;
}

export function createDnsClient(options: { server: string | null; timeoutMs: number }): DnsClient {
  const resolver = new dns.promises.Resolver({ timeout: Math.min(options.timeoutMs, 5000), tries: 2 });
  if (options.server) resolver.setServers([options.server]);

  const addresses = async (name: string): Promise<DnsAnswer<string>> => {
    if (isIP(name)) return { ok: true, records: [name] };
    if (!options.server) {
      // Like most homeservers: the system's getaddrinfo (honours /etc/hosts).
      return answer(async () => (await dns.promises.lookup(name, { all: true })).map((a) => a.address));
    }
    const [v4, v6] = await Promise.all([answer(() => resolver.resolve4(name)), answer(() => resolver.resolve6(name))]);
    if (!v4.ok && !v6.ok) return v4;
    return { ok: true, records: [...(v4.ok ? v4.records : []), ...(v6.ok ? v6.records : [])] };
  };

  const lookup: LookupFunction = (hostname, lookupOptions, callback) => {
    addresses(hostname).then((result) => {
      const records = result.ok ? result.records.filter((a) => !lookupOptions.family || isIP(a) === lookupOptions.family) : [];
      if (records.length === 0) {
        const error: NodeJS.ErrnoException = new Error(`${hostname}: ${result.ok ? 'no A/AAAA record' : result.code}`);
        error.code = result.ok ? 'ENOTFOUND' : result.code;
        callback(error, '');
        return;
      }
      if (lookupOptions.all) callback(null, records.map((address) => ({ address, family: isIP(address) })));
      else callback(null, records[0]!, isIP(records[0]!));
    }, (error: NodeJS.ErrnoException) => callback(error, ''));
  };

  return {
    description: options.server ? `DNS server ${options.server}` : "this machine's resolver",
    srv: (name) => answer(async () => (await resolver.resolveSrv(name))
      .map((r) => ({ name: stripDot(r.name), port: r.port, priority: r.priority, weight: r.weight }))
      .sort((a, b) => a.priority - b.priority || b.weight - a.weight)),
    cname: (name) => answer(async () => (await resolver.resolveCname(name)).map(stripDot)),
    addresses,
    lookup,
  };
}
