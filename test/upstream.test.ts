// The backend client (src/http/upstream.ts) against a real TCP server on loopback that
// answers with exact bytes, often one byte per write so every parser state meets a split:
// response framing (length, chunked with extensions and trailers, close-delimited, none for
// HEAD/204/304), 1xx skipped, refusals of broken responses, request body framing, the pool's
// bound, reuse and idle rules.

import net, { type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { BackendPool, type BodyFraming, type UpstreamFailure } from '../src/http/upstream.js';

interface RawServer {
  port: number;
  /** Every connection accepted, with what it received. */
  connections: { socket: Socket; received: () => string }[];
  close(): Promise<void>;
}

type Responder = (request: string, socket: Socket) => void;

/** Answers each complete request head (and body, when `bodyBytes` says how long) with `respond`. */
async function rawServer(respond: Responder, bodyBytes = 0): Promise<RawServer> {
  const connections: RawServer['connections'] = [];
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    let all = '';
    let handled = 0;
    connections.push({ socket, received: () => all });
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      all += chunk.toString('latin1');
      for (;;) {
        const rest = all.slice(handled);
        const end = rest.indexOf('\r\n\r\n');
        if (end === -1 || rest.length < end + 4 + bodyBytes) return;
        handled += end + 4 + bodyBytes;
        respond(rest.slice(0, end + 4 + bodyBytes), socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connections,
    close: () => new Promise((resolve) => {
      for (const c of connections) c.socket.destroy();
      server.close(() => resolve());
    }),
  };
}

/** Writes `bytes` one byte per write, each on its own turn of the event loop. */
async function trickle(socket: Socket, bytes: string, thenClose = false): Promise<void> {
  for (const byte of Buffer.from(bytes, 'latin1')) {
    if (socket.destroyed) return;
    socket.write(Buffer.of(byte));
    await new Promise((resolve) => setImmediate(resolve));
  }
  if (thenClose) socket.end();
}

interface Outcome {
  status?: number;
  headers?: string[];
  body: string;
  ended: boolean;
  failure?: UpstreamFailure;
}

let pools: BackendPool[] = [];
let servers: RawServer[] = [];
afterEach(async () => {
  for (const pool of pools) pool.close();
  for (const server of servers) await server.close();
  pools = [];
  servers = [];
});

function poolFor(server: RawServer, overrides: Partial<ConstructorParameters<typeof BackendPool>[0]> = {}): BackendPool {
  const pool = new BackendPool({
    backend: new URL(`http://127.0.0.1:${server.port}`),
    maxSockets: 8,
    maxIdleSockets: 8,
    idleTimeoutMs: 60_000,
    connectTimeoutMs: 2000,
    responseTimeoutMs: 5000,
    ...overrides,
  });
  pools.push(pool);
  return pool;
}

async function serve(respond: Responder, bodyBytes = 0): Promise<RawServer> {
  const server = await rawServer(respond, bodyBytes);
  servers.push(server);
  return server;
}

/** One exchange to completion; `body` pieces are written with the given framing. */
function run(pool: BackendPool, options: { method?: string; target?: string; framing?: BodyFraming; body?: string[]; extraHeaders?: string } = {}): Promise<Outcome> {
  const method = options.method ?? 'GET';
  const framing = options.framing ?? 'none';
  const length = framing === 'length' ? `Content-Length: ${(options.body ?? []).join('').length}\r\n` : '';
  const chunked = framing === 'chunked' ? 'Transfer-Encoding: chunked\r\n' : '';
  const head = `${method} ${options.target ?? '/'} HTTP/1.1\r\nHost: backend.test\r\n${length}${chunked}${options.extraHeaders ?? ''}\r\n`;
  return new Promise((resolve) => {
    const outcome: Outcome = { body: '', ended: false };
    const exchange = pool.exchange(head, framing, method === 'HEAD', {
      onHead(status, _reason, headers) {
        outcome.status = status;
        outcome.headers = headers;
      },
      onData(chunk) {
        outcome.body += chunk.toString('latin1');
        return true;
      },
      onEnd() {
        outcome.ended = true;
        resolve(outcome);
      },
      onFail(failure) {
        outcome.failure = failure;
        resolve(outcome);
      },
      onDrain() {},
    });
    for (const piece of options.body ?? []) exchange.writeBody(Buffer.from(piece, 'latin1'));
    if (framing !== 'none') exchange.endBody();
  });
}

describe('backend client (upstream.ts)', () => {
  it('decodes a chunked body with extensions and trailers delivered one byte at a time', async () => {
    const server = await serve((_, socket) => {
      void trickle(socket, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\nE \r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: t\r\n\r\n');
    });
    const outcome = await run(poolFor(server));
    expect(outcome).toMatchObject({ status: 200, ended: true, body: 'Wikipedia in\r\n\r\nchunks.' });
    expect(outcome.headers).toEqual(['Transfer-Encoding', 'chunked', 'X-A', '1']);
  });

  it('reads a Content-Length body in pieces and reuses the connection for the next request', async () => {
    const server = await serve((_, socket) => void trickle(socket, 'HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello'));
    const pool = poolFor(server);
    expect(await run(pool)).toMatchObject({ status: 200, body: 'hello', ended: true });
    expect(await run(pool)).toMatchObject({ status: 200, body: 'hello', ended: true });
    expect(server.connections.length).toBe(1);
  });

  it('reads a body without length until the backend closes, and does not reuse that connection', async () => {
    const server = await serve((_, socket) => void trickle(socket, 'HTTP/1.1 200 OK\r\nX-B: 2\r\n\r\nto the end', true));
    const pool = poolFor(server);
    expect(await run(pool)).toMatchObject({ status: 200, body: 'to the end', ended: true });
    expect(await run(pool)).toMatchObject({ status: 200, body: 'to the end', ended: true });
    expect(server.connections.length).toBe(2);
  });

  it('expects no body after HEAD, 204 and 304 even when a length is announced', async () => {
    const answers = ['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n', 'HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n'];
    let next = 0;
    const server = await serve((_, socket) => socket.write(answers[next++]!));
    const pool = poolFor(server);
    expect(await run(pool, { method: 'HEAD' })).toMatchObject({ status: 200, body: '', ended: true });
    expect(await run(pool)).toMatchObject({ status: 204, body: '', ended: true });
    expect(await run(pool)).toMatchObject({ status: 304, body: '', ended: true });
    expect(server.connections.length).toBe(1);
  });

  it('skips 100 and 103 heads and reports only the final one', async () => {
    const server = await serve((_, socket) => void trickle(socket, 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok'));
    expect(await run(poolFor(server))).toMatchObject({ status: 201, body: 'ok', ended: true, headers: ['Content-Length', '2'] });
  });

  it('refuses broken or ambiguous responses as protocol errors', async () => {
    const broken: Record<string, string> = {
      'Content-Length with Transfer-Encoding': 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
      'two different lengths': 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd',
      'a negative length': 'HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n',
      'obs-fold': 'HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n',
      'a space in a header name': 'HTTP/1.1 200 OK\r\nX A: a\r\nContent-Length: 0\r\n\r\n',
      'NUL in a value': 'HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n',
      'not HTTP': 'SSH-2.0-OpenSSH_9.2\r\n\r\n',
      'HTTP/2 version': 'HTTP/2 200\r\n\r\n',
      'a bad chunk size': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n',
      'a chunk without CRLF after it': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY3\r\ndef\r\n0\r\n\r\n',
      'chunked not last': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n',
      '101 Switching Protocols': 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n',
      'headers over 64 KB': `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`,
    };
    const names = Object.keys(broken);
    let next = 0;
    const server = await serve((_, socket) => socket.write(broken[names[next++]!]!));
    const pool = poolFor(server);
    for (const name of names) {
      const outcome = await run(pool);
      expect(outcome.failure?.kind, name).toBe('protocol');
      expect(outcome.ended, name).toBe(false);
    }
  });

  it('a backend that closes mid-body or mid-head: a closed failure, never a clean end', async () => {
    const cuts = ['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab', 'HTTP/1.1 200 OK\r\nContent-Le'];
    let next = 0;
    const server = await serve((_, socket) => void trickle(socket, cuts[next++]!, true));
    const pool = poolFor(server);
    for (const cut of cuts) {
      const outcome = await run(pool);
      expect(outcome.failure?.kind, cut).toBe('closed');
      expect(outcome.ended, cut).toBe(false);
    }
  });

  it('bytes after a complete response: the answer is passed on, the connection is not reused', async () => {
    const server = await serve((_, socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nsmugg'));
    const pool = poolFor(server);
    expect(await run(pool)).toMatchObject({ status: 200, body: 'ok', ended: true });
    expect(await run(pool)).toMatchObject({ status: 200, body: 'ok', ended: true });
    expect(server.connections.length).toBe(2);
  });

  it('frames request bodies: chunked re-encoded, Content-Length as is; the head goes out with the first body bytes', async () => {
    const server = await serve((_, socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'), 0);
    const pool = poolFor(server);
    await run(pool, { method: 'PUT', framing: 'chunked', body: ['abc', 'defgh'] });
    expect(server.connections[0]!.received()).toBe('PUT / HTTP/1.1\r\nHost: backend.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n');
    const lengthServer = await serve((_, socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'), 6);
    await run(poolFor(lengthServer), { method: 'POST', framing: 'length', body: ['abc', 'def'] });
    expect(lengthServer.connections[0]!.received()).toBe('POST / HTTP/1.1\r\nHost: backend.test\r\nContent-Length: 6\r\n\r\nabcdef');
  });

  it('never opens more than maxSockets; requests beyond wait and all complete', async () => {
    let open = 0;
    let most = 0;
    const server = await serve((_, socket) => {
      setTimeout(() => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx'), 20);
    });
    const pool = poolFor(server, { maxSockets: 2 });
    const watch = setInterval(() => {
      open = server.connections.filter((c) => !c.socket.destroyed).length;
      most = Math.max(most, open, pool.openConnections);
    }, 2);
    const outcomes = await Promise.all(Array.from({ length: 7 }, () => run(pool)));
    clearInterval(watch);
    expect(outcomes.every((o) => o.ended && o.body === 'x')).toBe(true);
    expect(server.connections.length).toBe(2);
    expect(most).toBeLessThanOrEqual(2);
  });

  it('a request waiting for a free connection gives up after connectTimeoutMs', async () => {
    const server = await serve(() => undefined);
    const pool = poolFor(server, { maxSockets: 1, connectTimeoutMs: 300 });
    const first = run(pool);
    const started = performance.now();
    const second = await run(pool);
    expect(second.failure?.kind).toBe('timeout');
    expect(second.failure && 'message' in second.failure ? second.failure.message : '').toMatch(/max_backend_sockets/);
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
    for (const c of server.connections) c.socket.destroy();
    expect((await first).failure?.kind).toBe('closed');
  });

  it('closes idle connections after idleTimeoutMs', async () => {
    const server = await serve((_, socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    const pool = poolFor(server, { idleTimeoutMs: 200 });
    await run(pool);
    expect(pool.openConnections).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(pool.openConnections).toBe(0);
  });

  it('a pooled connection the backend closed while idle is not used again', async () => {
    const server = await serve((_, socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    const pool = poolFor(server);
    expect(await run(pool)).toMatchObject({ status: 200, body: 'ok', ended: true });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await run(pool)).toMatchObject({ status: 200, body: 'ok', ended: true });
    expect(server.connections.length).toBe(2);
  });

  it('a backend that accepts but never answers: a timeout failure after responseTimeoutMs', async () => {
    const server = await serve(() => undefined);
    const started = performance.now();
    const outcome = await run(poolFor(server, { responseTimeoutMs: 300 }));
    expect(outcome.failure?.kind).toBe('timeout');
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
  });

  it('nothing listening: a connect failure naming the error', async () => {
    const server = await serve(() => undefined);
    const port = server.port;
    await server.close();
    servers = [];
    const pool = new BackendPool({ backend: new URL(`http://127.0.0.1:${port}`), maxSockets: 2, maxIdleSockets: 2, idleTimeoutMs: 1000, connectTimeoutMs: 1000, responseTimeoutMs: 1000 });
    pools.push(pool);
    const outcome = await run(pool);
    expect(outcome.failure).toMatchObject({ kind: 'connect', code: 'ECONNREFUSED' });
  });
});
