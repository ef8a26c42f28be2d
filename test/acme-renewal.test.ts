// Real renewals: Pebble issues certificates valid for 60 s (with its default share of
// rejected nonces, so badNonce handling is exercised), the running fedtls renews them by
// itself (acme.renew_before: 45s → about 15 s after each issuance), and clients see the new
// certificate at once, with no failed request. Also: three restarts then a renewal use one
// account (A6), the deploy hook gets its environment and its failure is not fatal, and port
// 80 answers challenges directly while redirecting everything else (A2).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { startTestPebble, writePebbleDaemonConfig, type PebbleFixture } from './helpers/pebble.js';
import { startBackend, type Backend } from './helpers/backend.js';
import { startDaemon, tempDir, boundPort, type RunningDaemon, type LogLine } from './helpers/daemon.js';
import { handshake, rawTlsRequest, serialOf } from './helpers/tls-client.js';

const NAME = 'renew.fedtls.test';

describe('renewal of short-lived certificates by the running daemon (Pebble, 60 s certificates)', () => {
  let pebble: PebbleFixture;
  let backend: Backend;
  let stateDir: string;
  let configFile: string;
  let hookLog: string;
  let daemon: RunningDaemon | null = null;
  let root: string;
  const issued = (d: RunningDaemon): LogLine[] => d.logs.filter((l) => l.event === 'acme_certificate_issued');

  beforeAll(async () => {
    pebble = await startTestPebble({ certificateValiditySeconds: 60 });
    backend = await startBackend();
    const dir = tempDir();
    hookLog = path.join(dir, 'deploy-hook.log');
    ({ configFile, stateDir } = writePebbleDaemonConfig(dir, pebble, NAME, backend.url, {
      http: { redirect_to_https: true },
      acme: {
        email: 'admin@fedtls.test', renew_before: '45s',
        deploy_hook: `printf '%s|%s|%s\\n' "$FEDTLS_NAMES" "$FEDTLS_CERTIFICATE_PATH" "$FEDTLS_PRIVATE_KEY_PATH" >> '${hookLog}'; echo 'reload of the other service failed' >&2; exit 3`,
      },
    }));
    root = await pebble.issuingRootPem();
  });

  afterAll(async () => {
    await daemon?.stop();
    await backend?.close();
    await pebble?.stop();
  });

  it('A6/A2: first certificate with redirect_to_https on; three restarts register no new account', async () => {
    daemon = await startDaemon(configFile);
    await daemon.waitForLog((l) => l.event === 'acme_certificate_issued', 45_000, 'first certificate');
    const other = await new Promise<http.IncomingMessage>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: pebble.httpPort, path: '/_matrix/federation/v1/version', headers: { Host: `${NAME}:80` } }, (res) => { res.resume(); resolve(res); }).on('error', reject);
    });
    expect(other.statusCode).toBe(301);
    expect(other.headers.location).toBe(`https://${NAME}/_matrix/federation/v1/version`);
    for (let i = 0; i < 3; i += 1) {
      await daemon.stop();
      daemon = await startDaemon(configFile);
      expect(daemon.logs.some((l) => l.event === 'acme_account_registered' || l.event === 'acme_account_key_created')).toBe(false);
    }
  });

  it('A9: renewal goes live: no failed request while it happens, and the first handshake after an idle renewal gets the new serial', async () => {
    const port = boundPort(daemon!, 'federation');
    const running = daemon!;
    const before = issued(running).length;
    const startSerial = serialOf((await handshake({ port, servername: NAME, ca: root })).serial);

    // Phase 1: continuous traffic across a renewal.
    let sent = 0;
    const failures: string[] = [];
    const renewedUnderLoad = running.waitForLog((l) => l.event === 'acme_certificate_issued' && issued(running).length > before, 50_000, 'renewal under traffic');
    let loadDone = false;
    void renewedUnderLoad.finally(() => { loadDone = true; });
    while (!loadDone) {
      sent += 1;
      try {
        const exchange = await rawTlsRequest({ port, servername: NAME, ca: root, request: `GET /_matrix/federation/v1/version HTTP/1.1\r\nHost: ${NAME}\r\nConnection: close\r\n\r\n` });
        if (exchange.status !== 200) failures.push(`HTTP ${exchange.status}`);
      } catch (error) {
        failures.push((error as Error).message);
      }
    }
    const renewal = await renewedUnderLoad;
    expect(failures).toEqual([]);
    expect(sent).toBeGreaterThan(5);
    expect(serialOf(renewal.previous_serial)).toBe(startSerial);

    // Phase 2: no traffic; the next renewal happens; the very first handshake gets it.
    const count = issued(running).length;
    const idleRenewal = await running.waitForLog((l) => l.event === 'acme_certificate_issued' && issued(running).length > count, 50_000, 'idle renewal');
    const first = await handshake({ port, servername: NAME, ca: root });
    expect(first.authorized).toBe(true);
    expect(serialOf(first.serial)).toBe(serialOf(idleRenewal.serial));
    expect(serialOf(idleRenewal.serial)).not.toBe(serialOf(renewal.serial));

    // The renewal log lines say why and what.
    const start = running.logs.find((l) => l.event === 'acme_order_start' && l.reason === 'acme.renew_before reached');
    expect(start).toBeDefined();

    // Deploy hook: run after each issuance with its environment; its failure is logged, not fatal.
    const hookLines = readFileSync(hookLog, 'utf8').trim().split('\n');
    expect(hookLines.length).toBeGreaterThanOrEqual(2);
    const certDir = path.join(stateDir, 'certificates', NAME);
    expect(hookLines[0]).toBe(`${NAME}|${path.join(certDir, 'fullchain.pem')}|${path.join(certDir, 'privkey.pem')}`);
    const hookFailure = await running.waitForLog((l) => l.event === 'deploy_hook_failed', 10_000, 'deploy hook failure');
    expect(hookFailure).toMatchObject({ exit_code: 3, stderr: 'reload of the other service failed' });
    expect(running.child.exitCode).toBeNull();

    // A6: one account across three restarts and the renewals; its key is 0600.
    expect(pebble.output().match(/There are now \d+ accounts/g)).toEqual(['There are now 1 accounts']);
    const accounts = readdirSync(path.join(stateDir, 'acme', 'accounts'));
    expect(accounts).toHaveLength(1);
    expect(statSync(path.join(stateDir, 'acme', 'accounts', accounts[0]!, 'account.key')).mode & 0o777).toBe(0o600);
  });
});
