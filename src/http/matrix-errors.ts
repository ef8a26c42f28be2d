// Responses that fedtls makes itself, in the Matrix error format
// ({"errcode": "M_...", "error": "..."}, application/json), so clients and remote servers
// understand them like any homeserver error.

import type { ServerResponse } from 'node:http';

export function sendMatrixError(res: ServerResponse, status: number, errcode: string, error: string, extraHeaders: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed || res.writableEnded) {
    if (!res.writableEnded) res.destroy();
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
