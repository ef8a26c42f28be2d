// Connections to the homeserver and the HTTP/1.1 exchanges on them. Owns: a bounded
// keep-alive pool (idle connections reused newest-first, closed after proxy.idle_timeout, at
// most proxy.max_backend_sockets open, further requests queued in order), the connect and
// response timeouts, writing each request head in one write and framing its body
// (Content-Length bytes as they come, chunked re-encoded), and a strict incremental parser
// for the responses: status line and headers (obs-fold, bad characters, two different
// lengths, Content-Length with Transfer-Encoding, 101 → protocol error), 1xx skipped,
// bodies framed by Content-Length, chunked or connection close, none for HEAD/204/304.
// Promises: a connection goes back to the pool only when the request was written whole and
// the response ended cleanly with nothing after it; every exchange ends in exactly one of
// onEnd / onFail; nothing here throws into the event loop.
// Why not node:http's client: with it, forwarding a small request cost about as much CPU
// again as the TLS server side did (bench/README.md); this does the same job for a fraction.

import net, { type Socket } from 'node:net';
import tls from 'node:tls';

export type BodyFraming = 'none' | 'length' | 'chunked';

export type UpstreamFailure =
  /** No connection (refused, unreachable, DNS, TLS verification); nothing was sent. */
  | { kind: 'connect'; code: string; message: string }
  /**
   * `connect`: proxy.connect_timeout passed (connecting, or waiting for a free connection).
   * `response`: proxy.response_timeout of silence on the connection, both ways: the backend
   * sent nothing, and nothing was sent to it (a request body that stopped coming, or a
   * response paused because the client stopped reading it).
   */
  | { kind: 'timeout'; phase: 'connect' | 'response'; message: string }
  /** The backend closed or reset the connection before the response ended. */
  | { kind: 'closed'; code: string; message: string; retryable: boolean }
  /** The backend's response is not HTTP/1.1 that can be passed on safely. */
  | { kind: 'protocol'; message: string };

export interface ExchangeHandlers {
  /** The final response head (1xx skipped). Header values as sent, as latin1 strings. */
  onHead(status: number, reason: string, headers: string[]): void;
  /** A piece of the (de-chunked) body. Return false to pause the backend until `resumeResponse()`. */
  onData(chunk: Buffer): boolean;
  /** The response ended cleanly. */
  onEnd(): void;
  onFail(failure: UpstreamFailure): void;
  /** The request body may be written again after `writeBody` returned false. */
  onDrain(): void;
}

export interface UpstreamOptions {
  backend: URL;
  maxSockets: number;
  maxIdleSockets: number;
  idleTimeoutMs: number;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
}

const MAX_HEAD_BYTES = 64 * 1024;
const MAX_CHUNK_LINE_BYTES = 4096;
const MAX_TRAILER_BYTES = 16 * 1024;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9][0-9]{2})(?: ([^\0]*))?$/;
const FIELD_VALUE_BAD = /[\0\r\n]/;
const CHUNK_SIZE = /^([0-9a-fA-F]{1,12})[ \t]*(?:;.*)?$/;
const STALE_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'EOF']);
const CRLF = '\r\n';
const LAST_CHUNK = '0\r\n\r\n';

type ResponseState = 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailer' | 'close' | 'done';

interface PooledSocket extends Socket {
  fedtlsExchange?: Exchange | null;
  fedtlsIdleSince?: number;
}

/** One request and its response on one backend connection. */
export class Exchange {
  private socket: PooledSocket | null = null;
  private reused = false;
  private pending: (Buffer | string)[] | null = [];
  private requestEnded = false;
  private headWritten = false;
  private finished = false;
  private received = 0;
  private state: ResponseState = 'head';
  private buffered: Buffer | null = null;
  private remaining = 0;
  private reusable = true;
  private headSeen = false;
  private failCode = '';
  /** Set while the exchange waits for a free connection (all maxSockets busy). */
  queueTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly pool: BackendPool,
    private readonly head: string,
    private readonly framing: BodyFraming,
    private readonly noResponseBody: boolean,
    private readonly handlers: ExchangeHandlers,
  ) {
    this.requestEnded = framing === 'none';
  }

  /** Writes a piece of the request body. False: wait for onDrain. */
  writeBody(chunk: Buffer): boolean {
    if (this.finished || this.requestEnded || chunk.length === 0) return true;
    if (this.framing === 'chunked') return this.send(`${chunk.length.toString(16)}${CRLF}`, chunk, CRLF);
    return this.send(chunk);
  }

  /** The request body is complete. */
  endBody(): void {
    if (this.finished || this.requestEnded) return;
    this.requestEnded = true;
    if (this.framing === 'chunked') this.send(LAST_CHUNK);
    this.releaseIfDone();
  }

  /** After onData returned false. */
  resumeResponse(): void {
    if (!this.finished) this.socket?.resume();
  }

  /** Drops the exchange (the client went away): the connection is closed, nothing more is called. */
  destroy(): void {
    if (this.finished) return;
    this.finished = true;
    this.pool.forget(this);
    if (this.socket) {
      this.socket.fedtlsExchange = null;
      this.socket.destroy();
    }
  }

  get done(): boolean {
    return this.finished;
  }

  /** Called by the pool with a connected socket. */
  attach(socket: PooledSocket, reused: boolean): void {
    this.pool.forget(this);
    this.socket = socket;
    this.reused = reused;
    socket.fedtlsExchange = this;
    const pending = this.pending ?? [];
    this.pending = null;
    // A request with a body goes out with its first body bytes, so one whose body turns out
    // malformed at once (a bad first chunk) never reaches the backend at all.
    if (this.framing !== 'none' && pending.length === 0) return;
    if (this.send(...pending) && pending.length > 0) this.handlers.onDrain();
  }

  private send(...pieces: (Buffer | string)[]): boolean {
    if (this.pending) {
      this.pending.push(...pieces);
      return false;
    }
    const socket = this.socket!;
    if (this.headWritten && pieces.length === 1) return socket.write(pieces[0]!, 'latin1');
    socket.cork();
    if (!this.headWritten) {
      this.headWritten = true;
      socket.write(this.head, 'latin1');
    }
    let flowing = true;
    for (const piece of pieces) flowing = socket.write(piece, 'latin1');
    socket.uncork();
    return flowing;
  }

  // ------------------------------------------------------------ events from the socket

  onSocketData(chunk: Buffer): void {
    this.received += chunk.length;
    let data: Buffer = chunk;
    if (this.buffered) {
      data = Buffer.concat([this.buffered, chunk]);
      this.buffered = null;
    }
    let at = 0;
    while (at < data.length && !this.finished) {
      switch (this.state) {
        case 'head': {
          const end = data.indexOf('\r\n\r\n', at, 'latin1');
          if (end === -1) {
            if (data.length - at > MAX_HEAD_BYTES) return this.fail({ kind: 'protocol', message: `the response headers are larger than ${MAX_HEAD_BYTES / 1024} KB` });
            this.buffered = data.subarray(at);
            return;
          }
          if (end - at > MAX_HEAD_BYTES) return this.fail({ kind: 'protocol', message: `the response headers are larger than ${MAX_HEAD_BYTES / 1024} KB` });
          const text = data.toString('latin1', at, end);
          at = end + 4;
          if (!this.onHeadText(text)) return;
          break;
        }
        case 'length':
          at = this.takeBody(data, at);
          if (this.remaining === 0) this.state = 'done';
          break;
        case 'close':
          this.deliver(at === 0 ? data : data.subarray(at));
          at = data.length;
          break;
        case 'chunk-size':
        case 'trailer': {
          const end = data.indexOf(CRLF, at, 'latin1');
          const limit = this.state === 'trailer' ? MAX_TRAILER_BYTES : MAX_CHUNK_LINE_BYTES;
          if (end === -1) {
            if (data.length - at > limit) return this.fail({ kind: 'protocol', message: 'a chunk header or trailer line of the response is too long' });
            this.buffered = data.subarray(at);
            return;
          }
          const line = data.toString('latin1', at, end);
          at = end + 2;
          if (this.state === 'trailer') {
            if (line === '') this.state = 'done';
            else if (FIELD_VALUE_BAD.test(line) || line.indexOf(':') <= 0) return this.fail({ kind: 'protocol', message: 'the response has a malformed trailer line' });
            break;
          }
          const size = CHUNK_SIZE.exec(line);
          if (!size) return this.fail({ kind: 'protocol', message: `the response has a malformed chunk size line "${line.slice(0, 40)}"` });
          this.remaining = parseInt(size[1]!, 16);
          this.state = this.remaining === 0 ? 'trailer' : 'chunk-data';
          break;
        }
        case 'chunk-data':
          at = this.takeBody(data, at);
          if (this.remaining === 0) {
            this.state = 'chunk-crlf';
            this.remaining = 2;
          }
          break;
        case 'chunk-crlf': {
          const expected = this.remaining === 2 ? 0x0d : 0x0a;
          if (data[at] !== expected) return this.fail({ kind: 'protocol', message: 'a chunk of the response does not end with CRLF' });
          at += 1;
          this.remaining -= 1;
          if (this.remaining === 0) this.state = 'chunk-size';
          break;
        }
        case 'done':
          // Bytes after the end of the response: the connection cannot be trusted for another.
          this.reusable = false;
          at = data.length;
          break;
      }
      if (this.state === 'done' && !this.finished) {
        if (at < data.length) this.reusable = false;
        this.complete();
      }
    }
  }

  /** Parses one head; false when the exchange failed. Skips 1xx heads. */
  private onHeadText(text: string): boolean {
    const lines = text.split(CRLF);
    const status = STATUS_LINE.exec(lines[0]!);
    if (!status) {
      this.fail({ kind: 'protocol', message: `the backend did not answer with an HTTP/1.x status line (got "${lines[0]!.slice(0, 40)}")` });
      return false;
    }
    const minor = status[1]!;
    const code = Number(status[2]);
    const headers: string[] = [];
    let length = -1;
    let chunked = false;
    let otherCoding = false;
    let close = minor === '0';
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      const first = line.charCodeAt(0);
      if (first === 0x20 || first === 0x09) return this.protocolError('a folded (obs-fold) header line');
      if (colon <= 0) return this.protocolError(`a header line without a name: "${line.slice(0, 40)}"`);
      const name = line.slice(0, colon);
      if (!TOKEN.test(name)) return this.protocolError(`a header name with invalid characters: "${name.slice(0, 40)}"`);
      const value = trimOws(line.slice(colon + 1));
      if (FIELD_VALUE_BAD.test(value)) return this.protocolError(`header ${name} with a control character in its value`);
      switch (name.length) {
        case 14:
          if (name.toLowerCase() === 'content-length') {
            const declared = parseContentLength(value);
            if (declared === null || (length !== -1 && declared !== length)) return this.protocolError('conflicting or invalid Content-Length headers');
            length = declared;
          }
          break;
        case 17:
          if (name.toLowerCase() === 'transfer-encoding') {
            const codings = value.toLowerCase().split(',').map((c) => c.trim()).filter((c) => c !== '');
            for (let c = 0; c < codings.length; c++) {
              if (codings[c] === 'chunked') {
                if (chunked || c !== codings.length - 1) return this.protocolError('Transfer-Encoding with chunked not last, or twice');
                chunked = true;
              } else {
                if (chunked) return this.protocolError('Transfer-Encoding with chunked not last');
                otherCoding = true;
              }
            }
          }
          break;
        case 10:
          if (name.toLowerCase() === 'connection') {
            const tokens = value.toLowerCase();
            if (/(^|,)\s*close\s*(,|$)/.test(tokens)) close = true;
            else if (minor === '0' && /(^|,)\s*keep-alive\s*(,|$)/.test(tokens)) close = false;
          }
          break;
        default:
      }
      headers.push(name, value);
    }
    if (length !== -1 && (chunked || otherCoding)) return this.protocolError('both Content-Length and Transfer-Encoding');
    if (code < 200) {
      if (code === 101) return this.protocolError('101 Switching Protocols, which fedtls never asks for');
      return true; // 100, 102, 103: informational, the final head follows
    }
    this.headSeen = true;
    if (close) this.reusable = false;
    if (this.noResponseBody || code === 204 || code === 304) this.state = 'done';
    else if (chunked) this.state = 'chunk-size';
    else if (otherCoding || length === -1) {
      this.state = 'close';
      this.reusable = false;
    } else if (length === 0) this.state = 'done';
    else {
      this.state = 'length';
      this.remaining = length;
    }
    this.handlers.onHead(code, status[3] ?? '', headers);
    return !this.finished;
  }

  private protocolError(what: string): false {
    this.fail({ kind: 'protocol', message: `the response has ${what}` });
    return false;
  }

  /** Passes on up to `remaining` body bytes of `data` from `at`; returns the offset after them. */
  private takeBody(data: Buffer, at: number): number {
    const take = Math.min(this.remaining, data.length - at);
    this.remaining -= take;
    this.deliver(data.subarray(at, at + take));
    return at + take;
  }

  private deliver(piece: Buffer): void {
    if (piece.length === 0 || this.finished) return;
    if (!this.handlers.onData(piece)) this.socket?.pause();
  }

  private complete(): void {
    this.finished = true;
    this.handlers.onEnd();
    this.releaseIfDone();
  }

  /** Both messages are over: the socket goes back to the pool or is closed. */
  private releaseIfDone(): void {
    if (!this.finished || !this.socket || this.socket.fedtlsExchange !== this) return;
    if (!this.requestEnded) {
      // The backend answered before the request body was complete: not reusable.
      this.socket.fedtlsExchange = null;
      this.socket.destroy();
      return;
    }
    const socket = this.socket;
    this.socket = null;
    socket.fedtlsExchange = null;
    if (this.reusable) this.pool.release(socket);
    else socket.destroy();
  }

  onSocketError(error: NodeJS.ErrnoException): void {
    this.failCode = error.code ?? error.message;
  }

  onSocketEnd(): void {
    if (this.finished) return;
    if (this.state === 'close') {
      this.reusable = false;
      this.complete();
      return;
    }
    this.onSocketClose();
  }

  onSocketClose(): void {
    if (this.finished) return;
    const code = this.failCode || 'EOF';
    const nothingReceived = this.received === 0;
    // A pooled connection the backend closed just as it was reused: nothing was processed.
    const retryable = this.reused && nothingReceived && this.framing === 'none' && STALE_CODES.has(code);
    const message = this.headSeen ? 'the backend closed the connection in the middle of the response' : nothingReceived ? `the backend closed the connection without answering (${code})` : 'the backend closed the connection in the middle of the response headers';
    this.fail({ kind: 'closed', code, message, retryable });
  }

  onSocketTimeout(): void {
    if (!this.finished) this.fail({ kind: 'timeout', phase: 'response', message: `the backend sent nothing for proxy.response_timeout (${this.pool.options.responseTimeoutMs} ms)` });
  }

  onSocketDrain(): void {
    if (!this.finished) this.handlers.onDrain();
  }

  /** Ends the exchange with a failure; the connection is closed. */
  fail(failure: UpstreamFailure): void {
    if (this.finished) return;
    this.finished = true;
    this.pool.forget(this);
    if (this.socket) {
      this.socket.fedtlsExchange = null;
      this.socket.destroy();
    }
    this.handlers.onFail(failure);
  }
}

function trimOws(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && (value.charCodeAt(start) === 0x20 || value.charCodeAt(start) === 0x09)) start++;
  while (end > start && (value.charCodeAt(end - 1) === 0x20 || value.charCodeAt(end - 1) === 0x09)) end--;
  return start === 0 && end === value.length ? value : value.slice(start, end);
}

/** "42", or a list of the same value ("42, 42"); null when invalid or conflicting. */
function parseContentLength(value: string): number | null {
  let result: number | null = null;
  for (const part of value.split(',')) {
    const digits = part.trim();
    if (!/^[0-9]{1,15}$/.test(digits)) return null;
    const n = Number(digits);
    if (result !== null && n !== result) return null;
    result = n;
  }
  return result;
}

/** The keep-alive pool of connections to one backend. */
export class BackendPool {
  private readonly idle: PooledSocket[] = [];
  private readonly waiting: Exchange[] = [];
  private open = 0;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;
  private readonly isHttps: boolean;
  private readonly host: string;
  private readonly port: number;
  private readonly servername: string | undefined;

  constructor(readonly options: UpstreamOptions) {
    const { backend } = options;
    this.isHttps = backend.protocol === 'https:';
    this.host = backend.hostname.replace(/^\[|\]$/g, '');
    this.port = Number(backend.port) || (this.isHttps ? 443 : 80);
    this.servername = this.isHttps && net.isIP(this.host) === 0 ? this.host : undefined;
    this.sweeper = setInterval(() => this.sweep(), Math.max(100, Math.min(1000, Math.floor(options.idleTimeoutMs / 2))));
    this.sweeper.unref();
  }

  /** Connections open now (idle or busy), for tests and metrics. */
  get openConnections(): number {
    return this.open;
  }

  /**
   * Starts an exchange: `head` is the complete request head (request line, headers, blank
   * line). `fresh` skips idle connections (a retry after a stale one).
   */
  exchange(head: string, framing: BodyFraming, noResponseBody: boolean, handlers: ExchangeHandlers, fresh = false): Exchange {
    const exchange = new Exchange(this, head, framing, noResponseBody, handlers);
    if (this.closed) {
      exchange.fail({ kind: 'connect', code: 'ECLOSED', message: 'fedtls is shutting down' });
      return exchange;
    }
    if (!fresh) {
      const socket = this.takeIdle();
      if (socket) {
        exchange.attach(socket, true);
        return exchange;
      }
    }
    if (this.open < this.options.maxSockets) this.connect(exchange);
    else this.enqueue(exchange);
    return exchange;
  }

  /** An exchange ended or was dropped: it no longer waits for a connection. */
  forget(exchange: Exchange): void {
    if (exchange.queueTimer === null) return;
    clearTimeout(exchange.queueTimer);
    exchange.queueTimer = null;
    const at = this.waiting.indexOf(exchange);
    if (at !== -1) this.waiting.splice(at, 1);
  }

  /** Every connection is busy: wait for one, at most proxy.connect_timeout. */
  private enqueue(exchange: Exchange): void {
    this.waiting.push(exchange);
    exchange.queueTimer = setTimeout(() => {
      exchange.fail({ kind: 'timeout', phase: 'connect', message: `no free connection to the backend within proxy.connect_timeout (${this.options.connectTimeoutMs} ms): all ${this.options.maxSockets} of proxy.max_backend_sockets are busy` });
    }, this.options.connectTimeoutMs);
  }

  /** A connection whose exchange ended cleanly. */
  release(socket: PooledSocket): void {
    if (this.closed || socket.destroyed || !socket.writable || socket.readableEnded) {
      socket.destroy();
      return;
    }
    socket.resume();
    const next = this.waiting[0];
    if (next) {
      next.attach(socket, true);
      return;
    }
    if (this.idle.length >= this.options.maxIdleSockets) {
      socket.destroy();
      return;
    }
    socket.fedtlsIdleSince = performance.now();
    this.idle.push(socket);
  }

  /** Closes every connection; exchanges still waiting fail. */
  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const socket of this.idle.splice(0)) socket.destroy();
    for (const exchange of [...this.waiting]) exchange.fail({ kind: 'connect', code: 'ECLOSED', message: 'fedtls is shutting down' });
  }

  private takeIdle(): PooledSocket | null {
    while (this.idle.length > 0) {
      const socket = this.idle.pop()!;
      if (!socket.destroyed && socket.writable && !socket.readableEnded) return socket;
      socket.destroy();
    }
    return null;
  }

  private sweep(): void {
    const oldest = performance.now() - this.options.idleTimeoutMs;
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const socket = this.idle[i]!;
      if ((socket.fedtlsIdleSince ?? 0) <= oldest) {
        this.idle.splice(i, 1);
        socket.destroy();
      }
    }
  }

  private connect(first: Exchange): void {
    this.open += 1;
    const socket: PooledSocket = this.isHttps
      ? tls.connect({ host: this.host, port: this.port, servername: this.servername, ALPNProtocols: ['http/1.1'] })
      : net.connect({ host: this.host, port: this.port });
    socket.fedtlsExchange = null;
    let connected = false;
    let connectError: NodeJS.ErrnoException | null = null;
    const connectTimer = setTimeout(() => {
      connectError = Object.assign(new Error(`no connection to the backend within proxy.connect_timeout (${this.options.connectTimeoutMs} ms)`), { code: 'ETIMEDOUT' });
      socket.destroy();
    }, this.options.connectTimeoutMs);
    socket.setNoDelay(true);
    socket.setTimeout(this.options.responseTimeoutMs);
    socket.on(this.isHttps ? 'secureConnect' : 'connect', () => {
      connected = true;
      clearTimeout(connectTimer);
      if (first.done) this.release(socket);
      else first.attach(socket, false);
    });
    socket.on('data', (chunk: Buffer) => {
      const exchange = socket.fedtlsExchange;
      if (exchange) exchange.onSocketData(chunk);
      else socket.destroy(); // bytes from the backend while idle: not a connection to reuse
    });
    socket.on('drain', () => socket.fedtlsExchange?.onSocketDrain());
    socket.on('timeout', () => {
      const exchange = socket.fedtlsExchange;
      if (exchange) exchange.onSocketTimeout();
    });
    socket.on('end', () => {
      const exchange = socket.fedtlsExchange;
      if (exchange) exchange.onSocketEnd();
      socket.destroy();
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (!connected) connectError ??= error;
      socket.fedtlsExchange?.onSocketError(error);
    });
    socket.on('close', () => {
      clearTimeout(connectTimer);
      this.open -= 1;
      const at = this.idle.indexOf(socket);
      if (at !== -1) this.idle.splice(at, 1);
      if (!connected) {
        const error = connectError;
        if (error?.code === 'ETIMEDOUT' && error.message.includes('connect_timeout')) first.fail({ kind: 'timeout', phase: 'connect', message: error.message });
        else first.fail({ kind: 'connect', code: error?.code ?? 'ECONNRESET', message: error?.message ?? 'the connection closed before it was established' });
      } else {
        socket.fedtlsExchange?.onSocketClose();
      }
      // A slot is free: start the next waiting exchange on a new connection.
      const next = this.waiting[0];
      if (!this.closed && next && this.open < this.options.maxSockets) {
        this.forget(next);
        this.connect(next);
      }
    });
  }
}
