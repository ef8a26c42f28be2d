// The TLS listeners (federation port 8448, optional HTTPS 443). Owns: choosing the
// certificate per handshake from the store (SNI → its pair; no SNI or unknown name → the
// default pair), following store swaps so the very next handshake gets the new pair, and
// HTTP server timeouts. Requests go to the handler it is given.

import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CertificateStore } from '../certs/store.js';
import type { ProxyConfig } from '../config/types.js';
import type { Logger } from '../ops/log.js';

export interface TlsListenerOptions {
  store: CertificateStore;
  proxyConfig: ProxyConfig;
  handler: (req: IncomingMessage, res: ServerResponse) => void;
  log: Logger;
}

export function createTlsServer({ store, proxyConfig, handler, log }: TlsListenerOptions): https.Server {
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
      callback(null, context);
    },
    requestTimeout: 0, // long uploads and long polls are bounded by the proxy's own timeouts
    headersTimeout: proxyConfig.headerTimeoutMs,
    keepAliveTimeout: proxyConfig.idleTimeoutMs,
  }, handler);
  server.timeout = 0;

  // Handshakes without SNI use the server's own context: keep it on the store's default pair.
  const applyDefault = (): void => {
    const pair = store.defaultPair();
    if (pair) {
      server.setSecureContext({ cert: pair.chainPem, key: pair.keyPem, minVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] } as never);
      warnedNoCertificate = false;
    }
  };
  applyDefault();
  store.on('change', applyDefault);
  server.on('close', () => store.off('change', applyDefault));

  server.on('tlsClientError', (error: NodeJS.ErrnoException, socket) => {
    log.debug({ event: 'tls_handshake_failed', peer: socket.remoteAddress, error: error.code ?? error.message }, 'TLS handshake failed');
  });
  server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
    if (socket.writable && !socket.destroyed && error.code !== 'ECONNRESET') {
      const body = JSON.stringify({ errcode: 'M_UNRECOGNIZED', error: 'Malformed HTTP request' });
      socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    } else {
      socket.destroy();
    }
  });
  return server;
}
