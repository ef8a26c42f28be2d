// A small HTTPS stand-in in front of a real Pebble, for what Pebble 2.4 lacks: it forwards
// every ACME request to Pebble unchanged (Host kept, so Pebble's URLs point back here) and
// only (a) adds `renewalInfo` and `meta.profiles` to the directory when asked, (b) answers
// GET <renewalInfo>/<certID> with the test's window, (c) answers newOrder with 429 +
// Retry-After when told to. It records every request (time, method, path, decoded JWS payload).

import https from 'node:https';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PebbleFixture } from './pebble.js';

export interface StandinRequest {
  at: number;
  method: string;
  path: string;
  /** The decoded JWS payload of a POST (null for POST-as-GET and GET). */
  payload: Record<string, unknown> | null;
  status: number;
}

export interface RenewalInfoAnswer {
  start: Date;
  end: Date;
  retryAfterSeconds?: number;
}

export interface AcmeStandin {
  directoryUrl: string;
  requests: StandinRequest[];
  /** Directory additions; null = pass Pebble's directory through. */
  profiles: Record<string, string> | null;
  ari: boolean;
  /** Called for each renewalInfo request; the certID is the last path segment. */
  renewalInfo: (certId: string) => RenewalInfoAnswer;
  /** Answers for the next newOrder requests, consumed in order: a 429 with this Retry-After (seconds, or null for none). */
  newOrderRateLimits: (number | null)[];
  /** newOrder requests, without the ones Pebble refused for a bad nonce (acme-client resends those). */
  newOrders(): StandinRequest[];
  close(): Promise<void>;
}

function decodePayload(body: Buffer): Record<string, unknown> | null {
  try {
    const jws = JSON.parse(body.toString('utf8')) as { payload?: string };
    if (!jws.payload) return null;
    return JSON.parse(Buffer.from(jws.payload, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
}

export async function startAcmeStandin(pebble: PebbleFixture): Promise<AcmeStandin> {
  const pebbleUrl = new URL(pebble.directoryUrl);
  let newOrderPath = '/order-plz';
  const standin: AcmeStandin = {
    directoryUrl: '', requests: [], profiles: null, ari: false,
    renewalInfo: () => ({ start: new Date(Date.now() + 86_400_000), end: new Date(Date.now() + 2 * 86_400_000) }),
    newOrderRateLimits: [],
    // Pebble rejects some nonces (400 badNonce) and acme-client resends: those are not orders.
    newOrders: () => standin.requests.filter((r) => r.method === 'POST' && r.path === newOrderPath && r.status !== 400),
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };

  const answer = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': status >= 400 ? 'application/problem+json' : 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
    res.end(text);
  };

  const handle = (req: IncomingMessage, res: ServerResponse, body: Buffer): void => {
    const path = req.url ?? '/';
    const record: StandinRequest = { at: Date.now(), method: req.method ?? '', path, payload: req.method === 'POST' ? decodePayload(body) : null, status: 0 };
    standin.requests.push(record);
    res.on('finish', () => { record.status = res.statusCode; });

    if (path.startsWith('/renewal-info/') && req.method === 'GET') {
      const window = standin.renewalInfo(decodeURIComponent(path.slice('/renewal-info/'.length)));
      answer(res, 200, { suggestedWindow: { start: window.start.toISOString(), end: window.end.toISOString() } },
        window.retryAfterSeconds !== undefined ? { 'Retry-After': String(window.retryAfterSeconds) } : {});
      return;
    }
    if (req.method === 'POST' && path === newOrderPath && standin.newOrderRateLimits.length > 0) {
      const retryAfter = standin.newOrderRateLimits.shift()!;
      answer(res, 429, { type: 'urn:ietf:params:acme:error:rateLimited', detail: 'too many new orders recently (stand-in)', status: 429 },
        retryAfter === null ? {} : { 'Retry-After': String(retryAfter) });
      return;
    }
    const upstream = https.request({
      host: pebbleUrl.hostname, port: pebbleUrl.port, method: req.method, path, ca: pebble.caBundlePem,
      headers: { ...req.headers, host: req.headers.host },
    }, (upstreamRes) => {
      const chunks: Buffer[] = [];
      upstreamRes.on('data', (c: Buffer) => chunks.push(c));
      upstreamRes.on('end', () => {
        let out = Buffer.concat(chunks);
        const headers = { ...upstreamRes.headers };
        if (path === pebbleUrl.pathname && req.method === 'GET') {
          const directory = JSON.parse(out.toString('utf8')) as Record<string, unknown> & { meta?: Record<string, unknown> };
          newOrderPath = new URL(String(directory.newOrder)).pathname;
          if (standin.ari) directory.renewalInfo = `https://${req.headers.host}/renewal-info`;
          if (standin.profiles) directory.meta = { ...directory.meta, profiles: standin.profiles };
          out = Buffer.from(JSON.stringify(directory));
          headers['content-length'] = String(out.length);
        }
        res.writeHead(upstreamRes.statusCode ?? 502, headers);
        res.end(out);
      });
    });
    upstream.on('error', (error) => answer(res, 502, { detail: `stand-in could not reach pebble: ${error.message}` }));
    upstream.end(body);
  };

  const server = https.createServer({ cert: readFileSync(pebble.tlsCertificatePath), key: readFileSync(pebble.tlsKeyPath) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, res, Buffer.concat(chunks)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  standin.directoryUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}${pebbleUrl.pathname}`;
  return standin;
}
