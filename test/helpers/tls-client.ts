// Real TLS clients for tests: a handshake that reports the served certificate, a raw
// HTTP/1.1 exchange over TLS that sends exactly the bytes given, and a request that offers a
// session ticket and reports resumption and the tickets received.

import tls, { type PeerCertificate, type DetailedPeerCertificate } from 'node:tls';

/** Serial numbers as hex without leading zeros, so openssl's, Node's and the logs' spellings compare equal. */
export const serialOf = (serial: unknown): string => String(serial).toLowerCase().replace(/^0+/, '');

export interface HandshakeResult {
  serial: string;
  names: string;
  /** Subjects of the whole chain sent by the server, leaf first. */
  chainSubjects: string[];
  authorized: boolean;
  authorizationError: string | null;
  protocol: string | null;
  alpn: string | false;
}

export function handshake(options: { port: number; host?: string; servername?: string; ca?: string; alpn?: string[] }): Promise<HandshakeResult> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: options.host ?? '127.0.0.1', port: options.port,
      ...(options.servername !== undefined ? { servername: options.servername } : {}),
      ...(options.ca ? { ca: options.ca } : {}),
      ...(options.alpn ? { ALPNProtocols: options.alpn } : {}),
      rejectUnauthorized: false,
    }, () => {
      const peer = socket.getPeerCertificate(true) as DetailedPeerCertificate;
      const chainSubjects: string[] = [];
      let current: DetailedPeerCertificate | undefined = peer;
      const seen = new Set<string>();
      while (current && current.raw && !seen.has(current.fingerprint256)) {
        seen.add(current.fingerprint256);
        chainSubjects.push(String(current.subject?.CN ?? ''));
        current = current.issuerCertificate as DetailedPeerCertificate | undefined;
        if (current === peer) break;
      }
      resolve({
        serial: peer.serialNumber.toLowerCase(),
        names: (peer as PeerCertificate).subjectaltname ?? '',
        chainSubjects,
        authorized: socket.authorized,
        authorizationError: socket.authorizationError ? String(socket.authorizationError) : null,
        protocol: socket.getProtocol(),
        alpn: socket.alpnProtocol,
      });
      socket.end();
    });
    socket.on('error', reject);
  });
}

export interface RawExchange {
  response: string;
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Sends `request` as-is over TLS and reads until the server closes (send Connection: close). */
export function rawTlsRequest(options: { port: number; servername?: string; ca?: string; request: string | Buffer; timeoutMs?: number }): Promise<RawExchange> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1', port: options.port, servername: options.servername ?? 'localhost',
      ...(options.ca ? { ca: options.ca, rejectUnauthorized: true } : { rejectUnauthorized: false }),
    }, () => socket.write(options.request));
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    const timer = setTimeout(() => socket.destroy(new Error('raw TLS request timed out')), options.timeoutMs ?? 20_000);
    socket.on('error', (e) => { clearTimeout(timer); reject(e); });
    socket.on('close', () => {
      clearTimeout(timer);
      const response = Buffer.concat(chunks).toString('latin1');
      const [head = '', ...rest] = response.split('\r\n\r\n');
      const [statusLine = '', ...headerLines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({ response, status: Number(statusLine.split(' ')[1] ?? 0), headers, body: rest.join('\r\n\r\n') });
    });
  });
}

/**
 * One TLS connection (SNI `servername`, or none) that offers `session` if given and sends one
 * GET with Connection: close; whether the session was resumed and the tickets it received.
 */
export function requestWithSession(options: { port: number; hostHeader: string; servername?: string; session?: Buffer }): Promise<{ reused: boolean; tickets: Buffer[] }> {
  const { port, hostHeader, servername, session } = options;
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ...(servername ? { servername } : {}), rejectUnauthorized: false, ...(session ? { session } : {}) });
    const tickets: Buffer[] = [];
    let reused = false;
    socket.on('session', (ticket: Buffer) => { tickets.push(ticket); });
    socket.on('secureConnect', () => {
      reused = socket.isSessionReused();
      socket.write(`GET / HTTP/1.1\r\nHost: ${hostHeader}\r\nConnection: close\r\n\r\n`);
    });
    socket.on('data', () => undefined);
    socket.on('close', () => resolve({ reused, tickets }));
    socket.on('error', reject);
  });
}
