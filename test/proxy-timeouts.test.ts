// The proxy's patience, over real TLS, with short configured timeouts: a backend that is
// down (502 JSON), one that stops answering (504 JSON after proxy.response_timeout), one that
// stalls mid-body (the client connection breaks), slow client headers (408 JSON after
// proxy.header_timeout), idle keep-alive connections (closed after proxy.idle_timeout), the
// bounded keep-alive pool to the backend, and a pooled connection the backend dropped.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import tls from 'node:tls';
import { streamFiller, type Responder } from './helpers/backend.js';
import { freePort } from './helpers/pebble.js';
import { eventually, httpsRequest, PROXY_TEST_NAME, startProxyFixture, type ProxyFixture } from './helpers/proxy-fixture.js';

const responder: Responder = (req, res) => {
  const url = req.url ?? '';
  req.resume();
  if (url.startsWith('/hang') || url.startsWith('/upload-stall')) return; // never answers (reads what comes)
  if (url.startsWith('/download')) {
    const total = 40 * 1024 * 1024;
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(total) });
    streamFiller(res, total);
    return;
  }
  if (url.startsWith('/stall-body')) {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '100' });
    res.write('{"started":');
    return; // and then nothing
  }
  const delay = url.startsWith('/slow') ? 300 : 0;
  setTimeout(() => {
    const body = JSON.stringify({ target: url });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  }, delay);
};

/** Opens a TLS connection, sends `bytes`, and reports what came back and when the server closed. */
function openAndWait(fixture: ProxyFixture, bytes: string, timeoutMs = 15_000): Promise<{ response: string; closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let response = '';
    const socket = tls.connect({ host: '127.0.0.1', port: fixture.port, servername: PROXY_TEST_NAME, ca: fixture.ca }, () => { if (bytes) socket.write(bytes); });
    socket.on('data', (d: Buffer) => { response += d.toString('latin1'); });
    socket.on('error', () => undefined);
    socket.on('close', () => { clearTimeout(timer); resolve({ response, closedAfterMs: performance.now() - started }); });
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`the server kept the connection open for ${timeoutMs} ms`)); }, timeoutMs);
  });
}

function jsonOf(response: string): { errcode: string; error: string } {
  return JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4)) as never;
}

describe('proxy: backend down', () => {
  let fixture: ProxyFixture;

  beforeAll(async () => {
    fixture = await startProxyFixture({ backendUrl: `http://127.0.0.1:${await freePort()}` });
  });

  afterAll(async () => {
    await fixture?.close();
  });

  it('answers 502 Matrix JSON and logs which backend is unreachable', async () => {
    const response = await httpsRequest(fixture, { path: '/_matrix/federation/v1/version' });
    expect(response.status).toBe(502);
    expect(response.headers['content-type']).toBe('application/json');
    expect(JSON.parse(response.body.toString())).toEqual({ errcode: 'M_UNKNOWN', error: 'The homeserver is unreachable' });
    const logged = await fixture.daemon.waitForLog((l) => l.event === 'backend_unreachable', 5000, 'backend_unreachable');
    expect(String(logged.msg)).toMatch(/cannot reach the homeserver at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/);
    // Uploads too, and the daemon keeps answering.
    const upload = await httpsRequest(fixture, { method: 'PUT', path: '/_matrix/media/v3/upload', body: Buffer.alloc(200_000) });
    expect(upload.status).toBe(502);
    // A down backend fails every request; the log says so once per 10 s, not once per request.
    for (let i = 0; i < 5; i += 1) expect((await httpsRequest(fixture, { path: `/again/${i}` })).status).toBe(502);
    expect(fixture.daemon.logs.filter((l) => l.event === 'backend_unreachable').length).toBe(1);
  });
});

describe('proxy: timeouts and the backend pool', () => {
  let fixture: ProxyFixture;

  beforeAll(async () => {
    fixture = await startProxyFixture({ proxy: { response_timeout: '1500ms', header_timeout: '1s', idle_timeout: '1s', max_backend_sockets: 2, connect_timeout: '20s' } });
    fixture.backend.respond = responder;
  });

  afterAll(async () => {
    await fixture?.close();
  });

  it('a backend that stops answering: 504 Matrix JSON after proxy.response_timeout, and the upstream request is dropped', async () => {
    const started = performance.now();
    const response = await httpsRequest(fixture, { path: '/hang/_matrix/federation/v1/send/1' });
    const took = performance.now() - started;
    expect(response.status).toBe(504);
    expect(response.headers['content-type']).toBe('application/json');
    expect(JSON.parse(response.body.toString()).errcode).toBe('M_UNKNOWN');
    expect(took).toBeGreaterThanOrEqual(1400);
    expect(took).toBeLessThan(8000);
    const record = fixture.backend.requests.find((r) => r.target.startsWith('/hang/'))!;
    expect(await eventually(() => record.aborted, 5000)).toBe(true);
    expect(fixture.daemon.logs.some((l) => l.event === 'backend_timeout' && l.level === 40)).toBe(true);
  });

  it('a backend that stalls mid-body: the client connection breaks after proxy.response_timeout', async () => {
    const response = await httpsRequest(fixture, { path: '/stall-body' });
    expect(response.status).toBe(200);
    expect(response.complete).toBe(false);
    expect(response.body.toString()).toBe('{"started":');
    await fixture.daemon.waitForLog((l) => l.event === 'backend_response_cut' && l.path === '/stall-body', 5000, 'backend_response_cut');
  });

  it('a client that stalls is not blamed on the homeserver: a paused download is cut, a stalled upload gets 408, both logged at debug', async () => {
    // Stops reading a 40 MB download: fedtls pauses the backend, and after proxy.response_timeout closes the connection.
    const download = await new Promise<{ bytes: number }>((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port: fixture.port, servername: PROXY_TEST_NAME, ca: fixture.ca }, () => {
        socket.write(`GET /download/paused HTTP/1.1\r\nHost: ${PROXY_TEST_NAME}\r\n\r\n`);
        socket.once('data', () => {
          socket.pause();
          setTimeout(() => socket.resume(), 4000);
        });
      });
      let bytes = 0;
      socket.on('data', (d: Buffer) => { bytes += d.length; });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve({ bytes }));
    });
    expect(download.bytes).toBeLessThan(40 * 1024 * 1024);
    const paused = await fixture.daemon.waitForLog((l) => l.event === 'client_stalled' && l.path === '/download/paused', 5000, 'client_stalled (response)');
    expect(paused).toMatchObject({ level: 20, stalled: 'response' });

    // Sends part of an upload, then nothing: 408, not "the homeserver did not answer in time".
    const upload = await openAndWait(fixture, `PUT /upload-stall HTTP/1.1\r\nHost: ${PROXY_TEST_NAME}\r\nContent-Length: 1000000\r\n\r\n${'x'.repeat(100_000)}`);
    expect(upload.response).toMatch(/^HTTP\/1\.1 408 /);
    expect(jsonOf(upload.response)).toEqual({ errcode: 'M_UNKNOWN', error: 'The request body did not arrive in time (proxy.response_timeout)' });
    const stalled = await fixture.daemon.waitForLog((l) => l.event === 'client_stalled' && l.path === '/upload-stall', 5000, 'client_stalled (request body)');
    expect(stalled).toMatchObject({ level: 20, stalled: 'request_body' });
    const record = fixture.backend.requests.find((r) => r.target === '/upload-stall')!;
    expect(await eventually(() => record.aborted, 5000)).toBe(true);

    const blamed = fixture.daemon.logs.filter((l) => (l.event === 'backend_response_cut' || l.event === 'backend_timeout') && /download|upload-stall/.test(String(l.path)));
    expect(blamed).toEqual([]);
  });

  it('slow client headers: 408 Matrix JSON after proxy.header_timeout; a silent connection is closed too', async () => {
    const partial = await openAndWait(fixture, `GET /_matrix/federation/v1/version HTTP/1.1\r\nHost: ${PROXY_TEST_NAME}\r\nX-Slow: `);
    expect(partial.response).toMatch(/^HTTP\/1\.1 408 /);
    expect(jsonOf(partial.response).errcode).toBe('M_UNKNOWN');
    expect(partial.closedAfterMs).toBeGreaterThanOrEqual(900);
    expect(partial.closedAfterMs).toBeLessThan(6000);
    const silent = await openAndWait(fixture, '');
    expect(silent.closedAfterMs).toBeLessThan(6000);
    expect(fixture.backend.requests.some((r) => r.target === '/_matrix/federation/v1/version')).toBe(false);
  });

  it('idle keep-alive connections are closed after proxy.idle_timeout', async () => {
    const kept = await openAndWait(fixture, `GET /keep-alive HTTP/1.1\r\nHost: ${PROXY_TEST_NAME}\r\n\r\n`);
    expect(kept.response).toMatch(/^HTTP\/1\.1 200 /);
    expect(kept.response).not.toMatch(/\r\nConnection: close\r\n/i);
    expect(kept.closedAfterMs).toBeGreaterThanOrEqual(900);
    expect(kept.closedAfterMs).toBeLessThan(6000);
  });

  it('keeps connections to the backend alive and never opens more than proxy.max_backend_sockets', async () => {
    const acceptedBefore = fixture.backend.connectionsAccepted();
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => httpsRequest(fixture, { path: `/slow/${i}` })));
    expect(answers.map((a) => a.status)).toEqual(Array(8).fill(200));
    expect(fixture.backend.peakSockets()).toBeLessThanOrEqual(2);
    for (let i = 0; i < 10; i += 1) expect((await httpsRequest(fixture, { path: `/sequential/${i}` })).status).toBe(200);
    expect(fixture.backend.connectionsAccepted() - acceptedBefore).toBeLessThanOrEqual(2 + 2);
  });

  it('a pooled connection the backend dropped while idle: retried once on a new connection, the client sees 200', async () => {
    expect((await httpsRequest(fixture, { path: '/pool/first' })).status).toBe(200);
    fixture.backend.resetReusedConnections = true;
    try {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const second = await httpsRequest(fixture, { path: '/pool/second' });
      expect(second.status).toBe(200);
      expect(JSON.parse(second.body.toString()).target).toBe('/pool/second');
      expect(fixture.daemon.logs.some((l) => l.event === 'backend_retry')).toBe(true);
    } finally {
      fixture.backend.resetReusedConnections = false;
    }
  });
});
