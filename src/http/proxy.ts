// The reverse proxy from the TLS listeners to the homeserver. Owns: forwarding the
// request-target byte for byte (federation signatures cover it), the header rules
// (Host unchanged, X-Forwarded-For/-Proto set by us, hop-by-hop headers dropped both ways,
// repeated headers kept), streaming bodies both ways with the body-size limit, backend
// timeouts, and tearing down the other side when either side goes away.
// Built on node:http rather than http-proxy: http-proxy merges "//" in paths, folds repeated
// request headers, and cannot tell a backend timeout from a reset (see DESIGN.md).

import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { ProxyConfig } from '../config/types.js';
import type { Logger } from '../ops/log.js';
import { sendMatrixError } from './matrix-errors.js';

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-authorization', 'proxy-authenticate',
]);
const FORWARDING_HEADERS = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-real-ip', 'forwarded']);

export interface ProxyCounters {
  inFlight: number;
  byStatusClass: Record<string, number>;
  backendErrors: number;
}

export interface ProxyHandler {
  (req: IncomingMessage, res: ServerResponse): void;
  counters: ProxyCounters;
  close(): void;
}

/** IPv4 peers arrive as ::ffff:1.2.3.4 on dual-stack sockets; peers expect the dotted quad. */
export function normalizePeerAddress(address: string | undefined): string {
  if (!address) return 'unknown';
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

function headerTokens(value: string | undefined): string[] {
  return (value ?? '').split(',').map((t) => t.trim().toLowerCase()).filter(Boolean);
}

/** Copies raw headers (keeping order, case and repeats) minus hop-by-hop and `drop`. */
function filterRawHeaders(raw: string[], drop: Set<string>): string[] {
  const connectionListed = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') headerTokens(raw[i + 1]).forEach((t) => connectionListed.add(t));
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (HOP_BY_HOP.has(name) || connectionListed.has(name) || drop.has(name)) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

export interface ProxyOptions {
  config: ProxyConfig;
  log: Logger;
}

export function createProxyHandler({ config, log }: ProxyOptions): ProxyHandler {
  const backend = config.backend;
  const isHttps = backend.protocol === 'https:';
  const agentOptions = { keepAlive: true, maxSockets: config.maxBackendSockets, maxFreeSockets: 64, timeout: config.idleTimeoutMs };
  const agent = isHttps ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
  const request = isHttps ? https.request : http.request;
  const port = Number(backend.port) || (isHttps ? 443 : 80);
  const hostname = backend.hostname.replace(/^\[|\]$/g, '');
  const trusted = new Set(config.trustedProxies.map((a) => normalizePeerAddress(a)));
  const counters: ProxyCounters = { inFlight: 0, byStatusClass: {}, backendErrors: 0 };

  const countStatus = (status: number): void => {
    const key = `${Math.floor(status / 100)}xx`;
    counters.byStatusClass[key] = (counters.byStatusClass[key] ?? 0) + 1;
  };

  const handler = ((req: IncomingMessage, res: ServerResponse) => {
    const target = req.url ?? '/';
    const peer = normalizePeerAddress(req.socket.remoteAddress);
    const pathOnly = target.split('?', 1)[0]!;

    if (!target.startsWith('/')) {
      countStatus(400);
      sendMatrixError(res, 400, 'M_UNRECOGNIZED', 'Only origin-form request targets are accepted');
      return;
    }
    if (config.blockPaths.some((prefix) => pathOnly === prefix || pathOnly.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`))) {
      countStatus(404);
      sendMatrixError(res, 404, 'M_NOT_FOUND', 'Not found');
      return;
    }
    const declaredLength = req.headers['content-length'];
    if (declaredLength !== undefined && Number(declaredLength) > config.maxBodySize) {
      countStatus(413);
      sendMatrixError(res, 413, 'M_TOO_LARGE', `Request body is larger than this server accepts (${config.maxBodySize} bytes)`, { Connection: 'close' });
      req.resume();
      return;
    }

    const fromTrustedProxy = trusted.has(peer);
    const headers = filterRawHeaders(req.rawHeaders, fromTrustedProxy ? new Set(['x-forwarded-proto']) : FORWARDING_HEADERS);
    const claimedFor = fromTrustedProxy ? req.headers['x-forwarded-for'] : undefined;
    headers.push('X-Forwarded-For', claimedFor ? `${claimedFor}, ${peer}` : peer, 'X-Forwarded-Proto', 'https');

    counters.inFlight += 1;
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      counters.inFlight -= 1;
    };

    const upstream = request({
      host: hostname, port, method: req.method, path: target, headers, agent, setHost: false,
      ...(isHttps ? { servername: isIP(hostname) ? undefined : hostname } : {}),
    });
    let timedOut = false;
    let connectTimer: NodeJS.Timeout | null = setTimeout(() => {
      timedOut = true;
      upstream.destroy(new Error('connect timeout'));
    }, config.connectTimeoutMs);
    upstream.on('socket', (socket) => {
      const clear = (): void => { if (connectTimer) { clearTimeout(connectTimer); connectTimer = null; } };
      if (!socket.connecting) clear(); else socket.once('connect', clear);
    });
    upstream.setTimeout(config.responseTimeoutMs, () => {
      timedOut = true;
      upstream.destroy(new Error('response timeout'));
    });

    let received = 0;
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received > config.maxBodySize) {
        req.unpipe(upstream);
        upstream.destroy();
        countStatus(413);
        sendMatrixError(res, 413, 'M_TOO_LARGE', `Request body is larger than this server accepts (${config.maxBodySize} bytes)`, { Connection: 'close' });
        finish();
      }
    });
    req.pipe(upstream);

    // The client went away before the response finished: drop the upstream request at once.
    res.on('close', () => {
      if (!res.writableFinished) {
        upstream.destroy();
        if (!finished) log.debug({ event: 'client_aborted', path: pathOnly.slice(0, 200), peer }, 'client closed the connection before the response was complete');
      }
      finish();
    });

    upstream.on('response', (upstreamRes) => {
      if (connectTimer) clearTimeout(connectTimer);
      upstream.setTimeout(0);
      const status = upstreamRes.statusCode ?? 502;
      if (res.headersSent || res.destroyed) {
        upstreamRes.destroy();
        return;
      }
      countStatus(status);
      res.writeHead(status, upstreamRes.statusMessage, filterRawHeaders(upstreamRes.rawHeaders, new Set()));
      upstreamRes.pipe(res);
      upstreamRes.on('error', () => res.destroy());
      upstreamRes.on('aborted', () => res.destroy());
    });

    upstream.on('error', (error: NodeJS.ErrnoException) => {
      if (connectTimer) clearTimeout(connectTimer);
      if (res.writableEnded || res.destroyed || req.destroyed && !res.headersSent && req.readableAborted) {
        finish();
        return;
      }
      counters.backendErrors += 1;
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (timedOut) {
        countStatus(504);
        log.warn({ event: 'backend_timeout', path: pathOnly.slice(0, 200), error: error.message }, `the homeserver at ${backend.origin} did not answer in time`);
        sendMatrixError(res, 504, 'M_UNKNOWN', 'The homeserver did not answer in time');
      } else {
        countStatus(502);
        log.warn({ event: 'backend_unreachable', backend: backend.origin, error: error.code ?? error.message }, `cannot reach the homeserver at ${backend.origin}: ${error.code ?? error.message}`);
        sendMatrixError(res, 502, 'M_UNKNOWN', 'The homeserver is unreachable');
      }
    });
  }) as ProxyHandler;

  handler.counters = counters;
  handler.close = () => agent.destroy();
  return handler;
}
