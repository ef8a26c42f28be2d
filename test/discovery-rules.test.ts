// The rules `fedtls check` applies to what it fetches, on their own: which m.server values
// remote servers accept, and which /_matrix/key/v2/server answers they trust (a real ed25519
// signature over canonical JSON; altered, stale or foreign answers are refused).

import { describe, expect, it } from 'vitest';
import { generateKeyPairSync, sign } from 'node:crypto';
import { parseMServer } from '../src/discovery/well-known-client.js';
import { canonicalJson, checkServerKeys } from '../src/discovery/server-keys.js';

describe('m.server values', () => {
  it('accepts host, host:port, IPv4 and bracketed IPv6, as written', () => {
    for (const [value, host, port] of [
      ['matrix.example.net', 'matrix.example.net', null], ['matrix.example.net:443', 'matrix.example.net', 443],
      ['192.0.2.7:8448', '192.0.2.7', 8448], ['[2001:db8::1]:8448', '2001:db8::1', 8448],
    ] as const) {
      const parsed = parseMServer(value);
      expect(parsed.ok && parsed.delegation).toEqual({ host, port, text: value });
    }
  });

  it('refuses schemes, paths, bad ports and bad names, each with the value to serve instead', () => {
    expect(parseMServer('https://matrix.example.net:443/')).toEqual({ ok: false, reason: '"https://matrix.example.net:443/" has a scheme (https://); m.server is host[:port] only', fix: 'serve {"m.server": "matrix.example.net:443"} (no https://, no path)' });
    expect(parseMServer('matrix.example.net/matrix')).toMatchObject({ ok: false, fix: 'serve {"m.server": "matrix.example.net"}' });
    expect(parseMServer('matrix.example.net:99999')).toMatchObject({ ok: false, reason: '"matrix.example.net:99999" has the port 99999, out of range (ports go from 1 to 65535)' });
    expect(parseMServer('matrix_example!net')).toMatchObject({ ok: false });
    expect(parseMServer(' matrix.example.net')).toMatchObject({ ok: false });
  });
});

describe('server key answers', () => {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('base64').replace(/=+$/, '');
  const signed = (document: Record<string, unknown>, name = 'example.org'): Record<string, unknown> => ({
    ...document, signatures: { [name]: { 'ed25519:k1': sign(null, Buffer.from(canonicalJson(document)), privateKey).toString('base64').replace(/=+$/, '') } },
  });
  const base = { server_name: 'example.org', valid_until_ts: Date.now() + 3_600_000, verify_keys: { 'ed25519:k1': { key: raw } }, old_verify_keys: {} };

  it('canonical JSON sorts keys at every level and drops whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 'é', y: null }], c: true } })).toBe('{"a":{"c":true,"d":[1,{"y":null,"z":"é"}]},"b":1}');
  });

  it('trusts a correctly self-signed answer (key order and unsigned data do not matter)', () => {
    const answer = { ...signed(base), unsigned: { age: 5 } };
    const reordered = Object.fromEntries(Object.entries(answer).reverse());
    expect(checkServerKeys(reordered, 'EXAMPLE.org').ok).toBe(true);
  });

  it('refuses an altered answer, a stale one, one for another server, and one without keys', () => {
    const tampered = { ...signed(base), valid_until_ts: base.valid_until_ts + 1 };
    expect(checkServerKeys(tampered, 'example.org')).toMatchObject({ ok: false, summary: 'no valid self-signature by ed25519:k1' });
    expect(checkServerKeys(signed({ ...base, valid_until_ts: Date.now() - 7_200_000 }), 'example.org').summary).toMatch(/^the keys expired 2 h ago/);
    expect(checkServerKeys(signed(base), 'example.com').summary).toBe('the homeserver says it is "example.org", but peers asked for example.com');
    expect(checkServerKeys(signed({ ...base, verify_keys: {} }), 'example.org').summary).toBe('no usable verify_keys (ed25519) in the answer');
  });
});
