// Turns a failed ACME operation into words an admin can act on: what failed, its likely cause
// in terms of their setup (DNS does not point here, port 80 not reachable, a CAA record, a
// rate limit, the CA unreachable...) and the CA's Retry-After. Reads the problems recorded in
// ca-problems.ts; never talks to the network itself.

import type { CaProblem } from './ca-problems.js';

export type FailureKind = 'rate_limited' | 'validation' | 'ca_unreachable' | 'account' | 'ca_error' | 'refused' | 'other';

export interface FailureExplanation {
  kind: FailureKind;
  /** One sentence: what went wrong, with the CA's own words when it gave any. */
  what: string;
  /** The likely cause and what to do about it. */
  cause: string;
  /** The longest Retry-After the CA sent during the operation (ms), or null. */
  retryAfterMs: number | null;
  /** The CA no longer knows the saved account: it must be registered again. */
  accountGone: boolean;
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ERR_SOCKET_CONNECTION_TIMEOUT', 'network']);
const TLS_CODES = /^(DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_|CERT_|ERR_TLS_CERT)/;

function hostOf(url: string): string {
  try { return new URL(url).host; } catch { return url; }
}

/** CAs report a failed DNS lookup of the name under several types (Pebble and Boulder: often 'connection'). */
const DNS_LOOKUP_FAILURE = /resolving|no such host|NXDOMAIN|SERVFAIL|DNS problem|no valid A records|lookup/i;

function validationCause(type: string, name: string, detail = ''): string {
  if (type !== 'dns' && DNS_LOOKUP_FAILURE.test(detail)) {
    return `the CA could not look up ${name} in DNS (${detail.length > 160 ? `${detail.slice(0, 160)}…` : detail}): check that ${name} has an A/AAAA record pointing at this machine and that its DNS servers answer`;
  }
  switch (type) {
    case 'dns':
      return `DNS for ${name} does not resolve (no A/AAAA record, or it has not propagated yet): point ${name} at this machine`;
    case 'connection':
      return `the CA could not connect to port 80 of ${name}: port 80 is not reachable from the internet (firewall, cloud security group, or missing port forward on the router), or DNS for ${name} points to an address where nothing listens`;
    case 'unauthorized':
    case 'incorrectResponse':
      return `the CA reached a server for ${name} on port 80 but not this fedtls: DNS for ${name} probably points to another machine, or something in front of port 80 (proxy, CDN, router) does not pass /.well-known/acme-challenge/ through`;
    case 'caa':
      return `a CAA record in DNS for ${name} (or a parent domain) does not allow this CA to issue; add one that does (Let's Encrypt: 0 issue "letsencrypt.org") or remove it`;
    case 'tls':
      return `the CA followed a redirect from port 80 of ${name} to HTTPS and the TLS handshake failed: stop redirecting /.well-known/acme-challenge/ (fedtls itself never does)`;
    case 'rejectedIdentifier':
      return `the CA refuses to issue for ${name} (its policy, or the name is blocked); remove it from acme.domains or use another CA`;
    default:
      return `validation of ${name} failed; check that DNS for ${name} points here and port 80 is reachable from the internet`;
  }
}

/**
 * The problem by which the CA says it no longer knows the account fedtls signs with (the CA
 * was reset, or lost the account): `accountDoesNotExist`, a 404 for the account URL itself,
 * or `unauthorized` saying the account does not exist. Null when there is none. (A
 * deactivated account is not "gone": registering again with its key gives it back as it is.)
 */
export function accountGoneProblem(problems: CaProblem[], accountUrl: string | null): CaProblem | null {
  return problems.find((p) => p.type === 'accountDoesNotExist'
    || (accountUrl !== null && p.url === accountUrl && p.status === 404)
    || (p.type === 'unauthorized' && /account/i.test(p.detail) && /(does not exist|doesn't exist|not found|unknown)/i.test(p.detail))) ?? null;
}

/** Builds the explanation. `names` are the names ordered, `directoryUrl` the CA asked. */
export function explainFailure(error: unknown, problems: CaProblem[], names: string[], directoryUrl: string): FailureExplanation {
  const message = error instanceof Error ? error.message : String(error);
  const retryAfters = problems.map((p) => p.retryAfterMs).filter((ms): ms is number => ms !== null);
  const retryAfterMs = retryAfters.length > 0 ? Math.max(...retryAfters) : null;
  const base = { retryAfterMs, accountGone: false };
  const ca = hostOf(directoryUrl);

  const rateLimited = problems.find((p) => p.type === 'rateLimited' || p.status === 429);
  if (rateLimited) {
    return { ...base, kind: 'rate_limited', what: `the CA ${ca} refused because of a rate limit: ${rateLimited.detail || 'HTTP 429'}`,
      cause: 'rate limit at the CA (Let\'s Encrypt: e.g. 5 failed validations per name per hour, 50 certificates per domain per week); fedtls waits at least as long as the CA asks' };
  }
  const validation = problems.filter((p) => p.identifier !== null && p.type !== null && !['serverInternal', 'badNonce', 'malformed'].includes(p.type));
  if (validation.length > 0) {
    const failed = [...new Map(validation.map((p) => [p.identifier!, p])).values()];
    return { ...base, kind: 'validation',
      what: `validation failed for ${failed.map((p) => `${p.identifier} (${p.type}: ${p.detail})`).join('; ')}`,
      cause: failed.map((p) => validationCause(p.type!, p.identifier!, p.detail)).join('; ') };
  }
  const network = [...problems].reverse().find((p) => p.status === 0);
  if (network) {
    if (network.type && TLS_CODES.test(network.type)) {
      return { ...base, kind: 'ca_unreachable', what: `cannot verify the TLS certificate of the CA ${hostOf(network.url || directoryUrl)} (${network.type})`,
        cause: 'the CA\'s HTTPS certificate is not trusted by this machine: update the system CA certificates, or for a private CA set acme.ca_bundle' };
    }
    return { ...base, kind: 'ca_unreachable', what: `cannot reach the CA at ${hostOf(network.url || directoryUrl)} (${network.type ?? 'network error'})`,
      cause: NETWORK_CODES.has(network.type ?? '') || !network.type
        ? 'the CA is down or this machine cannot reach it (outgoing HTTPS blocked by a firewall or proxy, DNS resolver down, no network)'
        : `network error talking to the CA: ${network.detail}` };
  }
  if (accountGoneProblem(problems, null)) {
    return { ...base, accountGone: true, kind: 'account', what: `the CA ${ca} no longer knows the saved ACME account`, cause: 'the CA was reset or lost the account; fedtls registers a new one on the next try' };
  }
  const typed = [...problems].reverse().find((p) => p.type !== null);
  switch (typed?.type) {
    case 'externalAccountRequired':
      return { ...base, kind: 'account', what: `the CA ${ca} requires External Account Binding`, cause: 'set acme.eab.kid and acme.eab.hmac_key to the values from the CA\'s account dashboard (ZeroSSL: Developer section)' };
    case 'unauthorized':
      if (/account|eab|binding|hmac/i.test(typed.detail)) {
        return { ...base, kind: 'account', what: `the CA ${ca} refused the account: ${typed.detail}`, cause: 'check acme.eab.kid and acme.eab.hmac_key (copy them again from the CA\'s dashboard; an EAB key can be used only once at some CAs)' };
      }
      break;
    case 'rejectedIdentifier':
      return { ...base, kind: 'refused', what: `the CA ${ca} refuses to issue for ${names.join(', ')}: ${typed.detail}`, cause: 'the CA\'s policy forbids these names; remove them from acme.domains or use another CA' };
    case 'serverInternal':
    case 'badNonce':
      return { ...base, kind: 'ca_error', what: `the CA ${ca} had a problem (${typed.type}: ${typed.detail})`, cause: 'a transient error at the CA; it usually passes on its own' };
    default:
      break;
  }
  if (typed && typed.status >= 500) {
    return { ...base, kind: 'ca_error', what: `the CA ${ca} answered HTTP ${typed.status}: ${typed.detail}`, cause: 'the CA is having trouble; it usually passes on its own' };
  }
  return { ...base, kind: 'other', what: typed ? `${message} (${typed.type})` : message, cause: 'see the message; fedtls retries with backoff' };
}
