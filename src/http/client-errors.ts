// What the TLS listener answers when Node's HTTP parser refuses a request (conflicting
// Content-Length, Content-Length with Transfer-Encoding, obs-fold, bad characters, raw
// non-ASCII in the target, oversized headers, headers not received in time, an HTTP/2
// preface without ALPN) and when a request asks for something a reverse proxy does not do
// (CONNECT, unknown Expect), and plain HTTP sent to the TLS port (answered in plain HTTP, like
// nginx does, instead of an empty reply). Owns: Matrix JSON errors on the raw socket, never a
// crash, never forwarding, and one debug log line per refusal (bad clients are not our errors).
// Bytes the parser refuses after a complete request never replace that request's answer: it
// goes out first (the extra bytes after a closing request are ignored), then the connection closes.

import { maxHeaderSize, METHODS, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../ops/log.js';
import { matrixErrorResponseBytes, sendMatrixError } from './matrix-errors.js';
import { markClosedByFedtls } from './closed-by-fedtls.js';
import { badTargetReason } from './request-target.js';
import { closeLingering, lingerBeforeClose } from './lingering-close.js';

interface ParserError extends Error {
  code?: string;
  /** llhttp's description, e.g. "Duplicate Content-Length". */
  reason?: string;
  /** The chunk the parser was reading when it failed, and how far into it it got (Node sets both). */
  rawPacket?: Buffer;
  bytesParsed?: number;
}

/** Node's limit for the request line and headers together (16 KB unless --max-http-header-size). */
const HEAD_LIMIT = `${Math.round(maxHeaderSize / 1024)} KB`;

/**
 * The request line the parser stopped in, when the chunk it failed in shows that line from
 * its start (a request arrives in one chunk unless it is very long): the method and the
 * request-target (as latin1, the way it came).
 */
function requestLineAt(error: ParserError): { method: string; target: string } | null {
  const packet = error.rawPacket;
  const at = error.bytesParsed;
  if (!Buffer.isBuffer(packet) || typeof at !== 'number' || at < 0 || at > packet.length) return null;
  const start = at > 0 ? packet.lastIndexOf(0x0a, at - 1) + 1 : 0;
  let end = packet.indexOf(0x0a, start);
  if (end === -1) end = packet.length;
  const line = packet.toString('latin1', start, Math.min(end, start + 8192)).replace(/\r$/, '');
  const match = /^([A-Z][A-Z-]{0,19}) (.*?)(?: HTTP\/\d\.\d)?$/.exec(line);
  return match ? { method: match[1]!, target: match[2]! } : null;
}

/**
 * Node's parser says only "header overflow" whether the request line or a header is too long.
 * It was the request line when the parser stopped right where the target ends (" HTTP/"
 * follows), or inside a line that starts like a request line. A target so long that the parser
 * gave up in the middle of it, in a later chunk, cannot be told from a long header.
 */
function requestLineTooLong(error: ParserError): boolean {
  const packet = error.rawPacket;
  const at = error.bytesParsed;
  if (!Buffer.isBuffer(packet) || typeof at !== 'number') return false;
  return packet.toString('latin1', at, at + 6) === ' HTTP/' || requestLineAt(error) !== null;
}

/** The line the parser stopped in, from its start up to where it stopped (latin1); null without the packet. */
function lineBeforeStop(error: ParserError): string | null {
  const packet = error.rawPacket;
  const at = error.bytesParsed;
  if (!Buffer.isBuffer(packet) || typeof at !== 'number' || at < 0 || at > packet.length) return null;
  const start = at > 0 ? packet.lastIndexOf(0x0a, at - 1) + 1 : 0;
  return packet.toString('latin1', start, Math.min(at, start + 200));
}

/** The header name on the line before the one the parser stopped at (the line a folded line continues). */
function previousHeaderName(error: ParserError): string | null {
  const packet = error.rawPacket!;
  const at = error.bytesParsed!;
  const lineStart = at > 0 ? packet.lastIndexOf(0x0a, at - 1) + 1 : 0;
  if (lineStart < 2) return null;
  const previousStart = packet.lastIndexOf(0x0a, lineStart - 2) + 1;
  const name = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]{1,60}):/.exec(packet.toString('latin1', previousStart, lineStart));
  return name ? name[1]! : null;
}

const HEADER_NAME_SO_FAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,60}$/;

/** llhttp's words for a header it refused, made into what the client should change. */
function headerRefusal(error: ParserError): string | null {
  const before = lineBeforeStop(error);
  if (error.reason === 'Unexpected whitespace after header value') {
    const name = before !== null && /^[ \t]*$/.test(before) ? previousHeaderName(error) : null;
    return `folded header lines (obs-fold) are not allowed${name ? ` (the ${name} header continues on the next line)` : ''}; put each header's value on one line`;
  }
  if (error.reason === 'Invalid header token') {
    const name = before !== null && HEADER_NAME_SO_FAR.test(before) ? before : null;
    return `${name ? `the header name "${name}" is followed by` : 'a header name has'} a space or an invalid character before the colon; write "Name: value" with no space before the ":"`;
  }
  return null;
}

/** What is wrong with a method llhttp did not accept: lower case, or not a method at all. */
function methodRefusal(error: ParserError): string {
  const packet = error.rawPacket;
  const at = error.bytesParsed;
  let sent: string | null = null;
  if (Buffer.isBuffer(packet) && typeof at === 'number' && at >= 0 && at <= packet.length) {
    const start = at > 0 ? packet.lastIndexOf(0x0a, at - 1) + 1 : 0;
    sent = /^[\x21-\x7e]{1,20}/.exec(packet.toString('latin1', start, start + 21))?.[0] ?? null;
  }
  if (sent !== null && sent !== sent.toUpperCase() && METHODS.includes(sent.toUpperCase())) {
    return `methods are case-sensitive and upper case: send "${sent.toUpperCase()}", not "${sent}"`;
  }
  return `${sent === null ? 'the method' : `"${sent}"`} is not an HTTP method (methods are upper case, such as GET, PUT, POST)`;
}

function refusal(error: ParserError): { status: number; errcode: string; message: string } {
  switch (error.code) {
    case 'HPE_INVALID_HEADER_TOKEN': {
      const reason = headerRefusal(error);
      return { status: 400, errcode: 'M_UNRECOGNIZED', message: `Malformed HTTP request: ${reason ?? error.reason ?? 'invalid header'}` };
    }
    case 'HPE_INVALID_METHOD':
      return { status: 400, errcode: 'M_UNRECOGNIZED', message: `Malformed HTTP request: ${methodRefusal(error)}` };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, errcode: 'M_UNKNOWN', message: 'The request headers did not arrive in time (proxy.header_timeout)' };
    case 'HPE_HEADER_OVERFLOW':
      if (requestLineTooLong(error)) {
        return { status: 414, errcode: 'M_TOO_LARGE', message: `The URL is too long: the request line and headers together must stay under ${HEAD_LIMIT}` };
      }
      return { status: 431, errcode: 'M_TOO_LARGE', message: `The request headers are too large: the request line (with the URL) and the headers together must stay under ${HEAD_LIMIT}` };
    case 'HPE_PAUSED_H2_UPGRADE':
      return { status: 505, errcode: 'M_UNRECOGNIZED', message: 'HTTP/2 is only spoken after ALPN; this listener negotiates http/1.1' };
    case 'HPE_INVALID_URL':
    case 'HPE_INVALID_CONSTANT': {
      // Say what is wrong with the target when the request line shows it (a missing "/", a space, raw bytes).
      const line = requestLineAt(error);
      const reason = line ? badTargetReason(line.target, line.method) : null;
      if (reason) return { status: 400, errcode: 'M_UNRECOGNIZED', message: `Malformed HTTP request: ${reason}` };
      if (error.code === 'HPE_INVALID_URL') return { status: 400, errcode: 'M_UNRECOGNIZED', message: 'Malformed HTTP request: the request-target is not a valid URL path' };
      return { status: 400, errcode: 'M_UNRECOGNIZED', message: `Malformed HTTP request${error.reason ? `: ${error.reason}` : ''}` };
    }
    default:
      return { status: 400, errcode: 'M_UNRECOGNIZED', message: `Malformed HTTP request${error.reason ? `: ${error.reason}` : ''}` };
  }
}

type SocketWithMessage = Duplex & { _httpMessage?: (ServerResponse & { req?: IncomingMessage }) | null; remoteAddress?: string };

/** Connections already answered: the parser reports an error again for every chunk that follows. */
const answered = new WeakSet<Duplex>();

/** The server's 'clientError' handler. */
export function answerClientError(error: ParserError, socket: SocketWithMessage, log: Logger): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) {
    socket.destroy();
    return;
  }
  // The rest of the refused request arriving: the lingering close below deals with it.
  if (answered.has(socket)) return;
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  // The bytes the parser refused came after a request it had already passed on whole (data
  // after `Connection: close` or an HTTP/1.0 request, or garbage pipelined behind a request):
  // that request's answer must reach the client, never be replaced by an error (a homeserver
  // that carried out a PUT would see it retried). As nginx does: answer it, then close.
  const inFlight = socket._httpMessage;
  if (inFlight && inFlight.req?.complete) {
    answerAfterResponse(error, socket, inFlight, log);
    return;
  }
  // Nothing in flight (its answer already went out) and the request had asked to close: the rest is ignored.
  if (error.code === 'HPE_CLOSED_CONNECTION') {
    answered.add(socket);
    closeLingering(socket);
    return;
  }
  const { status, errcode, message } = refusal(error);
  log.debug({ event: 'request_refused', status, code: error.code, reason: error.reason ?? error.message, peer: socket.remoteAddress }, message);
  // The client sent something broken (e.g. bad chunk framing mid-upload): fedtls closes the
  // connection, the client did not go away. A connection that ended mid-request did.
  if (error.code !== 'HPE_INVALID_EOF_STATE') markClosedByFedtls(socket);
  // A response already under way on this connection cannot be followed by another.
  if (socket._httpMessage && socket._httpMessage.headersSent) {
    socket.destroy();
    return;
  }
  // The rest of a refused request may still be on its way (a 70 KB URL): read and drop it
  // for a moment, or closing with it unread resets the connection and loses the answer.
  answered.add(socket);
  closeLingering(socket, matrixErrorResponseBytes(status, errcode, message));
}

/**
 * A parser error in the bytes after a complete request whose response is still to come (or
 * under way): the response goes out whole first. Bytes after a request that closes the
 * connection are dropped without an answer; anything else (a broken pipelined request) gets
 * its 400 after the response. Then the connection closes, lingering (the client may still send).
 */
function answerAfterResponse(error: ParserError, socket: SocketWithMessage, inFlight: ServerResponse, log: Logger): void {
  answered.add(socket);
  if (error.code === 'HPE_CLOSED_CONNECTION') {
    log.debug({ event: 'request_refused', code: error.code, peer: socket.remoteAddress, ignored: true },
      'bytes after a request that closes the connection were ignored; the request is answered, then the connection closed');
    // Node closes after this response (its request asked so): make that close a lingering one.
    lingerBeforeClose(socket as Duplex as Socket);
    return;
  }
  const { status, errcode, message } = refusal(error);
  log.debug({ event: 'request_refused', status, code: error.code, reason: error.reason ?? error.message, peer: socket.remoteAddress, after_response: true }, message);
  inFlight.once('finish', () => closeLingering(socket, matrixErrorResponseBytes(status, errcode, message)));
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

const PLAIN_HTTP_ANSWER = matrixErrorResponseBytes(400, 'M_UNRECOGNIZED', 'plain HTTP was sent to the HTTPS port; use https://');

/** A connection to a TLS listener that starts with a plain HTTP request (before any handshake): 400 in plain HTTP, then close. */
export function answerPlainHttp(socket: Duplex & { remoteAddress?: string }, log: Logger): void {
  log.debug({ event: 'request_refused', status: 400, code: 'PLAIN_HTTP', peer: socket.remoteAddress }, 'plain HTTP on a TLS listener; answered with 400 in plain HTTP');
  closeLingering(socket, PLAIN_HTTP_ANSWER);
}
