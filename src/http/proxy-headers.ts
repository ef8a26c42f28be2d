// Header rules of the proxy, both ways. Owns: refusing requests whose framing or Host is
// ambiguous or invalid (they are answered by fedtls, never forwarded); dropping hop-by-hop headers and
// those named in `Connection`; replacing what a client claims in X-Forwarded-* with what
// fedtls saw (keeping the claim only from a trusted proxy); and keeping everything else
// exactly as sent: order, case, and repeats (several Set-Cookie stay several).
// Works on Node's flat rawHeaders arrays ([name, value, name, value, ...]) in one pass each.

/** Removed in both directions (RFC 9110 §7.6.1, plus the de-facto Keep-Alive/Proxy-Connection). */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-authorization', 'proxy-authenticate',
]);

/** Set by fedtls from what it saw; a client's own values are never passed on as-is. */
const FORWARDING = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-real-ip', 'forwarded']);

/** Never dropped because a client listed them in Connection. */
const PROTECTED = new Set(['host', 'content-length']);

/** Header names listed in every Connection header (lower case); null when there are none. */
function connectionListed(raw: readonly string[]): Set<string> | null {
  let listed: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length !== 10 || name.toLowerCase() !== 'connection') continue;
    for (const token of raw[i + 1]!.split(',')) {
      const option = token.trim().toLowerCase();
      if (option && !PROTECTED.has(option)) (listed ??= new Set()).add(option);
    }
  }
  return listed;
}

/** host[:port] (RFC 9112 §3.2, RFC 3986 §3.2.2): a reg-name or an IP literal in brackets; no userinfo, never empty. */
const VALID_HOST = /^(?:\[[0-9A-Za-z\-._~!$&'()*+,;=:%]+\]|[0-9A-Za-z\-._~!$&'()*+,;=%]+)(?::[0-9]{0,5})?$/;

/** Why a Host value is refused, in words for the client (refusals only). */
function badHostReason(value: string): string {
  const shown = JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (value === '') return 'the Host header is empty; send the name of the server (Host: example.org)';
  if (value.includes('@')) return `the Host header ${shown} has userinfo ("…@"); send only host[:port]`;
  return `the Host header ${shown} is not a valid host[:port]`;
}

export interface ForwardedFacts {
  /** The TCP peer, IPv4 as a dotted quad. */
  peer: string;
  /** The peer is a configured trusted proxy: keep its X-Forwarded-For chain and Proto. */
  peerIsTrusted: boolean;
  /** Replaces Host (absolute-form targets; HTTP/1.0 requests without Host). */
  host?: string;
  /** fedtls answered `Expect: 100-continue` itself: do not pass the expectation on. */
  dropExpect: boolean;
}

export type RequestHeaderVerdict =
  | { ok: true; headers: string[] }
  | { ok: false; status: number; errcode: string; reason: string };

/**
 * The headers to send to the backend, or why the request must be refused. The parser has
 * already refused conflicting Content-Length, Content-Length with Transfer-Encoding,
 * obs-fold and bad characters; this adds the rules it leaves to us.
 */
export function requestHeadersForBackend(raw: readonly string[], httpVersion: string, facts: ForwardedFacts): RequestHeaderVerdict {
  const listed = connectionListed(raw);
  const out: string[] = [];
  let hosts = 0;
  let claimedFor: string | null = null;
  let claimedProto: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (lower === 'host') {
      hosts += 1;
      if (!VALID_HOST.test(value)) return { ok: false, status: 400, errcode: 'M_UNRECOGNIZED', reason: badHostReason(value) };
      if (facts.host !== undefined) continue;
    } else if (lower === 'transfer-encoding') {
      if (value.trim().toLowerCase() !== 'chunked') {
        return { ok: false, status: 501, errcode: 'M_UNRECOGNIZED', reason: `Transfer-Encoding "${value.slice(0, 40)}" is not supported; send the body with Content-Length or "Transfer-Encoding: chunked"` };
      }
      continue;
    } else if (HOP_BY_HOP.has(lower) || (listed !== null && listed.has(lower))) {
      continue;
    } else if (FORWARDING.has(lower)) {
      if (facts.peerIsTrusted) {
        if (lower === 'x-forwarded-for') claimedFor = claimedFor === null ? value : `${claimedFor}, ${value}`;
        else if (lower === 'x-forwarded-proto') claimedProto ??= value;
      }
      continue;
    } else if (facts.dropExpect && lower === 'expect') {
      continue;
    }
    out.push(name, value);
  }
  if (hosts > 1) return { ok: false, status: 400, errcode: 'M_UNRECOGNIZED', reason: 'the request has more than one Host header' };
  if (hosts === 0 && httpVersion !== '1.0' && facts.host === undefined) {
    return { ok: false, status: 400, errcode: 'M_UNRECOGNIZED', reason: 'HTTP/1.1 requests must carry a Host header' };
  }
  if (facts.host !== undefined) out.unshift('Host', facts.host);
  out.push(
    'X-Forwarded-For', claimedFor === null ? facts.peer : `${claimedFor}, ${facts.peer}`,
    'X-Forwarded-Proto', claimedProto ?? 'https',
  );
  return { ok: true, headers: out };
}

/** The backend's response headers for the client: everything but hop-by-hop and Connection-listed. */
export function responseHeadersForClient(raw: readonly string[]): string[] {
  const listed = connectionListed(raw);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase();
    if (HOP_BY_HOP.has(lower) || (listed !== null && listed.has(lower))) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}
