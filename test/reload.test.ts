// Hand-managed certificates and SIGHUP: a valid new pair is served by the very next
// handshake; a pair whose key does not match is refused with a log line naming the file,
// and the previous certificate keeps being served (T1). SIGHUP does not apply config edits:
// an edited config file gets one warning per reload that it needs a restart.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
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
  let configFile: string;
  let port: number;

  beforeAll(async () => {
    authority = createAuthority();
    backend = await startBackend();
    const first = await writeManualDaemonConfig(tempDir(), NAME, backend.url);
    certFile = first.certificatePath;
    keyFile = first.privateKeyPath;
    configFile = first.configFile;
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

  it('SIGHUP after a config edit: certificate files re-read, then one warning that config changes need a restart', async () => {
    const original = readFileSync(configFile, 'utf8');
    /** SIGHUP; resolves with the lines logged from the signal until shortly after the reload's closing line. */
    const hup = async (): Promise<typeof daemon.logs> => {
      const mark = daemon.logs.length;
      daemon.signal('SIGHUP');
      await daemon.waitForLog((l) => daemon.logs.indexOf(l) >= mark && l.event === 'certificates_reloaded', 10_000, 'certificates_reloaded');
      await sleep(500);
      return daemon.logs.slice(mark);
    };
    try {
      expect((await hup()).some((l) => l.event === 'config_changed_needs_restart')).toBe(false);
      writeFileSync(configFile, `${original}# a comment changes nothing\n`);
      expect((await hup()).some((l) => l.event === 'config_changed_needs_restart')).toBe(false);

      writeFileSync(configFile, `${original}proxy:\n  response_timeout: 90s\n`);
      const lines = await hup();
      const warnings = lines.filter((l) => l.event === 'config_changed_needs_restart');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ level: 40, file: configFile, changed_keys: ['proxy'] });
      expect(String(warnings[0]!.msg)).toBe(`${configFile} has changed since fedtls started (proxy), but a reload re-reads certificate files only: config changes take effect on a restart (systemctl restart fedtls; check the file first with fedtls check-config --config ${configFile}). Certificate files were re-read.`);
      expect(lines.findIndex((l) => l.event === 'certificates_reloaded')).toBeLessThan(lines.indexOf(warnings[0]!));

      // An edit that would not start says so.
      writeFileSync(configFile, `${original}workers: 0\n`);
      const broken = (await hup()).find((l) => l.event === 'config_changed_needs_restart');
      expect(String(broken?.msg)).toContain('The edited file would not start: 1 problem; see fedtls check-config');
    } finally {
      writeFileSync(configFile, original);
    }
  });
});
