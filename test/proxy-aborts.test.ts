// Clients that give up (P3), over real TLS: an upload reset mid-body and a long-poll closed
// early each destroy the upstream request within about a second, are logged below error
// level, and leave the daemon serving; after 100 aborted uploads the daemon's open file
// descriptors (/proc/<pid>/fd), the backend's open connections and the daemon's memory
// (VmRSS) are back at their baseline.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import tls from 'node:tls';
import type { Responder } from './helpers/backend.js';
import { eventually, httpsRequest, processStats, PROXY_TEST_NAME, startProxyFixture, uploadThenReset, type ProxyFixture } from './helpers/proxy-fixture.js';

const MB = 1024 * 1024;

/** Long-polls never answer on their own; /cut dies mid-response; uploads are read and answered at the end. */
const responder: Responder = (req, res, record) => {
  if ((req.url ?? '').includes('/sync')) return;
  if ((req.url ?? '').startsWith('/cut')) {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '1000' });
    res.write('{"partial":');
    setTimeout(() => req.socket.destroy(), 50);
    return;
  }
  req.on('data', () => undefined);
  req.on('end', () => {
    const body = JSON.stringify({ received: record.bodyBytes });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
};

function uploadHead(target: string, length: number): string {
  return `PUT ${target} HTTP/1.1\r\nHost: ${PROXY_TEST_NAME}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${length}\r\n\r\n`;
}

/** Starts a long-poll and closes the connection after `afterMs`; resolves with the close time. */
function abortedLongPoll(fixture: ProxyFixture, target: string, afterMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: fixture.port, servername: PROXY_TEST_NAME, ca: fixture.ca }, () => {
      socket.write(`GET ${target} HTTP/1.1\r\nHost: ${PROXY_TEST_NAME}\r\nAuthorization: Bearer x\r\n\r\n`);
      setTimeout(() => {
        const at = performance.now();
        socket.destroy();
        resolve(at);
      }, afterMs);
    });
    socket.on('data', () => reject(new Error('the long-poll got an answer before it was aborted')));
    socket.on('error', reject);
  });
}

/** One aborted upload: `sendBytes` of a `declaredBytes` body, reset once the backend has at least `resetAfterBackendGot`. */
async function abortedUpload(fixture: ProxyFixture, target: string, declaredBytes: number, sendBytes: number, resetAfterBackendGot: number): Promise<number> {
  return uploadThenReset({
    port: fixture.port, ca: fixture.ca, head: uploadHead(target, declaredBytes), bodyBytes: sendBytes,
    resetWhen: () => (fixture.backend.requests.find((r) => r.target === target)?.bodyBytes ?? 0) >= resetAfterBackendGot,
  });
}

describe('proxy: clients that give up', () => {
  let fixture: ProxyFixture;

  beforeAll(async () => {
    fixture = await startProxyFixture({ logLevel: 'debug' });
    fixture.backend.respond = responder;
  });

  afterAll(async () => {
    await fixture?.close();
  });

  it('P3: a 20 MB upload reset after 10 MB: the upstream request is destroyed within about a second, logged below error', async () => {
    const target = '/_matrix/media/v3/upload?filename=p3.bin';
    const resetAt = await abortedUpload(fixture, target, 20 * MB, 10 * MB, 8 * MB);
    const record = fixture.backend.requests.find((r) => r.target === target)!;
    expect(await eventually(() => record.aborted, 5000)).toBe(true);
    const lag = record.abortedAt! - resetAt;
    console.log(`P3 upload: upstream destroyed ${lag.toFixed(0)} ms after the client's reset (backend had ${(record.bodyBytes / MB).toFixed(1)} MB)`);
    expect(lag).toBeLessThan(1500);
    expect(record.bodyBytes).toBeLessThan(20 * MB);
    const logged = await fixture.daemon.waitForLog((l) => l.event === 'client_aborted' && String(l.path).startsWith('/_matrix/media/v3/upload'), 5000, 'client_aborted');
    expect(logged.level).toBeLessThan(50);
    expect((await httpsRequest(fixture, { path: '/_matrix/federation/v1/version' })).status).toBe(200);
  });

  it('client_aborted blames the client only when it went away: not for a backend cut or a request fedtls refused mid-body', async () => {
    // The homeserver dies mid-response: fedtls breaks the client connection itself.
    const cut = await httpsRequest(fixture, { path: '/cut/mid-body' });
    expect(cut.complete).toBe(false);
    await fixture.daemon.waitForLog((l) => l.event === 'backend_response_cut' && l.path === '/cut/mid-body', 5000, 'backend_response_cut');
    // A chunked upload whose framing breaks after the first chunk: refused, and the upstream request dropped.
    const target = '/_matrix/media/v3/upload?filename=bad-framing';
    const refused = fixture.raw(`PUT ${target} HTTP/1.1\r\nHost: ${PROXY_TEST_NAME}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n`);
    const record = await fixture.backend.waitForRequest(target, 5000);
    expect((await refused).status).toBe(400);
    expect(await eventually(() => record.aborted, 5000)).toBe(true);
    await fixture.daemon.waitForLog((l) => l.event === 'request_refused' && l.code === 'HPE_INVALID_CHUNK_SIZE', 5000, 'request_refused');
    // The client that really goes away is still named: one that closes, one that ends its side mid-body.
    await abortedLongPoll(fixture, '/_matrix/client/v3/sync?timeout=30000&since=blame', 200);
    await fixture.daemon.waitForLog((l) => l.event === 'client_aborted' && String(l.path).includes('since=blame'), 5000, 'client_aborted');
    const halfTarget = '/_matrix/media/v3/upload?filename=half-closed';
    const halfClosed = tls.connect({ host: '127.0.0.1', port: fixture.port, servername: PROXY_TEST_NAME, ca: fixture.ca }, () => {
      halfClosed.write(`PUT ${halfTarget} HTTP/1.1\r\nHost: ${PROXY_TEST_NAME}\r\nContent-Length: 1000\r\n\r\n0123456789`);
    });
    halfClosed.on('error', () => undefined);
    halfClosed.on('data', () => undefined);
    await fixture.backend.waitForRequest(halfTarget, 5000);
    halfClosed.end();
    await fixture.daemon.waitForLog((l) => l.event === 'client_aborted' && l.path === halfTarget, 5000, 'client_aborted (ended mid-body)');
    halfClosed.destroy();
    const blamed = fixture.daemon.logs.filter((l) => l.event === 'client_aborted').map((l) => String(l.path));
    expect(blamed.filter((path) => path.startsWith('/cut') || path.includes('bad-framing'))).toEqual([]);
  });

  it('P3: a /sync long-poll closed after 1 s: the upstream request is destroyed within about a second', async () => {
    const target = '/_matrix/client/v3/sync?timeout=30000&since=s1';
    const closedAt = await abortedLongPoll(fixture, target, 1000);
    const record = fixture.backend.requests.find((r) => r.target === target)!;
    expect(record).toBeDefined();
    expect(await eventually(() => record.aborted, 5000)).toBe(true);
    const lag = record.abortedAt! - closedAt;
    console.log(`P3 long-poll: upstream destroyed ${lag.toFixed(0)} ms after the client closed`);
    expect(lag).toBeLessThan(1500);
    expect((await httpsRequest(fixture, { path: '/_matrix/federation/v1/version' })).status).toBe(200);
  });

  it('P3: after 100 aborted uploads the daemon\'s sockets, file descriptors and memory are back at their baseline', async () => {
    const round = async (label: string, count: number): Promise<void> => {
      for (let batch = 0; batch < count; batch += 10) {
        await Promise.all(Array.from({ length: Math.min(10, count - batch) }, (_, i) => {
          const n = batch + i;
          return n % 5 === 4
            ? abortedLongPoll(fixture, `/_matrix/client/v3/sync?timeout=30000&${label}=${n}`, 50).then(() => undefined)
            : abortedUpload(fixture, `/_matrix/media/v3/upload?${label}=${n}`, 6 * MB, 3 * MB, MB).then(() => undefined);
        }));
      }
    };
    const settled = async (): Promise<void> => {
      await eventually(() => fixture.backend.requests.every((r) => r.aborted || r.bodyBytes === 0 || !r.target.includes('=')), 10_000);
      await new Promise((resolve) => setTimeout(resolve, 300));
    };

    await round('warmup', 20);
    await settled();
    const baseline = processStats(fixture.pid);
    const baselineBackendSockets = fixture.backend.openSockets();
    expect(baseline.rssBytes).toBeGreaterThan(10 * MB); // really reading the daemon's numbers

    await round('abort', 100);
    const aborted = fixture.backend.requests.filter((r) => r.target.includes('abort='));
    expect(aborted.length).toBe(100);
    expect(await eventually(() => aborted.every((r) => r.aborted), 10_000)).toBe(true);

    // Every socket the aborts opened is closed again, on both sides of the daemon.
    const fdsBack = await eventually(() => processStats(fixture.pid).openFds <= baseline.openFds, 10_000);
    const backendBack = await eventually(() => fixture.backend.openSockets() <= baselineBackendSockets, 10_000);
    const after = processStats(fixture.pid);
    console.log(`P3 100 aborts: fds ${baseline.openFds} → ${after.openFds}, backend sockets ${baselineBackendSockets} → ${fixture.backend.openSockets()}, ` +
      `RSS ${(baseline.rssBytes / MB).toFixed(1)} MB → ${(after.rssBytes / MB).toFixed(1)} MB (80 uploads reset mid-body, 20 long-polls closed)`);
    expect(fdsBack).toBe(true);
    expect(backendBack).toBe(true);
    // A leak of what each aborted upload had in flight (≥ 1 MB each) would add ≥ 80 MB; a
    // leaked socket or request object per abort shows in the counts above.
    expect(after.rssBytes - baseline.rssBytes).toBeLessThan(40 * MB);
    expect(fixture.daemon.logs.filter((l) => (l.level ?? 0) >= 50)).toEqual([]);
    expect(fixture.daemon.stderr()).not.toMatch(/Warning|Error/);
    expect((await httpsRequest(fixture, { path: '/_matrix/federation/v1/version' })).status).toBe(200);
  });
});
