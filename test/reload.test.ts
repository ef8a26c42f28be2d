// Hand-managed certificates and SIGHUP: a valid new pair is served by the very next
// handshake; a pair whose key does not match is refused with a log line naming the file,
// and the previous certificate keeps being served (T1).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createAuthority, issueLeaf, type Authority } from './helpers/certs.js';
import { startBackend, type Backend } from './helpers/backend.js';
import { startDaemon, tempDir, writeConfig, boundPort, type RunningDaemon } from './helpers/daemon.js';
import { freePort } from './helpers/pebble.js';
import { handshake } from './helpers/tls-client.js';

const NAME = 'manual.fedtls.test';
const strip = (s: string): string => s.replace(/^0+/, '');

describe('manual certificates and SIGHUP', () => {
  let authority: Authority;
  let backend: Backend;
  let daemon: RunningDaemon;
  let certFile: string;
  let keyFile: string;
  let port: number;

  beforeAll(async () => {
    authority = createAuthority();
    backend = await startBackend();
    const dir = tempDir();
    certFile = path.join(dir, 'fullchain.pem');
    keyFile = path.join(dir, 'privkey.pem');
    const first = issueLeaf(authority, { names: [NAME] });
    writeFileSync(certFile, first.fullChainPem);
    writeFileSync(keyFile, first.keyPem);
    const config = writeConfig(dir, {
      server_name: NAME, backend: backend.url,
      listen: { http: ["127.0.0.1:0"], federation: ["127.0.0.1:0"] },
      state_dir: path.join(dir, 'state'),
      acme: { enabled: false },
      tls_certificate_path: certFile, tls_private_key_path: keyFile,
    });
    daemon = await startDaemon(config);
    port = boundPort(daemon, 'federation');
    expect(strip((await handshake({ port, servername: NAME })).serial)).toBe(strip(first.serial));
  });

  afterAll(async () => {
    await daemon?.stop();
    await backend?.close();
  });

  it('swaps in a valid new pair on SIGHUP: the next handshake shows the new serial', async () => {
    const next = issueLeaf(authority, { names: [NAME] });
    writeFileSync(certFile, next.fullChainPem);
    writeFileSync(keyFile, next.keyPem);
    const before = daemon.logs.length;
    daemon.signal('SIGHUP');
    await daemon.waitForLog((l) => daemon.logs.indexOf(l) >= before && l.event === 'certificate_replaced', 10_000, 'certificate_replaced');
    expect(strip((await handshake({ port, servername: NAME })).serial)).toBe(strip(next.serial));
    expect(strip((await handshake({ port })).serial)).toBe(strip(next.serial));
  });

  it('T1: refuses a key that does not belong, says why, and keeps serving the previous certificate', async () => {
    const serving = (await handshake({ port, servername: NAME })).serial;
    const other = issueLeaf(authority, { names: [NAME] });
    const another = issueLeaf(authority, { names: [NAME] });
    writeFileSync(certFile, other.fullChainPem);
    writeFileSync(keyFile, another.keyPem);
    const before = daemon.logs.length;
    daemon.signal('SIGHUP');
    const refused = await daemon.waitForLog((l) => daemon.logs.indexOf(l) >= before && l.event === 'certificate_refused', 10_000, 'certificate_refused');
    expect(String(refused.msg)).toContain(keyFile);
    expect(String(refused.msg)).toMatch(/does not belong/);
    expect((await handshake({ port, servername: NAME })).serial).toBe(serving);
  });
});
