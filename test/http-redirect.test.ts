// The port-80 listener with http.redirect_to_https: ordinary requests for the names fedtls
// serves are redirected to https (A2: never the challenge path); a Host header naming any
// other site gets 404, so the listener is never an open redirect.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { writeManualDaemonConfig } from './helpers/manual-daemon.js';
import { startBackend, type Backend } from './helpers/backend.js';
import { boundPort, startDaemon, tempDir, type RunningDaemon } from './helpers/daemon.js';

const NAME = 'redirect.fedtls.test';

function get(port: number, target: string, host: string): Promise<{ status: number; location: string | undefined }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: target, headers: { Host: host }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location }));
    }).on('error', reject);
  });
}

describe('port 80 redirects', () => {
  let backend: Backend;
  let daemon: RunningDaemon;
  let port: number;

  beforeAll(async () => {
    backend = await startBackend();
    const { configFile } = await writeManualDaemonConfig(tempDir(), NAME, backend.url, { http: { redirect_to_https: true }, workers: 1 });
    daemon = await startDaemon(configFile);
    port = boundPort(daemon, 'http');
  });

  afterAll(async () => {
    await daemon?.stop();
    await backend?.close();
  });

  it('A2: redirects ordinary requests for a served name to https, but never the challenge path', async () => {
    expect(await get(port, '/some/page?x=1', `${NAME}:80`)).toEqual({ status: 301, location: `https://${NAME}/some/page?x=1` });
    const challenge = await get(port, '/.well-known/acme-challenge/unknown-token', NAME);
    expect(challenge.status).toBe(404);
    expect(challenge.location).toBeUndefined();
  });

  it('answers 404, not a redirect, for a Host that fedtls does not serve', async () => {
    expect(await get(port, '/login', 'evil.example')).toEqual({ status: 404, location: undefined });
  });
});
