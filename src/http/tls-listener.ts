// The TLS listeners (federation port 8448, optional HTTPS 443). Owns: choosing the
// certificate per handshake from the store (SNI → its pair; no SNI or unknown name → the
// default pair), following store swaps so the very next handshake gets the new pair, ALPN
// (http/1.1 only: HTTP/2 clients such as `curl --http2` settle on HTTP/1.1), the client-side
// timeouts (TLS handshake and request headers within proxy.header_timeout, idle keep-alive
// within proxy.idle_timeout), answering what the HTTP parser refuses and plain HTTP sent to a
// TLS port (client-errors.ts), and giving every context a handshake starts in the daemon's
// session ticket keys (session-tickets.ts).
// Requests go to the handler it is given.

import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SecureContext } from 'node:tls';
import type { CertificateStore } from '../certs/store.js';
import type { ProxyConfig } from '../config/types.js';
import type { Logger } from '../ops/log.js';
import { answerClientError, answerConnect, answerPlainHttp, answerUnknownExpectation } from './client-errors.js';
import { markAwaitingContinue } from './expect-continue.js';
import type { SessionTicketKeys } from './session-tickets.js';
import { serveDefaultWithoutSni } from './sni-default.js';

export interface TlsListenerOptions {
  store: CertificateStore;
  proxyConfig: ProxyConfig;
  handler: (req: IncomingMessage, res: ServerResponse) => void;
  /** Session ticket keys (shared by every TLS listener of the daemon, in every worker). */
  ticketKeys: SessionTicketKeys;
  log: Logger;
}

export function createTlsServer({ store, proxyConfig, handler, ticketKeys, log }: TlsListenerOptions): https.Server {
  let warnedNoCertificate = false;
  const server = https.createServer({
    minVersion: 'TLSv1.2',
    ALPNProtocols: ['http/1.1'],
    SNICallback: (servername, callback) => {
      const context = store.contextFor(servername);
      if (!context) {
        if (!warnedNoCertificate) {
          warnedNoCertificate = true;
          log.warn({ event: 'tls_no_certificate', sni: servername }, 'a TLS client connected before any certificate is available; refusing the handshake until one is obtained');
        }
        callback(new Error('no certificate available yet'));
        return;
      }
      ticketKeys.arm(context); // the same keys whichever context a Node version asks
      callback(null, context);
    },
    requestTimeout: 0, // long uploads and long polls are bounded by the proxy's own timeouts
    headersTimeout: proxyConfig.headerTimeoutMs,
    // Node checks headersTimeout on this interval (default 30 s): check often enough to honour it.
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(proxyConfig.headerTimeoutMs / 4))),
    handshakeTimeout: proxyConfig.headerTimeoutMs,
    keepAliveTimeout: proxyConfig.idleTimeoutMs,
    // Missing Host is refused by the proxy with a JSON 400 (Node's own 400 has no body).
    requireHostHeader: false,
  }, handler);
  server.timeout = 0;
  // Handshakes with SNI start in the server's own (certificate-less) context, and the ticket
  // keys of the context a handshake starts in are the ones that count.
  const armServerContext = (): void => {
    const own = (server as unknown as { _sharedCreds?: SecureContext })._sharedCreds;
    if (own) ticketKeys.arm(own);
  };
  armServerContext();
  // 100 Continue is the handler's decision (expect-continue.ts), not Node's automatic one.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    markAwaitingContinue(req);
    handler(req, res);
  });
  server.on('checkExpectation', answerUnknownExpectation);
  server.on('connect', (req: IncomingMessage, socket) => answerConnect(req, socket, log));

  // Handshakes without SNI get the store's default pair, chosen per connection (sni-default.ts
  // explains why the server itself must hold no certificate).
  const resetWarning = (): void => { warnedNoCertificate = false; };
  store.on('change', resetWarning);
  server.on('close', () => store.off('change', resetWarning));
  const defaultContext = (): SecureContext | null => {
    const context = store.defaultPair()?.context ?? null;
    if (context) ticketKeys.arm(context); // handshakes without SNI start in it
    return context;
  };
  if (!serveDefaultWithoutSni(server, defaultContext, proxyConfig.headerTimeoutMs, (socket) => answerPlainHttp(socket, log), () => ticketKeys.clientHelloArrives())) {
    // Fallback for a Node without the internals used there: a server-wide default (SNI pairs
    // of another key type than the default then lose to it; plain HTTP gets an empty reply).
    const applyDefault = (): void => {
      const pair = store.defaultPair();
      if (pair) server.setSecureContext({ cert: pair.chainPem, key: pair.keyPem, minVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] } as never);
      armServerContext();
    };
    applyDefault();
    store.on('change', applyDefault);
    server.on('close', () => store.off('change', applyDefault));
    log.warn({ event: 'tls_sni_fallback' }, 'this Node.js version lacks what fedtls uses to serve the default certificate without SNI; SNI certificates whose key type differs from the default one may not be served');
  }

  server.on('tlsClientError', (error: NodeJS.ErrnoException, socket) => {
    log.debug({ event: 'tls_handshake_failed', peer: socket.remoteAddress, error: error.code ?? error.message }, 'TLS handshake failed');
  });
  server.on('clientError', (error: NodeJS.ErrnoException, socket) => answerClientError(error, socket, log));
  return server;
}
