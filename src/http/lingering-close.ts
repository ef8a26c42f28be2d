// Lingering close (RFC 9112 §9.6): when fedtls answers before it has read the request body
// (413, a refusal, a backend's early answer) and then closes, closing at once with unread
// body bytes in the kernel makes it send a TCP reset, and the reset can destroy the answer
// before the client reads it. Owns: after such a response, half-closing (FIN after the
// answer), reading and discarding what the client still sends, and closing when the client
// stops (idle) or after a bounded time. Only sockets it is asked to treat are touched.

import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';

const LINGER_IDLE_MS = 1000;
const LINGER_MAX_MS = 5000;

/**
 * Call before the response that ends with `Connection: close` is finished. Node's HTTP
 * server closes such a connection through `socket.destroySoon()`; on this socket that
 * becomes: end our side, drain theirs, then destroy.
 */
export function lingerBeforeClose(socket: Socket | null): void {
  if (!socket || socket.destroyed) return;
  (socket as Socket & { destroySoon: () => void }).destroySoon = function lingeringDestroySoon(this: Socket) {
    closeLingering(this);
  };
}

/**
 * Ends the connection now after `lastWords` (an answer written raw, e.g. to a request the
 * parser refused), then drains what the client still sends, as above.
 */
export function closeLingering(socket: Duplex & { setTimeout?: (ms: number, callback: () => void) => unknown }, lastWords?: string): void {
  if (socket.destroyed) return;
  if (socket.writable) socket.end(lastWords);
  const destroy = (): void => { socket.destroy(); };
  const deadline = setTimeout(destroy, LINGER_MAX_MS);
  deadline.unref();
  socket.setTimeout?.(LINGER_IDLE_MS, destroy);
  socket.on('error', destroy);
  socket.once('end', destroy);
  socket.once('close', () => clearTimeout(deadline));
  socket.resume();
}
