// Hand-managed certificates and SIGHUP: a valid new pair is served by the very next
// handshake; a pair whose key does not match is refused with a log line naming the file,
// and the previous certificate keeps being served (T1).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { createAuthority, issueLeaf, type Authority } from './helpers/certs.js';
import { startBackend, type Backend } from './helpers/backend.js';
import { startDaemon, tempDir, boundPort, type RunningDaemon } from './helpers/daemon.js';
import { writeManualDaemonConfig } from './helpers/manual-daemon.js';
import { handshake, serialOf } from './helpers/tls-client.js';

const NAME = 'manual.fedtls.test';

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
    const first = await writeManualDaemonConfig(tempDir(), NAME, backend.url);
    certFile = first.certificatePath;
    keyFile = first.privateKeyPath;
    daemon = await startDaemon(first.configFile);
    port = boundPort(daemon, 'federation');
    expect(serialOf((await handshake({ port, servername: NAME })).serial)).toBe(serialOf(first.serial));
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
    expect(serialOf((await handshake({ port, servername: NAME })).serial)).toBe(serialOf(next.serial));
    expect(serialOf((await handshake({ port })).serial)).toBe(serialOf(next.serial));
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
