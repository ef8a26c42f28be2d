// End to end with a real ACME CA (Pebble): fresh state_dir → certificate over HTTP-01 →
// federation request over TLS (trusting only Pebble's root) reaches the backend byte for
// byte; a restart with the certificate on disk makes no new order and no new account.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import yaml from 'js-yaml';
import path from 'node:path';
import { startTestPebble, writePebbleDaemonConfig, type PebbleFixture } from './helpers/pebble.js';
import { startBackend, type Backend } from './helpers/backend.js';
import { startDaemon, tempDir, boundPort, type RunningDaemon } from './helpers/daemon.js';
import { handshake, rawTlsRequest, serialOf } from './helpers/tls-client.js';

const NAME = 'hs.fedtls.test';

describe('ACME end to end with Pebble', () => {
  let pebble: PebbleFixture;
  let backend: Backend;
  let stateDir: string;
  let configFile: string;
  let daemon: RunningDaemon | null = null;
  let root: string;

  beforeAll(async () => {
    pebble = await startTestPebble();
    backend = await startBackend();
    ({ configFile, stateDir } = writePebbleDaemonConfig(tempDir(), pebble, NAME, backend.url, { acme: { email: 'admin@fedtls.test' } }));
  });

  afterAll(async () => {
    await daemon?.stop();
    await backend?.close();
    await pebble?.stop();
  });

  it('C5: starts with an empty state_dir, obtains a certificate and serves it without a restart', async () => {
    const started = Date.now();
    daemon = await startDaemon(configFile);
    const issued = await daemon.waitForLog((l) => l.event === 'acme_certificate_issued', 30_000, 'certificate issued');
    root = await pebble.issuingRootPem();
    const port = boundPort(daemon, 'federation');
    const result = await handshake({ port, servername: NAME, ca: root });
    expect(serialOf(result.serial)).toBe(serialOf(issued.serial));
    expect(result.names).toContain(`DNS:${NAME}`);
    // eslint-disable-next-line no-console
    console.log(`first run: process start to serving TLS in ${Date.now() - started} ms`);
    const keyFile = path.join(stateDir, 'certificates', NAME, 'privkey.pem');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
  });

  it('P1: the backend receives exactly the request-target bytes sent over verified TLS', async () => {
    const port = boundPort(daemon!, 'federation');
    const targets = [
      '/_matrix/federation/v1/event/%24abc%2Fdef',
      '/_matrix/client/v3/directory/room/%23a%3Aex.org',
      '/_matrix/client/v3/room_keys/keys/!r%3Aex/ab%2Bc%2Fd?version=1',
      '/_matrix/federation/v1/send//double//slash/%2e%2E/./../x?b=%2f&a=%2F&c=\'quote\'',
    ];
    for (const target of targets) {
      const exchange = await rawTlsRequest({ port, servername: NAME, ca: root, request: `GET ${target} HTTP/1.1\r\nHost: ${NAME}\r\nConnection: close\r\n\r\n` });
      expect(exchange.status).toBe(200);
      const seen = backend.requests.at(-1)!;
      expect(seen.requestLine).toBe(`GET ${target} HTTP/1.1`);
      expect(seen.headers.host).toBe(NAME);
      expect(seen.headers['x-forwarded-proto']).toBe('https');
      expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    }
  });

  it('A6: a restart with the certificate on disk makes no new order and reuses the one account', async () => {
    for (let i = 0; i < 3; i += 1) {
      await daemon!.stop();
      daemon = await startDaemon(configFile);
      expect(daemon.logs.some((l) => l.event === 'certificate_added')).toBe(true);
      await new Promise((r) => setTimeout(r, 300));
      expect(daemon.logs.some((l) => l.event === 'acme_order_start')).toBe(false);
    }
    const accounts = readdirSync(path.join(stateDir, 'acme', 'accounts'));
    expect(accounts).toHaveLength(1);
    const keyFile = path.join(stateDir, 'acme', 'accounts', accounts[0]!, 'account.key');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(pebble.output().match(/There are now \d+ accounts/g)).toEqual(['There are now 1 accounts']);
  });

  it('a name added to acme.domains is ordered at the next start, not at renewal time; still one account', async () => {
    await daemon!.stop();
    const delegated = `matrix.${NAME}`;
    const dir = path.dirname(configFile);
    const config = yaml.load(readFileSync(configFile, 'utf8')) as Record<string, Record<string, unknown>>;
    config.acme!.domains = [NAME, delegated];
    writeFileSync(configFile, yaml.dump(config));
    daemon = await startDaemon(path.join(dir, path.basename(configFile)));
    const start = await daemon.waitForLog((l) => l.event === 'acme_order_start', 30_000, 'acme_order_start');
    expect(String(start.reason)).toContain(`acme.domains lists ${delegated}, which the current certificate lacks`);
    await daemon.waitForLog((l) => l.event === 'acme_certificate_issued', 30_000, 'certificate issued');
    const served = await handshake({ port: boundPort(daemon, 'federation'), servername: delegated, ca: root });
    expect(served.authorized).toBe(true);
    expect(served.names).toContain(`DNS:${delegated}`);
    expect(pebble.output().match(/There are now \d+ accounts/g)).toEqual(['There are now 1 accounts']);
  });
});
