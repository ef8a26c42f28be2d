// A real homeserver stand-in for tests: an HTTP server on loopback that records exactly what
// it received (request line, raw headers in order and case, body size), and
// answers by a per-test rule. In front of it sits a plain TCP relay that records the raw
// bytes each connection carried (the first 256 KB per connection: enough for every request
// line and header block) and counts the connections the proxy holds open to the backend.

import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';

export interface RecordedRequest {
  method: string;
  target: string;
  rawHeaders: string[];
  headers: http.IncomingHttpHeaders;
  bodyBytes: number;
  body: Buffer;
  /** The request line as received (Node's parser keeps the request-target as sent: no decoding or normalising). */
  requestLine: string;
  aborted: boolean;
  /** performance.now() when the request arrived, and when the backend saw it end early (aborted). */
  receivedAt: number;
  abortedAt: number | null;
}

const RAW_BYTES_PER_CONNECTION = 256 * 1024;

export type Responder = (req: IncomingMessage, res: ServerResponse, record: RecordedRequest) => void;

export interface Backend {
  url: string;
  port: number;
  requests: RecordedRequest[];
  respond: Responder;
  /** Connections from the proxy that are open right now. */
  openSockets(): number;
  /** Connections from the proxy so far. */
  connectionsAccepted(): number;
  /** Most connections from the proxy open at the same time. */
  peakSockets(): number;
  /** The bytes the proxy sent, per connection, in order (first 256 KB of each). */
  rawReceived(): Buffer;
  /** When true, a kept-alive connection that carries a second request is reset instead (a backend that dropped it while idle). */
  resetReusedConnections: boolean;
  /** Resolves when a request whose target starts with `prefix` has arrived. */
  waitForRequest(prefix: string, timeoutMs?: number): Promise<RecordedRequest>;
  close(): Promise<void>;
}

export const defaultResponder: Responder = (req, res) => {
  const body = JSON.stringify({ ok: true, target: req.url });
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
};

/** Writes `total` bytes of filler to `res` in 256 KB pieces, waiting for 'drain' (a download as fast as the client reads), then ends it. */
export function streamFiller(res: ServerResponse, total: number): void {
  const chunk = Buffer.alloc(256 * 1024, 0x62);
  let sent = 0;
  const pump = (): void => {
    while (sent < total) {
      sent += chunk.length;
      if (!res.write(chunk)) { res.once('drain', pump); return; }
    }
    res.end();
  };
  pump();
}

export async function startBackend(options: { keepBody?: boolean } = {}): Promise<Backend> {
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const innerSockets = new Set<Socket>();
  const raw: Buffer[][] = [];
  let accepted = 0;
  let peak = 0;
  const arrivals: { prefix: string; resolve: (r: RecordedRequest) => void }[] = [];
  const backend: Backend = {
    url: '', port: 0, requests, respond: defaultResponder, resetReusedConnections: false,
    openSockets: () => sockets.size,
    connectionsAccepted: () => accepted,
    peakSockets: () => peak,
    rawReceived: () => Buffer.concat(raw.flat()),
    waitForRequest(prefix, timeoutMs = 20_000) {
      const found = requests.find((r) => r.target.startsWith(prefix));
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the backend saw no request for ${prefix} within ${timeoutMs} ms`)), timeoutMs);
        arrivals.push({ prefix, resolve: (r) => { clearTimeout(timer); resolve(r); } });
      });
    },
    close: () => new Promise((resolve) => {
      for (const socket of [...sockets, ...innerSockets]) socket.destroy();
      front.close(() => server.close(() => resolve()));
    }),
  };
  const server = http.createServer({ requestTimeout: 0, headersTimeout: 60_000 }, (req, res) => {
    const record: RecordedRequest = {
      method: req.method ?? '', target: req.url ?? '', rawHeaders: req.rawHeaders, headers: req.headers,
      bodyBytes: 0, body: Buffer.alloc(0), requestLine: `${req.method} ${req.url} HTTP/${req.httpVersion}`, aborted: false,
      receivedAt: performance.now(), abortedAt: null,
    };
    requests.push(record);
    for (const waiter of [...arrivals]) {
      if (record.target.startsWith(waiter.prefix)) {
        arrivals.splice(arrivals.indexOf(waiter), 1);
        waiter.resolve(record);
      }
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => {
      record.bodyBytes += chunk.length;
      if (options.keepBody) chunks.push(chunk);
    });
    req.on('end', () => { record.body = Buffer.concat(chunks); });
    const markAborted = (): void => {
      if (record.aborted) return;
      record.aborted = true;
      record.abortedAt = performance.now();
    };
    req.on('aborted', markAborted);
    res.on('close', () => { if (!res.writableFinished) markAborted(); });
    backend.respond(req, res, record);
  });
  server.on('connection', (socket: Socket) => {
    innerSockets.add(socket);
    socket.on('close', () => innerSockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const innerPort = (server.address() as AddressInfo).port;

  // The TCP relay the proxy talks to: records raw bytes, counts connections, and passes
  // closes and resets through in both directions.
  const front = net.createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    peak = Math.max(peak, sockets.size);
    const chunks: Buffer[] = [];
    raw.push(chunks);
    let kept = 0;
    const inner = net.connect(innerPort, '127.0.0.1');
    let lastDataAt = 0;
    socket.on('data', (chunk: Buffer) => {
      const now = performance.now();
      if (backend.resetReusedConnections && lastDataAt > 0 && now - lastDataAt > 50) {
        inner.destroy();
        socket.resetAndDestroy();
        return;
      }
      lastDataAt = now;
      if (kept < RAW_BYTES_PER_CONNECTION) {
        chunks.push(Buffer.from(chunk.subarray(0, RAW_BYTES_PER_CONNECTION - kept)));
        kept += chunk.length;
      }
    });
    socket.pipe(inner).pipe(socket);
    socket.on('error', () => inner.destroy());
    inner.on('error', () => socket.destroy());
    socket.on('close', () => { sockets.delete(socket); inner.destroy(); });
    inner.on('close', () => socket.destroy());
  });
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  backend.port = (front.address() as AddressInfo).port;
  backend.url = `http://127.0.0.1:${backend.port}`;
  return backend;
}
