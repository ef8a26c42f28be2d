// Serving the default certificate to handshakes without SNI, without spoiling SNI handshakes.
// Why this exists: Node copies the server's own certificate into every connection, and a pair
// chosen by SNICallback only replaces the slot of its own key type (nodejs/node#54235). With
// an EC default and an RSA pair for a delegated name, clients would get the EC default for
// that name. So the server itself holds no certificate; this module reads each connection's
// ClientHello first and only hands a connection *without* SNI the default pair's context.
// Everything with SNI (including unknown names and IP literals) goes through SNICallback.
// Promises: the bytes read are given back untouched to the TLS layer; a client that never
// sends a ClientHello is dropped after `timeoutMs`; unparseable input keeps the old behaviour,
// except a connection whose first byte is a letter (plain HTTP, `curl http://host:8448/`),
// which goes to `onPlainHttp` instead of failing a TLS handshake with an empty reply. The
// first byte is looked at anyway, so TLS connections pay nothing for it.

import type { Socket } from 'node:net';
import type { Server as TlsServer, SecureContext } from 'node:tls';

/** Enough for any real ClientHello (post-quantum key shares included); larger input is not parsed. */
const MAX_CLIENT_HELLO_BYTES = 64 * 1024;

export type ClientHelloScan =
  | { state: 'incomplete' }
  | { state: 'not_tls' }
  | { state: 'done'; serverName: string | null };

/** Finds the SNI host name in the first TLS handshake message, reassembling it across records. */
export function scanClientHello(data: Buffer): ClientHelloScan {
  const handshake: Buffer[] = [];
  let have = 0;
  let offset = 0;
  let needed = -1;
  while (offset + 5 <= data.length) {
    if (data[offset] !== 0x16 || data[offset + 1] !== 0x03) return { state: 'not_tls' };
    const length = data.readUInt16BE(offset + 3);
    if (offset + 5 + length > data.length) break;
    const fragment = data.subarray(offset + 5, offset + 5 + length);
    handshake.push(fragment);
    have += fragment.length;
    offset += 5 + length;
    if (needed < 0 && have >= 4) {
      const head = Buffer.concat(handshake);
      if (head[0] !== 0x01) return { state: 'not_tls' }; // not a ClientHello
      needed = 4 + head.readUIntBE(1, 3);
    }
    if (needed >= 0 && have >= needed) return { state: 'done', serverName: serverNameOf(Buffer.concat(handshake).subarray(4, needed)) };
  }
  if (data.length >= 1 && data[0] !== 0x16) return { state: 'not_tls' };
  return { state: 'incomplete' };
}

function serverNameOf(hello: Buffer): string | null {
  try {
    let at = 2 + 32; // legacy_version, random
    at += 1 + hello[at]!; // session id
    at += 2 + hello.readUInt16BE(at); // cipher suites
    at += 1 + hello[at]!; // compression methods
    if (at + 2 > hello.length) return null; // no extensions at all
    const end = at + 2 + hello.readUInt16BE(at);
    at += 2;
    while (at + 4 <= end) {
      const type = hello.readUInt16BE(at);
      const length = hello.readUInt16BE(at + 2);
      if (type === 0x0000) {
        // server_name_list: length(2), then entries of type(1) length(2) name
        let entry = at + 6;
        const listEnd = at + 4 + length;
        while (entry + 3 <= listEnd) {
          const nameLength = hello.readUInt16BE(entry + 1);
          if (hello[entry] === 0x00) return hello.toString('latin1', entry + 3, entry + 3 + nameLength);
          entry += 3 + nameLength;
        }
        return null;
      }
      at += 4 + length;
    }
    return null;
  } catch {
    return null;
  }
}

/** A TLS record starts with 0x16 (handshake); an HTTP request with its method, letters (RFC 9110 §9.1: a token). */
function isPlainHttpStart(firstByte: number | undefined): boolean {
  return firstByte !== undefined && ((firstByte >= 0x41 && firstByte <= 0x5a) || (firstByte >= 0x61 && firstByte <= 0x7a));
}

/**
 * Reads until the ClientHello is complete, gives the bytes back, and reports the SNI name (or
 * undefined when unknown) and the first byte received.
 */
function peekServerName(socket: Socket, timeoutMs: number, done: (serverName: string | null | undefined, firstByte: number | undefined) => void): void {
  let buffered = Buffer.alloc(0);
  const finish = (serverName: string | null | undefined): void => {
    socket.off('data', onData);
    socket.off('error', onEnd);
    socket.off('end', onEnd);
    clearTimeout(timer);
    socket.pause();
    if (buffered.length > 0) socket.unshift(buffered);
    done(serverName, buffered[0]);
  };
  const onData = (chunk: Buffer): void => {
    buffered = Buffer.concat([buffered, chunk]);
    const scan = scanClientHello(buffered);
    if (scan.state === 'done') finish(scan.serverName);
    else if (scan.state === 'not_tls' || buffered.length > MAX_CLIENT_HELLO_BYTES) finish(undefined);
  };
  const onEnd = (): void => {
    socket.off('data', onData);
    clearTimeout(timer);
    socket.destroy();
  };
  const timer = setTimeout(onEnd, timeoutMs);
  socket.on('data', onData);
  socket.on('error', onEnd);
  socket.on('end', onEnd);
}

/**
 * Makes `server` (created without a certificate, with an SNICallback) serve `defaultContext()`
 * to handshakes that carry no SNI. Returns false (changing nothing) if this Node's TLS server
 * lacks the internals it relies on; the caller then falls back to a server-wide default.
 * `onPlainHttp` gets the raw TCP socket of a connection that started with plain HTTP (its
 * bytes are still to be read from it); `onClientHello` is called right before a connection's
 * first bytes go to OpenSSL.
 */
export function serveDefaultWithoutSni(server: TlsServer, defaultContext: () => SecureContext | null, timeoutMs: number, onPlainHttp: (socket: Socket) => void, onClientHello: () => void): boolean {
  const internals = server as unknown as { _sharedCreds?: SecureContext };
  const [tlsConnectionListener, ...others] = server.listeners('connection') as ((socket: Socket) => void)[];
  if (!internals._sharedCreds || !tlsConnectionListener || others.length > 0) return false;
  const noCertificate = internals._sharedCreds;
  server.removeListener('connection', tlsConnectionListener);
  server.on('connection', (socket: Socket) => {
    peekServerName(socket, timeoutMs, (serverName, firstByte) => {
      if (socket.destroyed) return;
      if (serverName === undefined && isPlainHttpStart(firstByte)) {
        onPlainHttp(socket);
        return;
      }
      // Known SNI (any name): start without a certificate and let SNICallback give the one pair.
      // No SNI, or input that is not a ClientHello we could read: the default pair.
      const chosen = serverName ? noCertificate : defaultContext() ?? noCertificate;
      internals._sharedCreds = chosen; // read synchronously by the TLSSocket constructor
      onClientHello(); // the TLSSocket constructor hands the bytes read to OpenSSL at once
      try {
        tlsConnectionListener.call(server, socket);
      } finally {
        internals._sharedCreds = noCertificate;
      }
    });
  });
  return true;
}
