// What the TLS listener answers when Node's HTTP parser refuses a request (conflicting
// Content-Length, Content-Length with Transfer-Encoding, obs-fold, bad characters, raw
// non-ASCII in the target, oversized headers, headers not received in time, an HTTP/2
// preface without ALPN) and when a request asks for something a reverse proxy does not do
// (CONNECT, unknown Expect). Owns: Matrix JSON errors on the raw socket, never a crash,
// never forwarding, and one debug log line per refusal (bad clients are not our errors).

import type { Duplex } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../ops/log.js';
import { matrixErrorResponseBytes, sendMatrixError } from './matrix-errors.js';
import { markClosedByFedtls } from './closed-by-fedtls.js';

interface ParserError extends Error {
  code?: string;
  /** llhttp's description, e.g. "Duplicate Content-Length". */
  reason?: string;
}

function refusal(error: ParserError): { status: number; errcode: string; message: string } {
  switch (error.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, errcode: 'M_UNKNOWN', message: 'The request headers did not arrive in time (proxy.header_timeout)' };
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, errcode: 'M_UNKNOWN', message: 'The request headers are too large' };
    case 'HPE_PAUSED_H2_UPGRADE':
      return { status: 505, errcode: 'M_UNRECOGNIZED', message: 'HTTP/2 is only spoken after ALPN; this listener negotiates http/1.1' };
    case 'HPE_INVALID_URL':
      return { status: 400, errcode: 'M_UNRECOGNIZED', message: 'Malformed HTTP request: the request-target has characters that must be percent-encoded' };
    default:
      return { status: 400, errcode: 'M_UNRECOGNIZED', message: `Malformed HTTP request${error.reason ? `: ${error.reason}` : ''}` };
  }
}

type SocketWithMessage = Duplex & { _httpMessage?: ServerResponse | null; remoteAddress?: string };

/** The server's 'clientError' handler. */
export function answerClientError(error: ParserError, socket: SocketWithMessage, log: Logger): void {
  if (error.code === 'ECONNRESET' || !socket.writable || socket.destroyed) {
    socket.destroy();
    return;
  }
  const { status, errcode, message } = refusal(error);
  log.debug({ event: 'request_refused', status, code: error.code, reason: error.reason ?? error.message, peer: socket.remoteAddress }, message);
  // The client sent something broken (e.g. bad chunk framing mid-upload); it did not go away.
  markClosedByFedtls(socket);
  // A response already under way on this connection cannot be followed by another.
  if (socket._httpMessage && socket._httpMessage.headersSent) {
    socket.destroy();
    return;
  }
  socket.end(matrixErrorResponseBytes(status, errcode, message));
}

/** CONNECT has no place on a homeserver's port: 405, then close. */
export function answerConnect(req: IncomingMessage, socket: Duplex, log: Logger): void {
  log.debug({ event: 'request_refused', status: 405, method: req.method }, 'CONNECT refused');
  socket.on('error', () => socket.destroy());
  socket.end(matrixErrorResponseBytes(405, 'M_UNRECOGNIZED', 'CONNECT is not supported here'));
}

/** An Expect other than 100-continue: 417 (RFC 9110 §10.1.1). */
export function answerUnknownExpectation(req: IncomingMessage, res: ServerResponse): void {
  sendMatrixError(res, 417, 'M_UNRECOGNIZED', `Expect "${String(req.headers.expect).slice(0, 40)}" is not supported`, { Connection: 'close' });
}
