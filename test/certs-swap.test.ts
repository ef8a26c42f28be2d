// Swapping hand-managed certificate files under a running daemon (T1, T2 and reload under
// load): every check is a real TLS handshake against the real daemon, reading the serial
// the peer really got. A pair is only ever served whole; open connections survive swaps.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import https from 'node:https';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createAuthority, issueLeaf, type Authority, type Leaf } from './helpers/certs.js';
import { replaceFile, serialOf, servedChain, startCertDaemon, type CertDaemon } from './helpers/cert-daemon.js';
import { handshake } from './helpers/tls-client.js';
import { runCli, type LogLine } from './helpers/daemon.js';

const NAME = 'swap.fedtls.test';

describe('certificate swaps on SIGHUP', () => {
  let authority: Authority;
  let running: CertDaemon;
  let certFile: string;
  let keyFile: string;
  let current: Leaf;

  const served = async (servername: string | undefined = NAME): Promise<string> => serialOf((await handshake({ port: running.port, ...(servername ? { servername } : {}) })).serial);
  /** SIGHUP; the outcome line and the warning lines of that reload. */
  const reloadWithWarnings = async (): Promise<{ outcome: LogLine; warnings: string[] }> => {
    const mark = running.daemon.logs.length;
    const [outcome] = await running.reload();
    return { outcome: outcome!, warnings: running.since(mark).filter((l) => l.event === 'certificate_warning').map((l) => String(l.msg)) };
  };
  /** The warnings `fedtls certificates --json` shows for the pair, as the running daemon answers. */
  const reportedWarnings = async (): Promise<string[]> => {
    const cli = runCli(['certificates', '--json', '--config', running.configFile]);
    expect(await cli.exited).toBe(0);
    return (JSON.parse(cli.stdout()) as { certificates: { warnings: string[] }[] }).certificates[0]!.warnings;
  };
  const install = (leaf: Leaf): void => {
    replaceFile(certFile, leaf.fullChainPem);
    replaceFile(keyFile, leaf.keyPem);
  };

  beforeAll(async () => {
    authority = createAuthority();
    current = issueLeaf(authority, { names: [NAME] });
    running = await startCertDaemon({
      serverName: NAME, sources: 1,
      config: (dir) => {
        certFile = path.join(dir, 'fullchain.pem');
        keyFile = path.join(dir, 'privkey.pem');
        writeFileSync(certFile, current.fullChainPem);
        writeFileSync(keyFile, current.keyPem, { mode: 0o600 });
        return { tls: { certificate_path: certFile, private_key_path: keyFile } };
      },
    });
    expect(await served()).toBe(serialOf(current.serial));
  });

  afterAll(async () => {
    await running?.close();
  });

  it('T1: a full chain written intermediate-first is served leaf-first, with a warning saying so', async () => {
    const next = issueLeaf(authority, { names: [NAME] });
    replaceFile(certFile, authority.intermediateCert + next.certPem);
    replaceFile(keyFile, next.keyPem);
    const mark = running.daemon.logs.length;
    const [outcome] = await running.reload();
    expect(outcome!.event).toBe('certificate_replaced');
    const wire = await servedChain({ port: running.port, servername: NAME });
    expect(wire.subjects).toEqual([`CN = ${NAME}`, 'CN = Test Intermediate CA']);
    expect(await served()).toBe(serialOf(next.serial));
    const warning = running.since(mark).find((l) => l.event === 'certificate_warning');
    expect(String(warning?.msg)).toMatch(/leaf in position 2.*leaf-first/);
    current = next;
  });

  it('the same certificate rewritten in another order is "kept: same certificate, files rewritten" with the warnings of that read; untouched files are "files unchanged"', async () => {
    const order = (warnings: string[]): string[] => warnings.filter((w) => /leaf in position/.test(w));
    // Served from the intermediate-first file of the previous test: the report says so.
    expect(order(await reportedWarnings())).toHaveLength(1);
    // (a) The admin puts the file in order: the warning goes, from the log and the report.
    replaceFile(certFile, current.fullChainPem);
    const fixed = await reloadWithWarnings();
    expect(fixed.outcome.event).toBe('certificate_kept');
    expect(fixed.outcome.files_changed).toBe(true);
    expect(String(fixed.outcome.msg)).toMatch(/^certificate kept: same certificate, files rewritten; serving /);
    expect(order(fixed.warnings)).toEqual([]);
    expect(order(await reportedWarnings())).toEqual([]);
    expect(await served()).toBe(serialOf(current.serial));
    const untouched = await reloadWithWarnings();
    expect(untouched.outcome.files_changed).toBe(false);
    expect(String(untouched.outcome.msg)).toMatch(/^certificate kept \(files unchanged\); serving /);
    // (b) A correctly ordered file rewritten intermediate-first: said so, at once and in the report.
    replaceFile(certFile, authority.intermediateCert + current.certPem);
    const reordered = await reloadWithWarnings();
    expect(reordered.outcome.event).toBe('certificate_kept');
    expect(reordered.outcome.files_changed).toBe(true);
    expect(order(reordered.warnings)).toEqual([expect.stringMatching(/leaf in position 2/)]);
    expect(order(await reportedWarnings())).toHaveLength(1);
    // Files left as they are: unchanged, and the warning of this read is still given.
    const again = await reloadWithWarnings();
    expect(again.outcome.files_changed).toBe(false);
    expect(order(again.warnings)).toHaveLength(1);
    expect(await served()).toBe(serialOf(current.serial));
    replaceFile(certFile, current.fullChainPem);
    expect((await running.reload())[0]!.event).toBe('certificate_kept');
  });

  it('T1: a key that does not belong is refused in one line naming both files; the previous serial keeps serving', async () => {
    const other = issueLeaf(authority, { names: [NAME] });
    const stranger = issueLeaf(authority, { names: [NAME] });
    replaceFile(certFile, other.fullChainPem);
    replaceFile(keyFile, stranger.keyPem);
    const outcomes = await running.reload();
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0]!.event).toBe('certificate_refused');
    expect(String(outcomes[0]!.msg)).toContain(certFile);
    expect(String(outcomes[0]!.msg)).toContain(keyFile);
    expect(String(outcomes[0]!.msg)).toMatch(/does not belong.*still serving the previous certificate/);
    expect(await served()).toBe(serialOf(current.serial));
    expect(await served(undefined)).toBe(serialOf(current.serial));
    install(current);
    expect((await running.reload())[0]!.event).toBe('certificate_kept');
  });

  it('T2: cert written, SIGHUP, key 500 ms later, SIGHUP: old pair until the second, then the new pair; a mismatch is never served', async () => {
    const next = issueLeaf(authority, { names: [NAME] });
    replaceFile(certFile, next.fullChainPem);
    const first = await running.reload();
    expect(first[0]!.event).toBe('certificate_refused');
    expect(String(first[0]!.reason)).toMatch(/does not belong/);
    expect(await served()).toBe(serialOf(current.serial));
    await new Promise((resolve) => setTimeout(resolve, 500)); // the case itself: the key arrives 500 ms later
    expect(await served()).toBe(serialOf(current.serial));
    replaceFile(keyFile, next.keyPem);
    const second = await running.reload();
    expect(second[0]!.event).toBe('certificate_replaced');
    expect(serialOf(String(second[0]!.previous_serial))).toBe(serialOf(current.serial));
    expect(second[0]!.previous_not_after).toEqual(expect.any(String));
    expect(await served()).toBe(serialOf(next.serial));
    expect(await served(undefined)).toBe(serialOf(next.serial));
    current = next;
  });

  it('T2: a truncated PEM is refused as truncated; the previous pair keeps serving', async () => {
    const next = issueLeaf(authority, { names: [NAME] });
    // Cut in the middle of the intermediate: the leaf alone is complete, the file is not.
    replaceFile(certFile, next.fullChainPem.slice(0, next.certPem.length + 200));
    replaceFile(keyFile, next.keyPem);
    const [refused] = await running.reload();
    expect(refused!.event).toBe('certificate_refused');
    expect(String(refused!.reason)).toMatch(/truncated/);
    expect(await served()).toBe(serialOf(current.serial));
    // Cut inside the key.
    replaceFile(certFile, next.fullChainPem);
    replaceFile(keyFile, next.keyPem.slice(0, 100));
    const [refusedKey] = await running.reload();
    expect(refusedKey!.event).toBe('certificate_refused');
    expect(refusedKey!.file).toBe(keyFile);
    expect(String(refusedKey!.reason)).toMatch(/truncated/);
    expect(await served()).toBe(serialOf(current.serial));
    install(current);
    await running.reload();
  });

  it('T2: new files under an unchanged config file are re-read on every SIGHUP', async () => {
    for (let round = 0; round < 3; round += 1) {
      const next = issueLeaf(authority, { names: [NAME] });
      install(next);
      const [outcome] = await running.reload();
      expect(outcome!.event).toBe('certificate_replaced');
      expect(await served()).toBe(serialOf(next.serial));
      current = next;
    }
    const [kept] = await running.reload();
    expect(kept!.event).toBe('certificate_kept');
  });

  it('T2: a TLS connection opened before a swap keeps working after it (same socket, old certificate)', async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });
    const get = (): Promise<{ status: number; reused: boolean; serial: string; socket: unknown }> => new Promise((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port: running.port, servername: NAME, path: '/_matrix/federation/v1/version', agent }, (res) => {
        const socket = res.socket as import('node:tls').TLSSocket;
        const serial = serialOf(socket.getPeerCertificate().serialNumber);
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket, serial, socket }));
      });
      req.on('error', reject);
    });
    const before = await get();
    expect(before.status).toBe(200);
    expect(before.serial).toBe(serialOf(current.serial));
    const next = issueLeaf(authority, { names: [NAME] });
    install(next);
    expect((await running.reload())[0]!.event).toBe('certificate_replaced');
    const after = await get();
    expect(after.status).toBe(200);
    expect(after.reused).toBe(true);
    expect(after.socket).toBe(before.socket);
    expect(after.serial).toBe(serialOf(current.serial)); // the open connection keeps its handshake
    expect(await served()).toBe(serialOf(next.serial)); // a new one gets the new pair
    agent.destroy();
    current = next;
  });

  it('50 SIGHUPs while a client makes requests in a loop: no failed request, only whole pairs served', async () => {
    const pairs = [issueLeaf(authority, { names: [NAME] }), issueLeaf(authority, { names: [NAME] })];
    const mismatched = issueLeaf(authority, { names: [NAME] });
    const valid = new Set([current, ...pairs].map((leaf) => serialOf(leaf.serial)));
    let stop = false;
    let requests = 0;
    const failures: string[] = [];
    const seen = new Set<string>();
    const client = (async () => {
      while (!stop) {
        try {
          // A fresh connection each time, so handshakes race the swaps.
          const result = await new Promise<{ status: number; serial: string }>((resolve, reject) => {
            const req = https.get({ host: '127.0.0.1', port: running.port, servername: NAME, path: `/_matrix/federation/v1/version?n=${requests}`, agent: false, rejectUnauthorized: false }, (res) => {
              const serial = serialOf((res.socket as import('node:tls').TLSSocket).getPeerCertificate().serialNumber);
              res.resume();
              res.on('end', () => resolve({ status: res.statusCode ?? 0, serial }));
            });
            req.setTimeout(20_000, () => req.destroy(new Error('timeout')));
            req.on('error', reject);
          });
          requests += 1;
          seen.add(result.serial);
          if (result.status !== 200) failures.push(`status ${result.status}`);
          if (!valid.has(result.serial)) failures.push(`served unexpected serial ${result.serial}`);
        } catch (error) {
          failures.push((error as Error).message);
        }
      }
    })();
    const events: string[] = [];
    for (let i = 0; i < 50; i += 1) {
      if (i % 5 === 4) {
        replaceFile(certFile, mismatched.fullChainPem); // every fifth swap is a broken one
      } else {
        install(pairs[i % 2]!);
      }
      events.push(String((await running.reload())[0]!.event));
      if (i % 5 === 4) install(pairs[i % 2]!);
    }
    stop = true;
    await client;
    expect(failures).toEqual([]);
    expect(requests).toBeGreaterThan(10);
    expect(events.filter((e) => e === 'certificate_refused')).toHaveLength(10);
    expect(seen.has(serialOf(mismatched.serial))).toBe(false);
    current = pairs[1]!;
  }, 120_000);
});
