// The daemon's control channel: a Unix socket (mode 0600, normally in state_dir) through
// which `fedtls renew|certificates|status` talk to the running daemon. Protocol: the client
// sends one JSON object `{"command": "...", "args": {...}}` and a newline; the daemon answers
// one JSON line, `{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`, and closes.
// Any part of the daemon registers a command with `register(name, handler)`. Promises: a bad
// request or a failing handler gets an error answer, never a crash; only the owner can connect.

import net from 'node:net';
import { chmodSync, existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { ensureDirectory } from '../certs/files.js';
import type { Logger } from './log.js';

export type ControlArgs = Record<string, unknown>;
export type ControlHandler = (args: ControlArgs) => unknown;

/** Thrown by a handler to answer with a plain error message (no stack trace in the log). */
export class ControlCommandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ControlCommandError';
  }
}

export interface ControlRequest {
  command: string;
  args?: ControlArgs;
}

export type ControlResponse = { ok: true; result: unknown } | { ok: false; error: string };

/** Longest request accepted; requests are tiny. */
const MAX_REQUEST_BYTES = 64 * 1024;
/** Unix socket paths longer than this do not fit in sockaddr_un on Linux. */
const MAX_SOCKET_PATH_BYTES = 107;

export class ControlSocketError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ControlSocketError';
  }
}

function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath, () => { socket.destroy(); resolve(true); });
    socket.on('error', () => resolve(false));
  });
}

export class ControlServer {
  private readonly handlers = new Map<string, ControlHandler>();
  private server: net.Server | null = null;
  private readonly connections = new Set<net.Socket>();

  constructor(
    readonly socketPath: string,
    private readonly log: Logger,
  ) {
    this.register('ping', () => ({ pid: process.pid, commands: this.commands() }));
  }

  /** Adds a command. Registering the same name twice is a programming error. */
  register(command: string, handler: ControlHandler): void {
    if (this.handlers.has(command)) throw new Error(`control command "${command}" is registered twice`);
    this.handlers.set(command, handler);
  }

  commands(): string[] {
    return [...this.handlers.keys()].sort();
  }

  /** Answers one request (also used directly by tests and in-process callers). */
  async dispatch(request: unknown): Promise<ControlResponse> {
    if (typeof request !== 'object' || request === null || typeof (request as ControlRequest).command !== 'string') {
      return { ok: false, error: 'bad request: expected {"command": "...", "args": {...}}' };
    }
    const { command, args } = request as ControlRequest;
    const handler = this.handlers.get(command);
    if (!handler) {
      return { ok: false, error: `this fedtls daemon has no command "${command}" (it knows: ${this.commands().join(', ')}); is the daemon older than the CLI? restart it` };
    }
    try {
      const result = await handler(typeof args === 'object' && args !== null ? args : {});
      return { ok: true, result: result ?? null };
    } catch (error) {
      if (!(error instanceof ControlCommandError)) {
        this.log.error({ event: 'control_command_failed', command, error: (error as Error).stack ?? String(error) }, `control command "${command}" failed: ${(error as Error).message}`);
      }
      return { ok: false, error: (error as Error).message };
    }
  }

  async start(): Promise<void> {
    const socketPath = this.socketPath;
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
      throw new ControlSocketError(`control_socket ${socketPath} is too long for a Unix socket (${Buffer.byteLength(socketPath)} bytes, at most ${MAX_SOCKET_PATH_BYTES}); set control_socket to a shorter path`);
    }
    ensureDirectory(path.dirname(socketPath));
    if (existsSync(socketPath)) {
      if (await socketAnswers(socketPath)) {
        throw new ControlSocketError(`another fedtls is already running with control socket ${socketPath}; stop it first (or give this one its own state_dir)`);
      }
      rmSync(socketPath, { force: true }); // left behind by a daemon that did not exit cleanly
    }
    const server = net.createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) => {
        reject(new ControlSocketError(`cannot create the control socket ${socketPath}: ${error.code ?? error.message}; check that state_dir is writable by the fedtls user, or set control_socket`));
      });
      server.listen({ path: socketPath, readableAll: false, writableAll: false }, () => resolve());
    });
    chmodSync(socketPath, 0o600);
    server.on('error', (error) => this.log.error({ event: 'control_socket_error', error: error.message }, `control socket error: ${error.message}`));
    this.server = server;
    this.log.info({ event: 'control_listening', socket: socketPath, commands: this.commands() }, `control socket ${socketPath} (fedtls renew|certificates|status use it)`);
  }

  private serve(socket: net.Socket): void {
    this.connections.add(socket);
    socket.on('close', () => this.connections.delete(socket));
    let buffer = '';
    let answered = false;
    socket.setEncoding('utf8');
    socket.on('error', () => undefined);
    socket.on('data', (chunk: string) => {
      if (answered) return;
      buffer += chunk;
      const newline = buffer.indexOf('\n');
      if (newline < 0 && buffer.length <= MAX_REQUEST_BYTES) return;
      answered = true;
      const answer = (response: ControlResponse): void => {
        if (!socket.destroyed) socket.end(`${JSON.stringify(response)}\n`);
      };
      if (newline < 0) {
        answer({ ok: false, error: 'request too large' });
        return;
      }
      let request: unknown;
      try {
        request = JSON.parse(buffer.slice(0, newline));
      } catch {
        answer({ ok: false, error: 'bad request: not JSON' });
        return;
      }
      void this.dispatch(request).then(answer);
    });
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.connections) socket.destroy();
    await closed;
    rmSync(this.socketPath, { force: true });
  }
}
