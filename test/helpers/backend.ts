// A real homeserver stand-in for tests: an HTTP server on loopback that records exactly what
// it received (request line, raw headers in order and case, body size), and
// answers by a per-test rule.

import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

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
}

export type Responder = (req: IncomingMessage, res: ServerResponse, record: RecordedRequest) => void;

export interface Backend {
  url: string;
  port: number;
  requests: RecordedRequest[];
  respond: Responder;
  openSockets(): number;
  close(): Promise<void>;
}

export const defaultResponder: Responder = (req, res) => {
  const body = JSON.stringify({ ok: true, target: req.url });
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
};

export async function startBackend(options: { keepBody?: boolean } = {}): Promise<Backend> {
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const backend: Backend = {
    url: '', port: 0, requests, respond: defaultResponder,
    openSockets: () => sockets.size,
    close: () => new Promise((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
  const server = http.createServer({ requestTimeout: 0, headersTimeout: 60_000 }, (req, res) => {
    const record: RecordedRequest = {
      method: req.method ?? '', target: req.url ?? '', rawHeaders: req.rawHeaders, headers: req.headers,
      bodyBytes: 0, body: Buffer.alloc(0), requestLine: `${req.method} ${req.url} HTTP/${req.httpVersion}`, aborted: false,
    };
    requests.push(record);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => {
      record.bodyBytes += chunk.length;
      if (options.keepBody) chunks.push(chunk);
    });
    req.on('end', () => { record.body = Buffer.concat(chunks); });
    req.on('aborted', () => { record.aborted = true; });
    res.on('close', () => { if (!res.writableFinished) record.aborted = true; });
    backend.respond(req, res, record);
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  backend.port = (server.address() as AddressInfo).port;
  backend.url = `http://127.0.0.1:${backend.port}`;
  return backend;
}
