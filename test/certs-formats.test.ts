// Certificate files as people and CAs really save them (T3 leaf-only vs full chain, T4 PEM
// mangled by editors, T5 key types and formats, Ed25519 with its warning), each loaded by the
// real daemon on SIGHUP and checked with real handshakes: the serial served, and the
// certificates on the wire.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createAuthority, issueLeaf, type Authority, type Leaf, type LeafOptions } from './helpers/certs.js';
import { replaceFile, serialOf, servedChain, startCertDaemon, type CertDaemon } from './helpers/cert-daemon.js';
import type { LogLine } from './helpers/daemon.js';
import { handshake } from './helpers/tls-client.js';

const NAME = 'formats.fedtls.test';

describe('certificate files as people save them', () => {
  let authority: Authority;
  let running: CertDaemon;
  let certFile: string;
  let keyFile: string;

  const served = async (): Promise<string> => serialOf((await handshake({ port: running.port, servername: NAME })).serial);

  /** Installs the texts, reloads, and returns the outcome line and the warnings logged with it. */
  async function load(certText: string, keyText: string): Promise<{ outcome: LogLine; warnings: string[] }> {
    replaceFile(certFile, certText);
    replaceFile(keyFile, keyText);
    const mark = running.daemon.logs.length;
    const [outcome] = await running.reload();
    const warnings = running.since(mark).filter((l) => l.event === 'certificate_warning').map((l) => String(l.msg));
    return { outcome: outcome!, warnings };
  }

  const leaf = (options: Partial<LeafOptions> = {}): Leaf => issueLeaf(authority, { names: [NAME], ...options });

  beforeAll(async () => {
    authority = createAuthority();
    const first = leaf();
    running = await startCertDaemon({
      serverName: NAME, sources: 1,
      config: (dir) => {
        certFile = path.join(dir, 'fullchain.pem');
        keyFile = path.join(dir, 'privkey.pem');
        writeFileSync(certFile, first.fullChainPem);
        writeFileSync(keyFile, first.keyPem, { mode: 0o600 });
        return { tls: { certificate_path: certFile, private_key_path: keyFile } };
      },
    });
  });

  afterAll(async () => {
    await running?.close();
  });

  it('T3: a CA-issued leaf without its intermediate loads with a warning that peers cannot build the chain', async () => {
    const onlyLeaf = leaf();
    const { outcome, warnings } = await load(onlyLeaf.certPem, onlyLeaf.keyPem);
    expect(outcome.event).toBe('certificate_replaced');
    expect(warnings.join('\n')).toMatch(/only the leaf certificate, without its intermediate.*will not be able to build the chain.*fullchain\.pem/);
    expect(await served()).toBe(serialOf(onlyLeaf.serial));
    const wire = await servedChain({ port: running.port, servername: NAME });
    expect(wire.pems).toHaveLength(1);
    // A peer that trusts only the root indeed cannot verify it.
    const peer = await handshake({ port: running.port, servername: NAME, ca: authority.rootCert });
    expect(peer.authorized).toBe(false);
  });

  it('T3: with the full chain loaded, the handshake sends leaf plus intermediate and a peer trusting only the root accepts it', async () => {
    const full = leaf();
    const { outcome, warnings } = await load(full.fullChainPem, full.keyPem);
    expect(outcome.event).toBe('certificate_replaced');
    expect(warnings.join('\n')).not.toMatch(/intermediate/);
    const wire = await servedChain({ port: running.port, servername: NAME });
    expect(wire.subjects).toEqual([`CN = ${NAME}`, 'CN = Test Intermediate CA']);
    expect(wire.pems[1]!.replace(/\s+/g, '')).toBe(authority.intermediateCert.replace(/\s+/g, ''));
    const peer = await handshake({ port: running.port, servername: NAME, ca: authority.rootCert });
    expect(peer.authorized).toBe(true);
    expect(peer.serial && serialOf(peer.serial)).toBe(serialOf(full.serial));
  });

  const mangles: [string, (pem: string) => string][] = [
    ['CRLF line endings', (pem) => pem.replace(/\n/g, '\r\n')],
    ['no final newline', (pem) => pem.replace(/\n+$/, '')],
    ['CRLF and no final newline', (pem) => pem.replace(/\n/g, '\r\n').replace(/\r\n$/, '')],
    ['a UTF-8 BOM, trailing spaces and blank lines between blocks', (pem) => `\uFEFF${pem.replace(/-----\n/g, '-----   \n').replace(/-----END CERTIFICATE-----\n/g, '-----END CERTIFICATE-----\n\n\n')}`],
  ];

  for (const [how, mangle] of mangles) {
    it(`T4: cert and key saved with ${how} load exactly like the clean files`, async () => {
      const target = leaf();
      const clean = await load(target.fullChainPem, target.keyPem);
      expect(clean.outcome.event).toBe('certificate_replaced');
      const between = leaf();
      expect((await load(between.fullChainPem, between.keyPem)).outcome.event).toBe('certificate_replaced'); // serve something else in between
      const mangled = await load(mangle(target.fullChainPem), mangle(target.keyPem));
      expect(mangled.outcome.event).toBe('certificate_replaced');
      for (const field of ['serial', 'names', 'not_after']) expect(mangled.outcome[field]).toEqual(clean.outcome[field]);
      expect(mangled.warnings).toEqual(clean.warnings);
      expect(await served()).toBe(serialOf(target.serial));
      expect((await servedChain({ port: running.port, servername: NAME })).pems).toHaveLength(2);
      // Re-saving the clean bytes over the mangled ones changes nothing that is served.
      const again = await load(target.fullChainPem, target.keyPem);
      expect(again.outcome.event).toBe('certificate_kept');
    });
  }

  it('T4: cert and key saved by a Windows editor as "Unicode" (UTF-16 with a byte-order mark) load like the clean files', async () => {
    const target = leaf();
    const utf16 = (text: string): Buffer => Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text.replace(/\n/g, '\r\n'), 'utf16le')]);
    replaceFile(certFile, utf16(target.fullChainPem));
    replaceFile(keyFile, utf16(target.keyPem));
    const [outcome] = await running.reload();
    expect(outcome!.event).toBe('certificate_replaced');
    expect(await served()).toBe(serialOf(target.serial));
  });

  const keyKinds: [string, Partial<LeafOptions>, RegExp][] = [
    ['P-256 with the key as EC PRIVATE KEY (SEC1)', { keyType: 'ec', keyFormat: 'traditional' }, /^-----BEGIN EC PRIVATE KEY-----/],
    ['P-256 with the key as PRIVATE KEY (PKCS#8)', { keyType: 'ec', keyFormat: 'pkcs8' }, /^-----BEGIN PRIVATE KEY-----/],
    ['RSA with the key as RSA PRIVATE KEY (PKCS#1)', { keyType: 'rsa', keyFormat: 'traditional' }, /^-----BEGIN RSA PRIVATE KEY-----/],
    ['RSA with the key as PRIVATE KEY (PKCS#8)', { keyType: 'rsa', keyFormat: 'pkcs8' }, /^-----BEGIN PRIVATE KEY-----/],
  ];

  for (const [kind, options, keyHeader] of keyKinds) {
    it(`T5: ${kind} loads and serves; expiry and names are read`, async () => {
      const target = leaf({ ...options, days: 45 });
      expect(target.keyPem).toMatch(keyHeader);
      const { outcome, warnings } = await load(target.fullChainPem, target.keyPem);
      expect(outcome.event).toBe('certificate_replaced');
      expect(warnings.join('\n')).not.toMatch(/the key is Ed|the key type is/);
      expect(outcome.names).toEqual([NAME]);
      const notAfter = new Date(String(outcome.not_after)).getTime();
      expect(Math.abs(notAfter - (Date.now() + 44 * 86_400_000))).toBeLessThan(86_400_000);
      expect(await served()).toBe(serialOf(target.serial));
      const peer = await handshake({ port: running.port, servername: NAME, ca: authority.rootCert });
      expect(peer.authorized).toBe(true);
    });
  }

  it('an Ed25519 certificate loads and serves, with a warning that peers may not accept it', async () => {
    const target = leaf({ keyType: 'ed25519' });
    expect(target.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    const { outcome, warnings } = await load(target.fullChainPem, target.keyPem);
    expect(outcome.event).toBe('certificate_replaced');
    expect(warnings).toContainEqual(expect.stringMatching(/the key is Ed25519: public CAs do not issue such certificates .*federating servers may refuse the handshake. Use an EC \(P-256\) or RSA certificate/));
    expect(await served()).toBe(serialOf(target.serial));
    const peer = await handshake({ port: running.port, servername: NAME, ca: authority.rootCert });
    expect(peer.authorized).toBe(true);
  });
});
