// The reverse proxy from the TLS listeners to the homeserver. Owns, per request: refusing what
// must not be forwarded (bad target, blocked path, ambiguous headers, body over
// proxy.max_body_size — before any 100 Continue), forwarding the request-target byte for byte
// (federation signatures cover it) with the header rules of proxy-headers.ts, streaming
// bodies both ways with backpressure, the backend timeouts, and tearing the other side down
// when either side goes away: a client that leaves destroys the upstream request at once; a
// backend that dies mid-response breaks the client connection (never a truncated response
// that looks complete). Errors fedtls makes itself are Matrix JSON. Nothing here throws into
// the event loop.
// Built on node:http rather than http-proxy: http-proxy merges "//" in paths, folds repeated
// request headers, and cannot tell a backend timeout from a reset (see DESIGN.md).

import http, { type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { BlockList, isIP } from 'node:net';
import type { Socket } from 'node:net';
import type { ProxyConfig } from '../config/types.js';
import type { Logger } from '../ops/log.js';
import { sendMatrixError } from './matrix-errors.js';
import { blockedPathMatcher, parseRequestTarget } from './request-target.js';
import { requestHeadersForBackend, responseHeadersForClient } from './proxy-headers.js';
import { lingerBeforeClose } from './lingering-close.js';
import { takeAwaitingContinue } from './expect-continue.js';

export interface ProxyCounters {
  inFlight: number;
  byStatusClass: Record<string, number>;
  backendErrors: number;
}

export interface ProxyHandler {
  /** The server's request handler. For `Expect: 100-continue` (expect-continue.ts) it refuses (413, 404, …) before the body, else sends 100 Continue and forwards. */
  (req: IncomingMessage, res: ServerResponse): void;
  counters: ProxyCounters;
  /** Closes the keep-alive connections to the backend. */
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

/** Errors on a pooled keep-alive socket that the backend had already closed: safe to retry once without a body. */
const STALE_SOCKET_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);
const CLOSE_CONNECTION = { Connection: 'close' } as const;
const UNREACHABLE_LOG_INTERVAL_MS = 10_000;
const NO_EXTRA_HEADERS = {} as const;

export function createProxyHandler({ config, log, onBackendResponse }: ProxyOptions): ProxyHandler {
  const backend = config.backend;
  const isHttps = backend.protocol === 'https:';
  const agentOptions = { keepAlive: true, maxSockets: config.maxBackendSockets, maxFreeSockets: Math.min(64, config.maxBackendSockets), timeout: config.idleTimeoutMs };
  const agent = isHttps ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
  const request = isHttps ? https.request : http.request;
  const port = Number(backend.port) || (isHttps ? 443 : 80);
  const hostname = backend.hostname.replace(/^\[|\]$/g, '');
  const servername = isHttps && !isIP(hostname) ? hostname : undefined;
  const isBlocked = blockedPathMatcher(config.blockPaths);
  const isTrusted = trustedPeerMatcher(config.trustedProxies);
  const tooLargeMessage = `The request body is larger than this server accepts (proxy.max_body_size, ${config.maxBodySize} bytes)`;
  const counters: ProxyCounters = { inFlight: 0, byStatusClass: {}, backendErrors: 0 };

  // A backend that is down fails every request: one line per 10 s says so, with the count.
  let unreachableLoggedAt = -Infinity;
  let unreachableSince = 0;
  const logUnreachable = (reason: string): void => {
    const now = performance.now();
    if (now - unreachableLoggedAt < UNREACHABLE_LOG_INTERVAL_MS) {
      unreachableSince += 1;
      return;
    }
    const more = unreachableSince > 0 ? ` (${unreachableSince} more request(s) failed the same way since the last line)` : '';
    log.warn({ event: 'backend_unreachable', backend: backend.origin, error: reason, suppressed: unreachableSince }, `cannot reach the homeserver at ${backend.origin}: ${reason}${more}`);
    unreachableLoggedAt = now;
    unreachableSince = 0;
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
    const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0';
    const logPath = target.length > 200 ? target.slice(0, 200) : target;
    counters.inFlight += 1;
    let settled = false;
    const settle = (): void => {
      if (settled) return;
      settled = true;
      counters.inFlight -= 1;
    };
    let upstream: ClientRequest | null = null;
    let clientGone = false;
    let received = 0;

    // The client went away before its response was complete: drop the upstream request now.
    res.once('close', () => {
      if (!res.writableFinished) {
        clientGone = true;
        upstream?.destroy();
        log.debug({ event: 'client_aborted', method, path: logPath, peer }, 'the client closed the connection before the response was complete');
      }
      settle();
    });

    if (hasBody) {
      req.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received <= config.maxBodySize) return;
        req.unpipe();
        req.removeAllListeners('data');
        upstream?.destroy();
        upstream = null;
        log.info({ event: 'request_too_large', method, path: logPath, peer, limit: config.maxBodySize }, 'request body over proxy.max_body_size; refused with 413');
        if (res.headersSent) res.destroy();
        else refuse(req, res, 413, 'M_TOO_LARGE', tooLargeMessage);
        req.resume();
      });
    }

    const send = (attempt: number): void => {
      let outgoing: ClientRequest;
      const sentAt = process.hrtime.bigint();
      try {
        // A retry goes on a new connection of its own: other pooled ones may be just as stale.
        outgoing = request({ host: hostname, port, method, path: target, headers, agent: attempt === 0 ? agent : false, setHost: false, servername });
      } catch (error) {
        // Node refuses a target or header it could not write safely: nothing was sent.
        refuse(req, res, 400, 'M_UNRECOGNIZED', `The request cannot be forwarded: ${(error as Error).message}`);
        settle();
        return;
      }
      upstream = outgoing;
      let timedOut = false;
      let responded = false;
      const connectTimer = setTimeout(() => {
        timedOut = true;
        outgoing.destroy(new Error(`no connection to the backend within proxy.connect_timeout (${config.connectTimeoutMs} ms)`));
      }, config.connectTimeoutMs);
      outgoing.once('close', () => clearTimeout(connectTimer));
      outgoing.once('socket', (socket: Socket) => {
        if (socket.connecting) socket.once('connect', () => clearTimeout(connectTimer));
        else clearTimeout(connectTimer);
      });
      // Idle time on the backend connection: waiting for the answer, or between body bytes.
      outgoing.setTimeout(config.responseTimeoutMs, () => {
        timedOut = true;
        outgoing.destroy(new Error(`the backend sent nothing for proxy.response_timeout (${config.responseTimeoutMs} ms)`));
      });

      outgoing.once('response', (upstreamRes: IncomingMessage) => {
        responded = true;
        onBackendResponse?.(Number(process.hrtime.bigint() - sentAt) / 1e9);
        clearTimeout(connectTimer);
        if (clientGone || res.headersSent || res.destroyed) {
          upstreamRes.destroy();
          return;
        }
        const status = upstreamRes.statusCode ?? 502;
        const responseHeaders = responseHeadersForClient(upstreamRes.rawHeaders);
        // The backend answered before the whole request body arrived: this connection cannot be reused.
        if (hasBody && !req.complete) {
          responseHeaders.push('Connection', 'close');
          lingerBeforeClose(req.socket);
        }
        try {
          res.writeHead(status, upstreamRes.statusMessage, responseHeaders);
        } catch (error) {
          upstreamRes.destroy();
          counters.backendErrors += 1;
          log.warn({ event: 'backend_bad_response', path: logPath, error: (error as Error).message }, `the homeserver's response cannot be passed on: ${(error as Error).message}`);
          refuse(req, res, 502, 'M_UNKNOWN', 'The homeserver sent a response that cannot be passed on');
          return;
        }
        countStatus(status);
        upstreamRes.pipe(res);
        // The backend went away mid-body: break the client connection so the cut is visible.
        upstreamRes.once('close', () => {
          if (!upstreamRes.complete && !res.destroyed) {
            log.info({ event: 'backend_response_cut', path: logPath }, 'the homeserver closed the connection in the middle of a response');
            res.destroy();
          }
        });
        upstreamRes.on('error', () => undefined); // reported through 'close' above
      });

      outgoing.on('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(connectTimer);
        // After the response head, a cut is handled by upstreamRes 'close'; a write error on
        // the request body (backend answered early, then closed) changes nothing for the client.
        if (clientGone || upstream !== outgoing || responded) return;
        if (res.headersSent) {
          res.destroy();
          return;
        }
        if (!responded && !timedOut && attempt === 0 && !hasBody && outgoing.reusedSocket && STALE_SOCKET_ERRORS.has(error.code ?? '')) {
          log.debug({ event: 'backend_retry', path: logPath, error: error.code }, 'a pooled backend connection was closed by the backend; retrying once on a new one');
          send(1);
          return;
        }
        counters.backendErrors += 1;
        if (timedOut) {
          log.warn({ event: 'backend_timeout', method, path: logPath, error: error.message }, `the homeserver at ${backend.origin} did not answer in time: ${error.message}`);
          refuse(req, res, 504, 'M_UNKNOWN', 'The homeserver did not answer in time');
        } else {
          logUnreachable(error.code ?? error.message);
          refuse(req, res, 502, 'M_UNKNOWN', 'The homeserver is unreachable');
        }
      });

      if (!hasBody) outgoing.end();
      else if (attempt === 0) req.pipe(outgoing);
    };
    send(0);
  };

  const handler = handle as ProxyHandler;
  handler.counters = counters;
  handler.close = () => agent.destroy();
  return handler;
}
