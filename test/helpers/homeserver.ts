// A stand-in homeserver for discovery tests: answers GET /_matrix/federation/v1/version and
// GET /_matrix/key/v2/server (an ed25519 key, signed over canonical JSON as the Matrix spec
// says) for a given server name, 404 M_UNRECOGNIZED for everything else. Use it as the
// recording backend's responder (behind fedtls) or as the handler of an HTTPS site (a
// homeserver that does its own TLS).

import { generateKeyPairSync, sign } from 'node:crypto';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { canonicalJson } from '../../src/discovery/server-keys.js';

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

const unpadded = (bytes: Buffer): string => bytes.toString('base64').replace(/=+$/, '');

export function homeserverResponder(serverName: string, options: { validForMs?: number } = {}): Handler {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const rawPublic = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  const keyId = 'ed25519:standin';
  return (req, res) => {
    const path = (req.url ?? '').split('?', 1)[0];
    if (req.method === 'GET' && path === '/_matrix/federation/v1/version') {
      sendJson(res, 200, { server: { name: 'StandIn', version: '1.0.0' } });
    } else if (req.method === 'GET' && path === '/_matrix/key/v2/server') {
      const document = { server_name: serverName, valid_until_ts: Date.now() + (options.validForMs ?? 86_400_000), verify_keys: { [keyId]: { key: unpadded(rawPublic) } }, old_verify_keys: {} };
      const signature = unpadded(sign(null, Buffer.from(canonicalJson(document)), privateKey));
      sendJson(res, 200, { ...document, signatures: { [serverName]: { [keyId]: signature } } });
    } else {
      sendJson(res, 404, { errcode: 'M_UNRECOGNIZED', error: 'Unrecognized request' });
    }
  };
}

export interface HttpsSite {
  port: number;
  close(): Promise<void>;
}

/** An HTTPS server on loopback with exactly the chain and key given (a web server or a homeserver doing its own TLS). */
export async function startHttpsSite(options: { chainPem: string; keyPem: string; handler: Handler }): Promise<HttpsSite> {
  const server = https.createServer({ cert: options.chainPem, key: options.keyPem }, options.handler);
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => { sockets.add(socket); socket.on('close', () => sockets.delete(socket)); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
}
