// Tells systemd (Type=notify) what the daemon is doing: READY=1, RELOADING=1 with
// MONOTONIC_USEC, STOPPING=1, STATUS=. Does nothing when NOTIFY_SOCKET is unset (containers,
// a shell). Promises: messages are delivered in the order sent; a failure to notify is logged
// once and never stops the daemon; NOTIFY_SOCKET is not passed on to hooks we spawn.
//
// Node has no Unix datagram sockets in core, so each message is handed to `systemd-notify`
// (from the systemd package, present wherever NOTIFY_SOCKET is set) instead of a native addon.
// That helper runs under its own PID when we are not root, so the unit needs
// NotifyAccess=all; it waits (sd_notify_barrier) until the manager has read the message, so
// the manager can still attribute it to our unit (see systemd-notify(1)).

import { spawn } from 'node:child_process';
import type { Logger } from './log.js';

export interface NotifierOptions {
  /** The socket path (or @abstract name); default: $NOTIFY_SOCKET. */
  socket?: string | undefined;
  /** The helper to run; default: $FEDTLS_SYSTEMD_NOTIFY or "systemd-notify" on $PATH. */
  helper?: string;
  log: Logger;
  /** How long one message may take before we give up on it. */
  timeoutMs?: number;
}

/** CLOCK_MONOTONIC in microseconds (what MONOTONIC_USEC means); libuv's hrtime reads that clock. */
export function monotonicMicroseconds(): bigint {
  return process.hrtime.bigint() / 1000n;
}

export class SystemdNotifier {
  readonly socket: string | null;
  private readonly helper: string;
  private readonly timeoutMs: number;
  private queue: Promise<void> = Promise.resolve();
  private warned = false;

  constructor(private readonly options: NotifierOptions) {
    this.socket = options.socket ?? process.env.NOTIFY_SOCKET ?? null;
    if (options.socket === undefined) delete process.env.NOTIFY_SOCKET;
    this.helper = options.helper ?? process.env.FEDTLS_SYSTEMD_NOTIFY ?? 'systemd-notify';
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  get enabled(): boolean {
    return this.socket !== null && this.socket !== '';
  }

  /** Listeners are bound and a certificate is served, or its first issuance has started. */
  ready(status: string): Promise<void> {
    return this.send({ READY: '1', STATUS: status });
  }

  /** Before a reload; send ready() when it is over. */
  reloading(status: string): Promise<void> {
    return this.send({ RELOADING: '1', MONOTONIC_USEC: String(monotonicMicroseconds()), STATUS: status });
  }

  stopping(status: string): Promise<void> {
    return this.send({ STOPPING: '1', STATUS: status });
  }

  status(status: string): Promise<void> {
    return this.send({ STATUS: status });
  }

  /** Queues one message; resolves once it was delivered or given up on (never rejects). */
  send(fields: Record<string, string>): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    const args = Object.entries(fields).map(([key, value]) => `${key}=${value.replace(/\n/g, ' ')}`);
    this.queue = this.queue.then(() => this.deliver(args));
    return this.queue;
  }

  private deliver(args: string[]): Promise<void> {
    return new Promise((resolve) => {
      let stderr = '';
      let settled = false;
      const child = spawn(this.helper, args, {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, NOTIFY_SOCKET: this.socket! },
      });
      const done = (problem: string | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (problem) this.warn(problem, args);
        resolve();
      };
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        done(`${this.helper} did not finish within ${this.timeoutMs} ms`);
      }, this.timeoutMs);
      child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
      child.on('error', (error: NodeJS.ErrnoException) => {
        done(error.code === 'ENOENT'
          ? `NOTIFY_SOCKET is set but "${this.helper}" is not installed (Debian package "systemd"); install it, or use Type=simple in the unit`
          : `cannot run ${this.helper}: ${error.message}`);
      });
      child.on('close', (code) => {
        done(code === 0 ? null : `${this.helper} failed (exit ${code}): ${stderr.trim() || 'no message'}`);
      });
    });
  }

  private warn(problem: string, args: string[]): void {
    const fields = { event: 'notify_failed', socket: this.socket, message: args.join(' ') };
    if (this.warned) {
      this.options.log.debug(fields, problem);
      return;
    }
    this.warned = true;
    this.options.log.warn(fields, `cannot tell systemd about our state: ${problem}`);
  }
}
