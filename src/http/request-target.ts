// The request-target as the client sent it. Owns: telling the target forms apart (origin-form
// `/path?q`, absolute-form `https://host/path?q`, asterisk-form `*`), returning the exact
// bytes to forward (never decoded, re-encoded, merged or case-changed: federation
// signatures cover them), and a normalised path used ONLY to decide whether a path is
// blocked, so `/_synapse/%61dmin` or `//_synapse/./admin` cannot slip past `block_paths`
// (a target with a "#" fragment is refused outright).
// Also the words for a target that is refused, whether by Node's parser or here.

export type RequestTarget =
  /** Forward `target` unchanged. */
  | { form: 'origin'; target: string }
  /** Forward the origin-form part unchanged; the authority replaces Host (RFC 9112 §3.2.2). */
  | { form: 'absolute'; target: string; authority: string }
  /** `OPTIONS *`. */
  | { form: 'asterisk'; target: '*' }
  | { form: 'invalid'; reason: string };

const ABSOLUTE_FORM = /^(https?):\/\/([^/?#]*)([^#]*)$/i;
const NOT_A_PATH = 'the request-target must start with "/" (or be an absolute URL such as https://host/path, or "*" for OPTIONS)';

const FRAGMENT = 'the request-target contains "#": a URL fragment is never sent in an HTTP request; leave it out (or percent-encode a literal "#" as %23)';

export function parseRequestTarget(raw: string, method: string): RequestTarget {
  // No target form allows "#" (RFC 9112 §3.2). Refused before anything else, so what fedtls
  // serves or blocks cannot be reached by a backend that reads "#" differently than we do.
  if (raw.includes('#')) return { form: 'invalid', reason: FRAGMENT };
  if (raw.charCodeAt(0) === 0x2f /* '/' */) return { form: 'origin', target: raw };
  if (raw === '*') {
    return method === 'OPTIONS' ? { form: 'asterisk', target: '*' } : { form: 'invalid', reason: 'the request-target "*" is only valid with OPTIONS' };
  }
  const absolute = ABSOLUTE_FORM.exec(raw);
  if (!absolute) return { form: 'invalid', reason: NOT_A_PATH };
  const authority = absolute[2]!;
  if (authority === '' || authority.includes('@')) return { form: 'invalid', reason: 'the absolute request-target has no usable host' };
  const rest = absolute[3]!;
  return { form: 'absolute', authority, target: rest === '' ? '/' : rest.charCodeAt(0) === 0x3f /* '?' */ ? `/${rest}` : rest };
}

/**
 * Why a request-target as received (bytes as latin1) is refused, in words for the client;
 * null when nothing is wrong with it. For error answers only, never on the way of a request.
 */
export function badTargetReason(raw: string, method: string): string | null {
  if (raw.includes(' ')) return 'the request-target contains a space; percent-encode it as %20';
  if (/[^\x21-\x7e]/.test(raw)) return 'the request-target has characters that must be percent-encoded (control characters or raw non-ASCII bytes)';
  const parsed = parseRequestTarget(raw, method);
  return parsed.form === 'invalid' ? parsed.reason : null;
}

const PERCENT_ENCODED = /%([0-9a-f]{2})/gi;

/**
 * The path (query dropped) the way a lenient backend might route it: percent-decoded once,
 * backslashes as slashes, empty and "." segments removed, ".." applied, lower case.
 * For matching only — never forwarded.
 */
export function pathForMatching(target: string): string {
  let end = target.length;
  const query = target.indexOf('?');
  if (query !== -1) end = query;
  const hash = target.indexOf('#');
  if (hash !== -1 && hash < end) end = hash;
  const decoded = target.slice(0, end).replace(PERCENT_ENCODED, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  const segments: string[] = [];
  for (const segment of decoded.replace(/\\/g, '/').split('/')) {
    const name = segment.split(';', 1)[0]!; // "admin;x=y" routes as "admin" in some servers
    if (name === '' || name === '.') continue;
    if (name === '..') segments.pop();
    else segments.push(name.toLowerCase());
  }
  return `/${segments.join('/')}`;
}

/** A matcher for `proxy.block_paths`: a prefix blocks itself and everything below it. */
export function blockedPathMatcher(prefixes: readonly string[]): (target: string) => boolean {
  const normalised = prefixes.map((prefix) => pathForMatching(prefix)).map((p) => (p === '/' ? '' : p));
  if (normalised.length === 0) return () => false;
  if (normalised.includes('')) return () => true;
  // Cheap pre-check on the hot path: a target can only normalise into a blocked prefix if it
  // holds that prefix's first segment (any case) or an escape that could spell it.
  const firstSegments = [...new Set(normalised.map((p) => p.split('/')[1]!))];
  const mightBeBlocked = new RegExp(`[%\\\\]|${firstSegments.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')}`, 'i');
  return (target) => {
    if (!mightBeBlocked.test(target)) return false;
    const path = pathForMatching(target);
    return normalised.some((prefix) => path === prefix || path.startsWith(`${prefix}/`));
  };
}
