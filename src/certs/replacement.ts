// The rules for replacing a pair that is being served (SIGHUP, ACME issuance), beyond the
// pair being valid on its own (pem.ts). Owns: what a careful admin would not want swapped in
// silently. Promises: a replacement is refused when peers that accept the served pair would
// refuse the new one — it loses a name the served pair covers and that fedtls serves
// (server_name, the delegated host, a configured name), or it is self-signed where the served
// one is CA-issued; it is swapped in with a warning when it expires well before the served one
// or drops names nobody configured. First loads (nothing served yet) never come here.

import { CertificateLoadError, nameMatches, type CertificateInfo, type LoadedPair } from './pem.js';
import type { CertificateSource, StoreEntry } from './store.js';

/** A name peers are told to connect to, and why (for messages). */
export interface PeerName {
  name: string;
  /** e.g. "server_name", "the host /.well-known/matrix/server delegates to". */
  why: string;
}

/** A replacement refused by these rules; `namesLost` lists the names it would take away. */
export class ReplacementRefusedError extends CertificateLoadError {
  constructor(file: string, reason: string, readonly namesLost: string[]) {
    super(file, reason);
    this.name = 'ReplacementRefusedError';
  }
}

/** A replacement that expires this much earlier than the served pair is worth a warning (an older certificate put back). */
export const EXPIRES_SOONER_WARNING_MS = 7 * 86_400_000;

export interface ReplacementCheck {
  source: CertificateSource;
  previous: LoadedPair;
  next: LoadedPair;
  peerNames: PeerName[];
  /** Names configured for any source (each is served by some pair). */
  configuredNames: string[];
  /** The entry that answers a handshake for `name` now, and once `next` is swapped in. */
  servingBefore: (name: string) => StoreEntry | null;
  servingAfter: (name: string) => StoreEntry | null;
}

export interface ReplacementVerdict {
  refusal: ReplacementRefusedError | null;
  warnings: string[];
}

const covers = (leaf: CertificateInfo | undefined, name: string): boolean => Boolean(leaf?.names.some((pattern) => nameMatches(pattern, name)));

const day = (date: Date): string => date.toISOString().replace(/\.\d{3}Z$/, 'Z');

export function checkReplacement(check: ReplacementCheck): ReplacementVerdict {
  const { source, previous, next } = check;
  const why = new Map<string, string>();
  for (const { name, why: reason } of check.peerNames) if (name && !why.has(name.toLowerCase())) why.set(name.toLowerCase(), reason);
  for (const name of source.names) if (!why.has(name.toLowerCase())) why.set(name.toLowerCase(), 'configured for this pair');
  for (const name of check.configuredNames) if (!why.has(name.toLowerCase())) why.set(name.toLowerCase(), 'configured for another pair, served by this one');

  // What a handshake for each name gets before and after the swap: a name that got a
  // certificate holding it and would get one that does not is lost.
  const lost: string[] = [];
  for (const name of why.keys()) {
    const before = check.servingBefore(name);
    if (!before || !covers(before.pair.leaf, name)) continue;
    const after = check.servingAfter(name);
    const afterLeaf = after?.source.id === source.id ? next.leaf : after?.pair.leaf;
    if (!covers(afterLeaf, name)) lost.push(name);
  }

  const reasons: string[] = [];
  const newly = `the new certificate (serial ${next.leaf.serial}, names: ${next.leaf.names.join(', ') || 'none'})`;
  if (lost.length > 0) {
    const described = lost.map((name) => `${name} (${why.get(name)})`).join(', ');
    reasons.push(`${newly} does not hold ${described}, which the certificate being served (serial ${previous.leaf.serial}) holds: peers connecting to ${lost.length === 1 ? 'it' : 'them'} would refuse the handshake and federation would break. Put a certificate that holds ${lost.join(', ')} in ${source.certificatePath} and its key in ${source.privateKeyPath}, then reload; to stop serving ${lost.join(', ')} on purpose, change the config and restart fedtls (a start loads the files with a warning)`);
  }
  if (next.leaf.selfSigned && !previous.leaf.selfSigned) {
    reasons.push(`${lost.length > 0 ? 'it' : newly} is self-signed, and the one being served (serial ${previous.leaf.serial}, issued by ${previous.leaf.issuer}) is CA-issued: federating servers refuse self-signed certificates, so federation would break. Put a CA-issued certificate in ${source.certificatePath} and its key in ${source.privateKeyPath} (e.g. certbot's fullchain.pem and privkey.pem), then reload; to serve a self-signed certificate on purpose (a test server), restart fedtls (a start loads it with a warning)`);
  }
  if (reasons.length > 0) {
    return { refusal: new ReplacementRefusedError(source.certificatePath, reasons.join('; also, '), lost), warnings: [] };
  }

  const warnings: string[] = [];
  const sooner = previous.leaf.notAfter.getTime() - next.leaf.notAfter.getTime();
  if (sooner >= EXPIRES_SOONER_WARNING_MS) {
    warnings.push(`the new certificate (serial ${next.leaf.serial}) expires ${day(next.leaf.notAfter)}, ${Math.floor(sooner / 86_400_000)} days before the one it replaced (serial ${previous.leaf.serial}, ${day(previous.leaf.notAfter)}): if this is an older certificate put back by mistake (a backup, an older file in certbot's archive/), install the newest one and reload`);
  }
  if (source.names.length === 0) {
    // Without configured names a pair serves the names in its certificate: say which ones it stops serving.
    const dropped = previous.leaf.names.filter((name) => (name.startsWith('*.') ? !next.leaf.names.includes(name) : !covers(next.leaf, name)));
    if (dropped.length > 0) {
      warnings.push(`the new certificate no longer holds ${dropped.join(', ')}, which the one it replaced (serial ${previous.leaf.serial}) held: this pair stops serving ${dropped.length === 1 ? 'that name' : 'those names'}. If that is not intended, put back a certificate that holds ${dropped.length === 1 ? 'it' : 'them'} and reload`);
    }
  }
  return { refusal: null, warnings };
}
