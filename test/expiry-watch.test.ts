// The expiry watch for hand-managed certificates: warnings at 30, 14, 7 and 1 days left,
// each once per certificate, an error once expired, nothing for ACME certificates (they
// renew themselves). Days pass on an injected clock over a real store loaded from real
// files; and the real daemon warns at start about a file with 10 days left.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { createAuthority, issueLeaf, type Authority } from './helpers/certs.js';
import { startCertDaemon, type CertDaemon } from './helpers/cert-daemon.js';
import { tempDir } from './helpers/daemon.js';
import { CertificateStore, type CertificateSource } from '../src/certs/store.js';
import { ExpiryWatch } from '../src/certs/expiry-watch.js';

const DAY = 86_400_000;

function pairOnDisk(authority: Authority, name: string, days: number, kind: CertificateSource['kind']): CertificateSource {
  const dir = tempDir('fedtls-expiry-');
  const leaf = issueLeaf(authority, { names: [name], days, startOffsetDays: 0 });
  const source: CertificateSource = { id: `${kind}:${name}`, kind, certificatePath: path.join(dir, 'fullchain.pem'), privateKeyPath: path.join(dir, 'privkey.pem'), names: [name] };
  writeFileSync(source.certificatePath, leaf.fullChainPem);
  writeFileSync(source.privateKeyPath, leaf.keyPem, { mode: 0o600 });
  return source;
}

function capturingLogger(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({ write(chunk: Buffer, _encoding, callback) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); callback(); } });
  return { log: pino({ level: 'info' }, stream), lines };
}

describe('expiry watch', () => {
  let authority: Authority;
  beforeAll(() => { authority = createAuthority(); });

  it('warns once at each of 30, 14, 7 and 1 days left for a file certificate, then errors once expired; never for ACME', () => {
    const store = new CertificateStore('file.expiry.test');
    const file = pairOnDisk(authority, 'file.expiry.test', 40, 'file');
    const acme = pairOnDisk(authority, 'acme.expiry.test', 40, 'acme');
    const loadedAt = new Date();
    expect(store.reloadAll([file, acme], loadedAt).map((o) => o.status)).toEqual(['added', 'added']);
    const notAfter = store.get(file.id)!.pair.leaf.notAfter.getTime();
    let now = new Date(loadedAt);
    const { log, lines } = capturingLogger();
    const watch = new ExpiryWatch({ store, log, now: () => now });
    const thresholdsSeen: number[] = [];
    // Walk the clock forward six hours at a time, from 40 days left to 2 days past expiry.
    for (let t = loadedAt.getTime(); t < notAfter + 2 * DAY; t += 6 * 3_600_000) {
      now = new Date(t);
      for (const warning of watch.check()) thresholdsSeen.push(warning.thresholdDays);
    }
    expect(thresholdsSeen).toEqual([30, 14, 7, 1, 0]);
    expect(lines.map((l) => l.event)).toEqual(['certificate_expiring', 'certificate_expiring', 'certificate_expiring', 'certificate_expiring', 'certificate_expired']);
    expect(lines.every((l) => l.source === file.id && l.certificate === file.certificatePath)).toBe(true);
    expect(lines[0]!.days_left).toBe(29);
    expect(String(lines[3]!.msg)).toMatch(/expires on .*: 0 days left\. fedtls does not renew files it did not obtain/);
    expect(lines[4]!.level).toBe(50);
    expect(String(lines[4]!.msg)).toMatch(/expired on .* and is still being served/);
  });

  it('a file loaded with 5 days left warns once (for 7), and a renewed file starts afresh', () => {
    const store = new CertificateStore('short.expiry.test');
    const short = pairOnDisk(authority, 'short.expiry.test', 5, 'file');
    store.reloadAll([short]);
    const { log, lines } = capturingLogger();
    let now = new Date();
    const watch = new ExpiryWatch({ store, log, now: () => now });
    expect(watch.check().map((w) => w.thresholdDays)).toEqual([7]);
    expect(watch.check()).toEqual([]);
    const renewed = pairOnDisk(authority, 'short.expiry.test', 20, 'file');
    store.reloadAll([{ ...short, certificatePath: renewed.certificatePath, privateKeyPath: renewed.privateKeyPath }]);
    expect(watch.check().map((w) => w.thresholdDays)).toEqual([30]);
    now = new Date(Date.now() + 7 * DAY);
    expect(watch.check().map((w) => w.thresholdDays)).toEqual([14]);
    expect(lines).toHaveLength(3);
  });

  it('checks on its timer and after every store change', async () => {
    const store = new CertificateStore('timer.expiry.test');
    const { log, lines } = capturingLogger();
    let now = new Date();
    const watch = new ExpiryWatch({ store, log, now: () => now, checkIntervalMs: 20 });
    watch.start();
    try {
      const source = pairOnDisk(authority, 'timer.expiry.test', 60, 'file');
      store.reloadAll([source]); // 'change': checked at once, nothing due yet
      expect(lines).toHaveLength(0);
      now = new Date(Date.now() + 45 * DAY);
      const deadline = Date.now() + 10_000;
      while (lines.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(lines.map((l) => l.threshold_days)).toEqual([30]);
    } finally {
      watch.stop();
    }
  });
});

describe('expiry watch in the daemon', () => {
  let running: CertDaemon;
  afterAll(async () => { await running?.close(); });

  it('warns at start about a hand-managed certificate with 10 days left', async () => {
    const authority = createAuthority();
    const leaf = issueLeaf(authority, { names: ['soon.expiry.test'], startOffsetDays: -80, days: 90 });
    running = await startCertDaemon({
      serverName: 'soon.expiry.test', sources: 1,
      config: (dir) => {
        writeFileSync(path.join(dir, 'fullchain.pem'), leaf.fullChainPem);
        writeFileSync(path.join(dir, 'privkey.pem'), leaf.keyPem, { mode: 0o600 });
        return { tls: { certificate_path: path.join(dir, 'fullchain.pem'), private_key_path: path.join(dir, 'privkey.pem') } };
      },
    });
    const warning = await running.daemon.waitForLog((l) => l.event === 'certificate_expiring', 10_000, 'certificate_expiring');
    expect(warning.threshold_days).toBe(14);
    expect(warning.days_left).toBe(9);
    expect(warning.names).toEqual(['soon.expiry.test']);
  });
});
