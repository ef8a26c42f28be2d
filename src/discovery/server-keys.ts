// Checks a GET /_matrix/key/v2/server response the way a remote homeserver relies on it:
// server_name is the name that was asked for, at least one verify key, valid_until_ts in
// the future, and a self-signature by one of the published keys over the canonical JSON
// (Matrix "Signing JSON"): a proxy that alters the response makes that signature fail.

import { createPublicKey, verify } from 'node:crypto';
import { humanDuration } from './https-get.js';

export interface KeyCheck {
  ok: boolean;
  summary: string;
  details: string[];
  fix?: string;
}

/** Matrix canonical JSON: keys sorted, no insignificant whitespace, UTF-8. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Unpadded standard base64 (Matrix's encoding) → bytes; null when malformed. */
export function decodeUnpaddedBase64(text: string): Buffer | null {
  if (!/^[A-Za-z0-9+/]*$/.test(text)) return null;
  return Buffer.from(text, 'base64');
}

function verifyEd25519(publicKey: Buffer, message: string, signature: Buffer): boolean {
  try {
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: publicKey.toString('base64url') }, format: 'jwk' });
    return verify(null, Buffer.from(message, 'utf8'), key, signature);
  } catch {
    return false;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function checkServerKeys(document: unknown, serverName: string, now = Date.now()): KeyCheck {
  if (!isObject(document)) return { ok: false, summary: 'the answer is not a JSON object', details: [], fix: 'make sure /_matrix/key/v2/server reaches the homeserver unchanged' };
  const name = document.server_name;
  if (typeof name !== 'string') {
    return {
      ok: false, summary: 'the answer has no server_name, so peers cannot tell whose keys these are', details: [],
      fix: 'make sure /_matrix/key/v2/server on this address reaches a Matrix homeserver (not a web server or another service)',
    };
  }
  if (name.toLowerCase() !== serverName.toLowerCase()) {
    return {
      ok: false, summary: `the homeserver says it is ${JSON.stringify(name)}, but peers asked for ${serverName}`, details: [],
      fix: `the homeserver's server_name (homeserver.yaml) must be ${serverName}; or this address serves another homeserver: fix the delegation or DNS`,
    };
  }
  const verifyKeys = isObject(document.verify_keys) ? document.verify_keys : {};
  const keys = new Map<string, Buffer>();
  for (const [id, entry] of Object.entries(verifyKeys)) {
    const raw = isObject(entry) && typeof entry.key === 'string' ? decodeUnpaddedBase64(entry.key) : null;
    if (raw && id.startsWith('ed25519:') && raw.length === 32) keys.set(id, raw);
  }
  if (keys.size === 0) return { ok: false, summary: 'no usable verify_keys (ed25519) in the answer', details: [], fix: 'check the homeserver\'s signing key (Synapse: signing_key_path)' };
  const validUntil = document.valid_until_ts;
  if (typeof validUntil !== 'number' || validUntil <= now) {
    return {
      ok: false, summary: typeof validUntil === 'number' ? `the keys expired ${humanDuration(now - validUntil)} ago (valid_until_ts ${new Date(validUntil).toISOString()})` : 'valid_until_ts is missing',
      details: [], fix: 'check the homeserver\'s clock; the homeserver renews valid_until_ts itself, so a stale answer may come from a cache in front of it',
    };
  }
  const signatures = isObject(document.signatures) && isObject(document.signatures[name]) ? document.signatures[name] as Record<string, unknown> : {};
  const { signatures: _signatures, unsigned: _unsigned, ...signed } = document;
  const message = canonicalJson(signed);
  const verified = [...keys].filter(([id, key]) => {
    const signature = typeof signatures[id] === 'string' ? decodeUnpaddedBase64(signatures[id] as string) : null;
    return signature !== null && verifyEd25519(key, message, signature);
  }).map(([id]) => id);
  if (verified.length === 0) {
    return {
      ok: false, summary: `no valid self-signature by ${[...keys.keys()].join(', ')}`, details: [],
      fix: 'something between peers and the homeserver changes this response (a proxy rewriting JSON?), or the signing key changed without a restart',
    };
  }
  return {
    ok: true,
    summary: `server_name ${name}, key${keys.size === 1 ? '' : 's'} ${[...keys.keys()].join(', ')}, signature valid, valid for ${humanDuration(validUntil - now)} more`,
    details: [],
  };
}
