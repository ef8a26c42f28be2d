// `Expect: 100-continue` across handlers. The TLS listener takes over Node's automatic
// "100 Continue" and marks the request instead; whichever handler ends up owning the request
// (the proxy, behind any wrapper) decides: a final answer (413, 404, …) before the client
// sends its body, or 100 Continue and then reading it. A handler that answers without
// looking is still correct HTTP: a final status may replace the 100.

import type { IncomingMessage } from 'node:http';

const awaitingContinue = new WeakSet<IncomingMessage>();

export function markAwaitingContinue(req: IncomingMessage): void {
  awaitingContinue.add(req);
}

/** True (once) when the client waits for 100 Continue before sending the body of `req`. */
export function takeAwaitingContinue(req: IncomingMessage): boolean {
  return awaitingContinue.delete(req);
}
