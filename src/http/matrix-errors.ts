// Responses that fedtls makes itself, in the Matrix error format
// ({"errcode": "M_...", "error": "..."}, application/json), so clients and remote servers
// understand them like any homeserver error. Two forms: on a ServerResponse, and as raw
// bytes for a socket the HTTP parser has given up on.

import { STATUS_CODES, type ServerResponse } from 'node:http';
import { markClosedByFedtls } from './closed-by-fedtls.js';

export function sendMatrixError(res: ServerResponse, status: number, errcode: string, error: string, extraHeaders: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed || res.writableEnded) {
    // A response already under way cannot become an error: the connection is broken instead.
    if (!res.writableEnded) {
      markClosedByFedtls(res.socket);
      res.destroy();
    }
    return;
  }
  const body = JSON.stringify({ errcode, error });
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    ...extraHeaders,
  });
  res.end(body);
}

/** A complete HTTP/1.1 error response that closes the connection, for writing to a raw socket. */
export function matrixErrorResponseBytes(status: number, errcode: string, error: string): string {
  const body = JSON.stringify({ errcode, error });
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
    `Cache-Control: no-store\r\nConnection: close\r\n\r\n${body}`;
}
