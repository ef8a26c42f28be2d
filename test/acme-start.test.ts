// C3: a valid certificate on disk and the CA unreachable: port 8448 serves at once and
// renewal keeps retrying in the background, saying why and when.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort } from './helpers/pebble.js';
import { startBackend, type Backend } from './helpers/backend.js';
import { startDaemon, tempDir, writeConfig, boundPort, type RunningDaemon } from './helpers/daemon.js';
import { handshake, rawTlsRequest, serialOf } from './helpers/tls-client.js';
import { createAuthority, issueLeaf } from './helpers/certs.js';

const NAME = 'c3.fedtls.test';

describe('start with a certificate and no CA', () => {
  let backend: Backend;
  let daemon: RunningDaemon | null = null;

  beforeAll(async () => { backend = await startBackend(); });
  afterAll(async () => {
    await daemon?.stop();
    await backend?.close();
  });

  it('C3: a certificate with 20 days left serves at once; the unreachable CA is retried in the background', async () => {
    const authority = createAuthority('C3');
    // 90-day certificate with 20 days left: inside the default renewal window (one third left).
    const leaf = issueLeaf(authority, { names: [NAME], startOffsetDays: -70, days: 90 });
    const dir = tempDir();
    const stateDir = path.join(dir, 'state');
    const certDir = path.join(stateDir, 'certificates', NAME);
    mkdirSync(certDir, { recursive: true });
    writeFileSync(path.join(certDir, 'fullchain.pem'), leaf.fullChainPem);
    writeFileSync(path.join(certDir, 'privkey.pem'), leaf.keyPem, { mode: 0o600 });
    const deadPort = await freePort(); // nothing listens here: the CA is "down"
    const configFile = writeConfig(dir, {
      server_name: NAME, backend: backend.url, state_dir: stateDir,
      listen: { http: ["127.0.0.1:0"], federation: ["127.0.0.1:0"] },
      acme: { url: `https://127.0.0.1:${deadPort}/directory` },
    });
    const started = Date.now();
    daemon = await startDaemon(configFile);
    const port = boundPort(daemon, 'federation');
    const served = await handshake({ port, servername: NAME, ca: authority.rootCert });
    const servingAfter = Date.now() - started;
    expect(served.authorized).toBe(true);
    expect(serialOf(served.serial)).toBe(serialOf(leaf.serial));
    const exchange = await rawTlsRequest({ port, servername: NAME, ca: authority.rootCert, request: `GET /_matrix/federation/v1/version HTTP/1.1\r\nHost: ${NAME}\r\nConnection: close\r\n\r\n` });
    expect(exchange.status).toBe(200);

    const failure = await daemon.waitForLog((l) => l.event === 'acme_order_failed', 20_000, 'the failed renewal attempt');
    expect(failure).toMatchObject({ kind: 'ca_unreachable', attempt: 1, retry_reason: 'backoff' });
    expect(String(failure.error)).toContain(`cannot reach the CA at 127.0.0.1:${deadPort} (ECONNREFUSED)`);
    expect(serialOf(String(failure.still_serving))).toBe(serialOf(leaf.serial));
    const retryIn = Date.parse(String(failure.next_try_at)) - Date.parse(String(failure.time));
    expect(retryIn).toBeGreaterThanOrEqual(54_000); // a minute (±10 %), then doubling
    expect(String(failure.msg)).toMatch(/Likely cause: the CA is down or this machine cannot reach it.*Next try in \d+[smh]/);
    expect(daemon.child.exitCode).toBeNull();
    // eslint-disable-next-line no-console
    console.log(`C3: serving the certificate on disk ${servingAfter} ms after start, with the CA down`);
  });
});
