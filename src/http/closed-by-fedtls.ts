// Which client connections fedtls closed itself (a homeserver response cut mid-body, a request
// refused mid-stream, the drain deadline at shutdown), as opposed to those the client closed.
// Owns the mark: whoever closes a client connection on purpose marks it first, so the proxy
// logs `client_aborted` ("the client closed the connection") only when the client really
// went away. Marks are weak: a connection that is gone takes its mark with it.

const closedByFedtls = new WeakSet<object>();

/** Call before fedtls ends or destroys a client connection (the socket, or the response's socket). */
export function markClosedByFedtls(socket: object | null | undefined): void {
  if (socket) closedByFedtls.add(socket);
}

/**
 * True when `socket` was marked, or (for a TLS socket) the TCP connection under it: the
 * daemon's drain deadline only knows the TCP sockets its listeners accepted.
 */
export function wasClosedByFedtls(socket: object | null | undefined): boolean {
  if (!socket) return false;
  if (closedByFedtls.has(socket)) return true;
  const tcp = (socket as { _parent?: object | null })._parent;
  return tcp ? closedByFedtls.has(tcp) : false;
}
