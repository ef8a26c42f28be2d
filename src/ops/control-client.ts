// The CLI side of the control channel (see control-server.ts for the protocol): sends one
// command to the running daemon and returns its result. Promises: every failure is a
// DaemonUnreachableError or ControlRequestError whose message tells the admin what to do.

import net from 'node:net';
import type { ControlArgs, ControlResponse } from './control-server.js';

/** The daemon is not running, or this user may not talk to it. */
export class DaemonUnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DaemonUnreachableError';
  }
}

/** The daemon answered with an error. */
export class ControlRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ControlRequestError';
  }
}

export interface ControlCallOptions {
  /** How long to wait for the answer (renewals can take minutes). Default 30 s. */
  timeoutMs?: number;
}

function unreachable(socketPath: string, error: NodeJS.ErrnoException): DaemonUnreachableError {
  switch (error.code) {
    case 'ENOENT':
      return new DaemonUnreachableError(`is fedtls running? control socket ${socketPath} not found (start it with "systemctl start fedtls", or pass the --config the daemon uses)`);
    case 'ECONNREFUSED':
      return new DaemonUnreachableError(`is fedtls running? nothing answers on control socket ${socketPath} (a daemon that stopped uncleanly leaves it behind; start fedtls)`);
    case 'EACCES':
    case 'EPERM':
      return new DaemonUnreachableError(`permission denied on control socket ${socketPath}: run this command as the user fedtls runs as (e.g. "sudo -u fedtls fedtls ...") or as root`);
    default:
      return new DaemonUnreachableError(`cannot reach fedtls on control socket ${socketPath}: ${error.code ?? error.message}`);
  }
}

/** Sends `command` to the daemon listening on `socketPath` and resolves with its result. */
export function callDaemon(socketPath: string, command: string, args: ControlArgs = {}, options: ControlCallOptions = {}): Promise<unknown> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let answer = '';
    let settled = false;
    const finish = (error: Error | null, value?: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(value);
    };
    const timer = setTimeout(() => finish(new ControlRequestError(`fedtls did not answer "${command}" within ${Math.round(timeoutMs / 1000)} s; see its log (journalctl -u fedtls)`)), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify({ command, args })}\n`));
    socket.on('data', (chunk: string) => { answer += chunk; });
    socket.on('error', (error: NodeJS.ErrnoException) => finish(settled ? null : unreachable(socketPath, error)));
    socket.on('end', () => {
      let response: ControlResponse;
      try {
        response = JSON.parse(answer) as ControlResponse;
      } catch {
        finish(new ControlRequestError(`fedtls closed the control connection without an answer to "${command}"; see its log`));
        return;
      }
      if (response.ok) finish(null, response.result);
      else finish(new ControlRequestError(response.error));
    });
  });
}
