// P6: long polls. A backend that answers after 35 s is waited for with the default
// proxy.response_timeout (federation requests wait up to 60 s; /sync long-polls), and the
// default is well above a minute.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { tempDir, writeConfig } from './helpers/daemon.js';
import { httpsRequest, startProxyFixture, type ProxyFixture } from './helpers/proxy-fixture.js';

describe('proxy: long polls', () => {
  let fixture: ProxyFixture;

  beforeAll(async () => {
    fixture = await startProxyFixture(); // default timeouts
    fixture.backend.respond = (req, res) => {
      req.resume();
      setTimeout(() => {
        const body = JSON.stringify({ next_batch: 's2', waited: true });
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
      }, 35_000);
    };
  });

  afterAll(async () => {
    await fixture?.close();
  });

  it('P6: the default response timeout is well above a minute', () => {
    const config = loadConfig(writeConfig(tempDir(), { server_name: 'example.org' }));
    expect(config.proxy.responseTimeoutMs).toBeGreaterThanOrEqual(120_000);
  });

  it('P6: a backend that answers after 35 s: the client gets the backend\'s 200', async () => {
    const started = performance.now();
    const response = await httpsRequest(fixture, { path: '/_matrix/client/v3/sync?timeout=30000&since=s1', timeoutMs: 55_000 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(34_000);
    expect(response.status).toBe(200);
    expect(response.complete).toBe(true);
    expect(JSON.parse(response.body.toString())).toEqual({ next_batch: 's2', waited: true });
  }, 58_000);
});
