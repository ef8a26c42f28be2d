// Graceful shutdown with real requests in flight through TLS to a real backend that delays:
// SIGTERM/SIGINT stop accepting at once, in-flight requests finish (up to
// shutdown.drain_timeout), idle keep-alive connections do not hold the exit, and a second
// signal exits at once.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import tls from 'node:tls';
import { startBackend, defaultResponder, type Backend, type RecordedRequest } from './helpers/backend.js';
import { boundPort, runCli, startDaemon, tempDir, type RunningDaemon } from './helpers/daemon.js';
import { rawTlsRequest, type RawExchange } from './helpers/tls-client.js';
import { writeManualDaemonConfig } from './helpers/manual-daemon.js';

const NAME = 'shutdown.fedtls.test';

function connectRefused(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => { socket.destroy(); resolve('connected'); });
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

describe('graceful shutdown', () => {
  let backend: Backend;
  /** Requests to /hold wait until the test releases them; /slow answers after 1.5 s. */
  const held: { record: RecordedRequest; release: () => void }[] = [];
  let arrived: ((record: RecordedRequest) => void) | null = null;
  const daemons: RunningDaemon[] = [];

  beforeAll(async () => {
    backend = await startBackend();
    backend.respond = (req, res, record) => {
      arrived?.(record);
      if (req.url === '/slow') setTimeout(() => defaultResponder(req, res, record), 1500);
      else if (req.url === '/hold') held.push({ record, release: () => defaultResponder(req, res, record) });
      else defaultResponder(req, res, record);
    };
  });
  afterAll(async () => {
    for (const daemon of daemons) await daemon.stop();
    for (const h of held) h.release();
    await backend?.close();
  });

  async function start(drainTimeout: string): Promise<{ daemon: RunningDaemon; port: number }> {
    const { configFile } = await writeManualDaemonConfig(tempDir(), NAME, backend.url, { shutdown: { drain_timeout: drainTimeout } });
    const daemon = await startDaemon(configFile);
    daemons.push(daemon);
    return { daemon, port: boundPort(daemon, 'federation') };
  }

  /** Sends GET `target` and resolves once the backend has it (the request is in flight). */
  async function inFlight(port: number, target: string): Promise<{ exchange: Promise<RawExchange>; record: RecordedRequest }> {
    const reached = new Promise<RecordedRequest>((resolve) => { arrived = resolve; });
    const exchange = rawTlsRequest({ port, servername: NAME, request: `GET ${target} HTTP/1.1\r\nHost: ${NAME}\r\nConnection: close\r\n\r\n`, timeoutMs: 60_000 });
    exchange.catch(() => undefined);
    const record = await reached;
    arrived = null;
    return { exchange, record };
  }

  it('SIGTERM: stops accepting at once, lets the slow request in flight finish, then exits 0', async () => {
    const { daemon, port } = await start('30s');
    const { exchange } = await inFlight(port, '/slow');
    daemon.signal('SIGTERM');
    const stopping = await daemon.waitForLog((l) => l.event === 'stopping', 10_000, 'stopping');
    expect(stopping.in_flight).toBe(1);
    // New connections are refused while the old request is still being answered.
    expect(await connectRefused(port)).toBe('ECONNREFUSED');
    expect(daemon.child.exitCode).toBeNull();
    const answer = await exchange;
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toEqual({ ok: true, target: '/slow' });
    expect(await daemon.exited).toBe(0);
    expect(daemon.logs.some((l) => l.event === 'drain_timeout')).toBe(false);
    expect(daemon.logs.at(-1)?.event).toBe('stopped');
  });

  it('with TLS workers (workers: 2), "stopping" counts the requests in flight in the workers, and they finish', async () => {
    const { configFile } = await writeManualDaemonConfig(tempDir(), NAME, backend.url, { workers: 2, shutdown: { drain_timeout: '30s' } });
    const daemon = await startDaemon(configFile);
    daemons.push(daemon);
    const port = boundPort(daemon, 'federation');
    const first = await inFlight(port, '/hold');
    const second = await inFlight(port, '/hold');
    daemon.signal('SIGTERM');
    const stopping = await daemon.waitForLog((l) => l.event === 'stopping', 10_000, 'stopping');
    expect(stopping.in_flight).toBe(2);
    expect(String(stopping.msg)).toMatch(/waiting for 2 request\(s\) in flight/);
    for (const h of held.splice(0)) h.release();
    expect((await first.exchange).status).toBe(200);
    expect((await second.exchange).status).toBe(200);
    expect(await daemon.exited).toBe(0);
    expect(daemon.logs.at(-1)?.event).toBe('stopped');
  });

  it('idle keep-alive connections do not hold the exit (SIGINT)', async () => {
    const { daemon, port } = await start('30s');
    const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername: NAME, rejectUnauthorized: false }, () => resolve(s));
      s.on('error', reject);
    });
    socket.write(`GET /idle HTTP/1.1\r\nHost: ${NAME}\r\n\r\n`);
    await new Promise((resolve) => socket.once('data', resolve)); // answered; the connection stays open, idle
    const started = Date.now();
    daemon.signal('SIGINT');
    expect(await daemon.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(20_000); // well under the 30 s drain: nothing was in flight
    socket.destroy();
  });

  it('shutdown.drain_timeout bounds the wait: a request still running is cut, the backend request is dropped, exit 0', async () => {
    const { daemon, port } = await start('1s');
    const { exchange, record } = await inFlight(port, '/hold');
    daemon.signal('SIGTERM');
    const cut = await daemon.waitForLog((l) => l.event === 'drain_timeout', 20_000, 'drain_timeout');
    expect(cut.connections).toBe(1);
    expect(await daemon.exited).toBe(0);
    const answer = await exchange.catch((error: Error) => error);
    expect(answer instanceof Error || answer.status === 0).toBe(true); // no response: the connection was closed
    // fedtls dropped its request to the backend instead of leaving it running.
    await new Promise<void>((resolve) => { const check = (): void => { if (record.aborted) resolve(); else setTimeout(check, 20); }; check(); });
    expect(record.aborted).toBe(true);
  });

  it('a second SIGTERM exits at once, without waiting for the drain', async () => {
    const { daemon, port } = await start('60s');
    await inFlight(port, '/hold');
    daemon.signal('SIGTERM');
    await daemon.waitForLog((l) => l.event === 'stopping', 10_000, 'stopping');
    const started = Date.now();
    daemon.signal('SIGTERM');
    expect(await daemon.exited).toBe(1);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(daemon.logs.at(-1)).toMatchObject({ event: 'exit_now', signal: 'SIGTERM' });
  });

  it('SIGTERM during start-up (workers starting) stops cleanly once started: exit 0, no crash in any process', async () => {
    const { configFile } = await writeManualDaemonConfig(tempDir(), NAME, backend.url, { workers: 2 });
    const daemon = runCli(['run', '--config', configFile]);
    daemons.push(daemon);
    await daemon.waitForLog((l) => l.event === 'certificate_added', 20_000, 'the first start-up line');
    daemon.signal('SIGTERM');
    expect(await daemon.exited).toBe(0);
    expect(daemon.logs.at(-1)?.event).toBe('stopped');
    expect(daemon.stderr()).not.toMatch(/EPIPE|Unhandled|Error:/);
    expect(daemon.logs.some((l) => l.event === 'crash')).toBe(false);
  });
});
