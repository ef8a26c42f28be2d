// The reverse proxy from the TLS listeners to the homeserver. Owns, per request: refusing what
// must not be forwarded (bad target, blocked path, ambiguous headers, body over
// proxy.max_body_size — before any 100 Continue), forwarding the request-target byte for byte
// (federation signatures cover it) with the header rules of proxy-headers.ts, streaming
// bodies both ways with backpressure, the backend timeouts, and tearing the other side down
// when either side goes away: a client that leaves destroys the upstream request at once; a
// backend that dies mid-response breaks the client connection (never a truncated response
// that looks complete); the log blames the side that went away or stalled, not the other.
// Errors fedtls makes itself are Matrix JSON. Nothing here throws into the event loop.
// The backend side is upstream.ts, not http-proxy (which merges "//" in paths, folds repeated
// request headers, and cannot tell a backend timeout from a reset; see DESIGN.md) nor
// node:http's client (its per-request cost, measured in bench/README.md).

import type { IncomingMessage, ServerResponse } from 'node:http';
import { BlockList, isIP } from 'node:net';
import type { ProxyConfig } from '../config/types.js';
import type { Logger } from '../ops/log.js';
import { RateLimitedLog, type RateLimit } from '../ops/rate-limited-log.js';
import { sendMatrixError } from './matrix-errors.js';
import { blockedPathMatcher, parseRequestTarget } from './request-target.js';
import { requestHeadersForBackend, responseHeadersForClient } from './proxy-headers.js';
import { lingerBeforeClose } from './lingering-close.js';
import { markClosedByFedtls, wasClosedByFedtls } from './closed-by-fedtls.js';
import { takeAwaitingContinue } from './expect-continue.js';
import { BackendPool, type BodyFraming, type Exchange, type ExchangeHandlers } from './upstream.js';

export interface ProxyCounters {
  inFlight: number;
  byStatusClass: Record<string, number>;
  backendErrors: number;
}

export interface ProxyHandler {
  /** The server's request handler. For `Expect: 100-continue` (expect-continue.ts) it refuses (413, 404, …) before the body, else sends 100 Continue and forwards. */
  (req: IncomingMessage, res: ServerResponse): void;
  counters: ProxyCounters;
  /** Closes the keep-alive connections to the backend, and logs what rate-limited lines still hold back. */
  close(): void;
}

export interface ProxyOptions {
  config: ProxyConfig;
  log: Logger;
  /** Called with the seconds from sending each request to the backend until its response headers arrived (metrics). */
  onBackendResponse?: (seconds: number) => void;
}

/** IPv4 peers arrive as ::ffff:1.2.3.4 on dual-stack sockets; peers expect the dotted quad. */
export function normalizePeerAddress(address: string | undefined): string {
  if (!address) return 'unknown';
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/** `proxy.trusted_proxies` (addresses or CIDR ranges) as a lookup. */
export function trustedPeerMatcher(entries: readonly string[]): (peer: string) => boolean {
  if (entries.length === 0) return () => false;
  const list = new BlockList();
  for (const entry of entries) {
    const [address = '', bits] = entry.split('/');
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(normalizePeerAddress(address), family);
    else list.addSubnet(address, Number(bits), family);
  }
  return (peer) => {
    const family = isIP(peer);
    return family !== 0 && list.check(peer, family === 6 ? 'ipv6' : 'ipv4');
  };
}

const CLOSE_CONNECTION = { Connection: 'close' } as const;
const NO_EXTRA_HEADERS = {} as const;
/** A backend that is down fails every request: one line per 10 s says so, with the count. */
const UNREACHABLE_LOG_LIMIT: RateLimit = { intervalMs: 10_000, burst: 1 };
/**
 * Any client can send request after request over the body limit: the first few in a minute
 * are logged one by one (a user hitting the upload limit is worth seeing), the rest counted.
 */
const TOO_LARGE_LOG_LIMIT: RateLimit = { intervalMs: 60_000, burst: 5 };

/** A request-target as logged: its first 200 characters. */
function pathForLog(target: string): string {
  return target.length > 200 ? target.slice(0, 200) : target;
}

/** The request head for the backend, written in one piece (upstream.ts frames the body). */
function requestHead(method: string, target: string, headers: readonly string[], framing: BodyFraming): string {
  let head = `${method} ${target} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  if (framing === 'chunked') head += 'Transfer-Encoding: chunked\r\n';
  return `${head}\r\n`;
}

export function createProxyHandler({ config, log, onBackendResponse }: ProxyOptions): ProxyHandler {
  const backend = config.backend;
  const pool = new BackendPool({
    backend,
    maxSockets: config.maxBackendSockets,
    maxIdleSockets: Math.min(64, config.maxBackendSockets),
    idleTimeoutMs: config.idleTimeoutMs,
    connectTimeoutMs: config.connectTimeoutMs,
    responseTimeoutMs: config.responseTimeoutMs,
  });
  const isBlocked = blockedPathMatcher(config.blockPaths);
  const isTrusted = trustedPeerMatcher(config.trustedProxies);
  const tooLargeMessage = `The request body is larger than this server accepts (proxy.max_body_size, ${config.maxBodySize} bytes)`;
  const counters: ProxyCounters = { inFlight: 0, byStatusClass: {}, backendErrors: 0 };

  const unreachableLog = new RateLimitedLog(log, 'warn', UNREACHABLE_LOG_LIMIT);
  const logUnreachable = (reason: string): void => {
    unreachableLog.hit({ event: 'backend_unreachable', backend: backend.origin, error: reason }, `cannot reach the homeserver at ${backend.origin}: ${reason}`);
  };
  // One event however the limit was found: by the declared Content-Length (with or without
  // Expect: 100-continue, before any body is read) or by counting a chunked body.
  const tooLargeLog = new RateLimitedLog(log, 'info', TOO_LARGE_LOG_LIMIT);
  const logTooLarge = (method: string, path: string, peer: string, length: number, decidedBy: 'content-length' | 'counted', answered: boolean): void => {
    const size = decidedBy === 'content-length' ? `declares a body of ${length} bytes` : `sent more than ${config.maxBodySize} bytes of chunked body`;
    tooLargeLog.hit({ event: 'request_too_large', method, path, peer, limit: config.maxBodySize, length, decided_by: decidedBy },
      `${method} ${path} from ${peer} ${size}, over proxy.max_body_size (${config.maxBodySize} bytes); ${answered ? 'refused with 413' : 'the connection was closed (the homeserver had already answered)'}`);
  };

  const countStatus = (status: number): void => {
    const key = `${Math.floor(status / 100)}xx`;
    counters.byStatusClass[key] = (counters.byStatusClass[key] ?? 0) + 1;
  };

  /**
   * Answers with fedtls's own error. Closes the connection when an unread body would follow,
   * or when the request was ambiguous (`closeAnyway`): what comes next on it cannot be trusted.
   */
  const refuse = (req: IncomingMessage, res: ServerResponse, status: number, errcode: string, message: string, closeAnyway = false): void => {
    countStatus(status);
    const bodyPending = !req.complete && (req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0');
    if (bodyPending) lingerBeforeClose(req.socket);
    sendMatrixError(res, status, errcode, message, closeAnyway || bodyPending ? CLOSE_CONNECTION : NO_EXTRA_HEADERS);
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const expectsContinue = takeAwaitingContinue(req);
    res.on('error', (error: NodeJS.ErrnoException) => log.debug({ event: 'client_write_failed', error: error.code ?? error.message }, 'writing to the client failed'));
    const method = req.method ?? 'GET';
    const parsed = parseRequestTarget(req.url ?? '', method);
    if (parsed.form === 'invalid') {
      refuse(req, res, 400, 'M_UNRECOGNIZED', `Bad request-target: ${parsed.reason}`, true);
      return;
    }
    if (isBlocked(parsed.target)) {
      refuse(req, res, 404, 'M_NOT_FOUND', 'Not found');
      return;
    }
    const declaredLength = req.headers['content-length'];
    if (declaredLength !== undefined && Number(declaredLength) > config.maxBodySize) {
      logTooLarge(method, pathForLog(parsed.target), normalizePeerAddress(req.socket.remoteAddress), Number(declaredLength), 'content-length', true);
      refuse(req, res, 413, 'M_TOO_LARGE', tooLargeMessage);
      return;
    }
    const peer = normalizePeerAddress(req.socket.remoteAddress);
    let host: string | undefined;
    if (parsed.form === 'absolute') host = parsed.authority;
    else if (req.headers.host === undefined && req.httpVersion === '1.0') host = (req.socket as { servername?: string | false }).servername || backend.host;
    const verdict = requestHeadersForBackend(req.rawHeaders, req.httpVersion, { peer, peerIsTrusted: isTrusted(peer), host, dropExpect: expectsContinue });
    if (!verdict.ok) {
      refuse(req, res, verdict.status, verdict.errcode, verdict.reason, true);
      return;
    }
    if (expectsContinue) res.writeContinue();
    forward(req, res, method, parsed.target, verdict.headers, peer);
  };

  const forward = (req: IncomingMessage, res: ServerResponse, method: string, target: string, headers: string[], peer: string): void => {
    const framing: BodyFraming = req.headers['transfer-encoding'] !== undefined ? 'chunked' : (req.headers['content-length'] ?? '0') !== '0' ? 'length' : 'none';
    const head = requestHead(method, target, headers, framing);
    const logPath = pathForLog(target);
    counters.inFlight += 1;
    let settled = false;
    let exchange: Exchange | null = null;
    let clientGone = false;
    let tooLarge = false;
    let received = 0;
    let retried = false;
    /** The client reads the response slower than the backend sends it: the backend is paused. */
    let waitingForDrain = false;
    /** The backend reads the request body slower than the client sends it: the client is paused. */
    let bodyWaitsForBackend = false;
    const sentAt = process.hrtime.bigint();

    // The connection closed before the response was complete: drop the upstream exchange now.
    // Only the client's doing is "client_aborted"; fedtls's own closes are logged where they happen.
    const socket = req.socket;
    res.once('close', () => {
      if (!res.writableFinished) {
        clientGone = true;
        exchange?.destroy();
        if (!wasClosedByFedtls(socket)) log.debug({ event: 'client_aborted', method, path: logPath, peer }, 'the client closed the connection before the response was complete');
      }
      if (!settled) {
        settled = true;
        counters.inFlight -= 1;
      }
    });

    const resumeResponse = (): void => {
      waitingForDrain = false;
      exchange?.resumeResponse();
    };

    const handlers: ExchangeHandlers = {
      onHead(status, reason, rawHeaders) {
        onBackendResponse?.(Number(process.hrtime.bigint() - sentAt) / 1e9);
        if (clientGone || res.headersSent || res.destroyed) {
          exchange?.destroy();
          return;
        }
        const responseHeaders = responseHeadersForClient(rawHeaders);
        // The backend answered before the whole request body arrived: this connection cannot be reused.
        if (framing !== 'none' && !req.complete) {
          responseHeaders.push('Connection', 'close');
          lingerBeforeClose(req.socket);
        }
        try {
          res.writeHead(status, reason, responseHeaders);
        } catch (error) {
          exchange?.destroy();
          counters.backendErrors += 1;
          log.warn({ event: 'backend_bad_response', path: logPath, error: (error as Error).message }, `the homeserver's response cannot be passed on: ${(error as Error).message}`);
          refuse(req, res, 502, 'M_UNKNOWN', 'The homeserver sent a response that cannot be passed on');
          return;
        }
        countStatus(status);
      },
      onData(chunk) {
        if (res.write(chunk)) return true;
        if (!waitingForDrain) {
          waitingForDrain = true;
          res.once('drain', resumeResponse);
        }
        return false;
      },
      onEnd() {
        res.end();
      },
      onDrain() {
        bodyWaitsForBackend = false;
        if (!tooLarge) req.resume();
      },
      onFail(failure) {
        if (clientGone) return;
        // Silence on the backend connection while fedtls waits for the client is the client's doing.
        const clientStalled = failure.kind === 'timeout' && failure.phase === 'response' &&
          (res.headersSent ? waitingForDrain : framing !== 'none' && !req.complete && !bodyWaitsForBackend);
        if (res.headersSent) {
          // Mid-response: break the client connection so the cut is visible (never a
          // truncated response that looks complete).
          if (clientStalled) {
            log.debug({ event: 'client_stalled', method, path: logPath, peer, stalled: 'response' }, `the client read nothing of the response for proxy.response_timeout (${config.responseTimeoutMs} ms); closed the connection`);
          } else {
            log.info({ event: 'backend_response_cut', path: logPath, error: failure.message }, `the homeserver's response was cut off: ${failure.message}`);
          }
          markClosedByFedtls(socket);
          res.destroy();
          return;
        }
        if (tooLarge) return;
        if (clientStalled) {
          log.debug({ event: 'client_stalled', method, path: logPath, peer, stalled: 'request_body' }, `the client sent nothing more of the request body for proxy.response_timeout (${config.responseTimeoutMs} ms); refused with 408`);
          refuse(req, res, 408, 'M_UNKNOWN', 'The request body did not arrive in time (proxy.response_timeout)');
          return;
        }
        if (failure.kind === 'closed' && failure.retryable && !retried) {
          retried = true;
          log.debug({ event: 'backend_retry', path: logPath, error: failure.code }, 'a pooled backend connection was closed by the backend; retrying once on a new one');
          exchange = pool.exchange(head, framing, method === 'HEAD', handlers, true);
          return;
        }
        counters.backendErrors += 1;
        if (failure.kind === 'timeout') {
          log.warn({ event: 'backend_timeout', method, path: logPath, error: failure.message }, `the homeserver at ${backend.origin} did not answer in time: ${failure.message}`);
          refuse(req, res, 504, 'M_UNKNOWN', 'The homeserver did not answer in time');
        } else if (failure.kind === 'protocol') {
          log.warn({ event: 'backend_bad_response', path: logPath, error: failure.message }, `the homeserver's response cannot be passed on: ${failure.message}`);
          refuse(req, res, 502, 'M_UNKNOWN', 'The homeserver sent a response that cannot be passed on');
        } else {
          logUnreachable(failure.kind === 'connect' ? failure.code : failure.message);
          refuse(req, res, 502, 'M_UNKNOWN', 'The homeserver is unreachable');
        }
      },
    };

    exchange = pool.exchange(head, framing, method === 'HEAD', handlers);

    if (framing !== 'none') {
      req.on('data', (chunk: Buffer) => {
        if (tooLarge) return;
        received += chunk.length;
        if (received > config.maxBodySize) {
          tooLarge = true;
          exchange?.destroy();
          logTooLarge(method, logPath, peer, received, 'counted', !res.headersSent);
          if (res.headersSent) {
            markClosedByFedtls(socket);
            res.destroy();
          } else {
            refuse(req, res, 413, 'M_TOO_LARGE', tooLargeMessage);
          }
          req.resume();
          return;
        }
        if (exchange && !exchange.writeBody(chunk)) {
          bodyWaitsForBackend = true;
          req.pause();
        }
      });
      req.once('end', () => {
        if (!tooLarge) exchange?.endBody();
      });
    }
  };

  const handler = handle as ProxyHandler;
  handler.counters = counters;
  handler.close = () => {
    pool.close();
    unreachableLog.flush();
    tooLargeLog.flush();
  };
  return handler;
}
