// The primary's side of `workers: N > 1`: forks N worker processes (node:cluster) that serve
// the TLS listeners, gives them the very config text the primary read and the session ticket
// keys when they ask at start (over the cluster channel; new keys at each rotation), tells
// them to reload certificate files and waits until every one has, restarts a worker that dies
// (retrying a restart that fails), and stops them gracefully. Promises: start() resolves once
// every worker listens (or rejects with the first worker's listen error); reload() resolves
// once every running worker serves what the files hold (or after a bounded wait, with a
// warning naming the stragglers).

import cluster, { type Worker } from 'node:cluster';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/types.js';
import type { Logger } from '../ops/log.js';
import { ListenError } from '../http/listen.js';
import type { SessionTicketKeys } from '../http/session-tickets.js';
import { isFromWorker, WORKER_CONFIG_FILE_ENV, type FromWorker, type StopAnswer, type ToWorker } from './messages.js';

const WORKER_ENTRY = path.join(path.dirname(fileURLToPath(import.meta.url)), 'worker-main.js');
const RELOAD_WAIT_MS = 10_000;
const METRICS_WAIT_MS = 2000;
const STOP_ACCEPTING_WAIT_MS = 5000;
const RESTART_DELAY_MS = 1000;
const RESTART_DELAY_MAX_MS = 30_000;

export interface WorkerPoolOptions {
  config: Config;
  log: Logger;
  /** The session ticket keys every worker's TLS listeners share (the primary rotates them). */
  ticketKeys: SessionTicketKeys;
  /** Called once per configured listener address, when the first worker has bound it. */
  onListening(role: string, address: string): void;
  /** Called when a worker started in place of one that exited serves (it read the certificate files at its own start). */
  onWorkerRestarted(): void;
}

/**
 * V8 heap flags the workers get unless the admin chose the same flag (in the primary's flags
 * or NODE_OPTIONS). Uploads allocate a short-lived 16 KB buffer per TLS record but few JS
 * objects; both flags were chosen with `npm run bench` (20 × 50 MB uploads in flight, 2 workers):
 * - a 1 MB young generation: the young generation fills slowly, so the buffers' memory piles up
 *   between scavenges. RSS growth 68–72 MB with a 2 MB semi-space, 40–42 MB with 1 MB (V8's
 *   default 16 MB: 79–87 MB); keep-alive req/s the same within noise.
 * - a 64 MB floor for the old generation's GC limit: once a worker has sat idle a few seconds,
 *   V8 recomputes that limit from the ~15 MB live heap, and uploads then ran a full mark-compact
 *   after nearly every scavenge (~350 in 15 s): 400–470 MB/s instead of 550–640. With the floor,
 *   9 mark-compacts and 550–600 MB/s after idling (32 MB: 510–520); RSS growth unchanged.
 */
const WORKER_HEAP_DEFAULTS: readonly { flag: string; value: string }[] = [
  { flag: 'semi-space-size', value: '--max-semi-space-size=1' },
  { flag: 'old-space-size', value: '--initial-old-space-size=64' },
];

function workerExecArgv(): string[] {
  const chosenByAdmin = [...process.execArgv, process.env.NODE_OPTIONS ?? ''];
  const defaults = WORKER_HEAP_DEFAULTS.filter(({ flag }) => !chosenByAdmin.some((given) => given.includes(flag)));
  return [...process.execArgv, ...defaults.map(({ value }) => value)];
}

interface PendingQuestion {
  waiting: Set<number>;
  answers: Map<number, unknown>;
  resolve(): void;
}

export class WorkerPool {
  private readonly workers = new Map<number, { worker: Worker; ready: boolean }>();
  private readonly announced = new Set<string>();
  private readonly pending = new Map<number, PendingQuestion>();
  private nextQuestionId = 1;
  private stopping = false;
  private reloadsSent = 0;

  constructor(private readonly options: WorkerPoolOptions) {}

  get size(): number {
    return this.options.config.workers;
  }

  /** Forks every worker; resolves when all are listening. */
  start(): Promise<void> {
    cluster.setupPrimary({ exec: WORKER_ENTRY, args: [], silent: false, execArgv: workerExecArgv() });
    const starts: Promise<void>[] = [];
    for (let i = 0; i < this.size; i++) starts.push(this.fork());
    return Promise.all(starts).then(() => undefined);
  }

  private fork(restart = false): Promise<void> {
    const { config, log } = this.options;
    const worker = cluster.fork({ [WORKER_CONFIG_FILE_ENV]: config.file });
    const entry = { worker, ready: false };
    this.workers.set(worker.id, entry);
    return new Promise<void>((resolve, reject) => {
      worker.on('message', (message: unknown) => {
        if (!isFromWorker(message)) return;
        this.onMessage(worker, message, () => {
          if (restart) {
            log.info({ event: 'worker_restarted', worker: worker.id }, `TLS worker ${worker.id} started and serves in place of the one that exited`);
            this.options.onWorkerRestarted();
          }
          resolve();
        }, reject);
      });
      worker.on('exit', (code, signal) => {
        this.workers.delete(worker.id);
        for (const [id, question] of this.pending) {
          if (question.waiting.delete(worker.id) && question.waiting.size === 0) this.finish(id);
        }
        if (!entry.ready) {
          reject(new Error(`TLS worker ${worker.id} exited during start (code ${code ?? signal})`));
          return;
        }
        if (this.stopping) return;
        log.error({ event: 'worker_exited', worker: worker.id, code, signal }, `TLS worker ${worker.id} exited unexpectedly (${code ?? signal}); starting a new one`);
        this.restart(RESTART_DELAY_MS);
      });
    });
  }

  /**
   * Starts a worker in place of one that died. A start that fails is retried: every second while
   * no worker serves (the TLS port is closed then), with a delay doubling up to 30 s while others do.
   */
  private restart(delayMs: number): void {
    setTimeout(() => {
      if (this.stopping) return;
      this.fork(true).catch((error: Error) => {
        if (this.stopping) return;
        const serving = [...this.workers.values()].filter((entry) => entry.ready).length;
        const next = serving === 0 ? RESTART_DELAY_MS : Math.min(delayMs * 2, RESTART_DELAY_MAX_MS);
        const state = serving === 0 ? 'no TLS worker serves now, so the TLS ports refuse connections' : `${serving} other TLS worker${serving === 1 ? '' : 's'} keep${serving === 1 ? 's' : ''} serving`;
        this.options.log.error({ event: 'worker_start_failed', error: error.message, serving_workers: serving, retry_in_s: next / 1000 },
          `could not restart a TLS worker: ${error.message}; trying again in ${next / 1000} s (${state})`);
        this.restart(next);
      });
    }, delayMs).unref();
  }

  /** Every worker gets the current ticket keys (after a rotation). */
  sendTicketKeys(): void {
    const message: ToWorker = { type: 'fedtls:ticket-keys', keys: this.options.ticketKeys.export() };
    for (const { worker } of this.workers.values()) if (worker.isConnected()) worker.send(message);
  }

  private onMessage(worker: Worker, message: FromWorker, resolve: () => void, reject: (error: Error) => void): void {
    switch (message.type) {
      case 'fedtls:need-start-data':
        worker.send({ type: 'fedtls:start-data', configText: this.options.config.text ?? '', ticketKeys: this.options.ticketKeys.export() } satisfies ToWorker);
        return;
      case 'fedtls:listening': {
        const key = `${message.role} ${message.configured}`;
        if (!this.announced.has(key)) {
          this.announced.add(key);
          this.options.onListening(message.role, message.address);
        }
        return;
      }
      case 'fedtls:ready': {
        const entry = this.workers.get(worker.id);
        if (entry) entry.ready = true;
        resolve();
        return;
      }
      case 'fedtls:start-failed':
        reject(message.address !== null && message.code !== null ? new ListenError(message.address, message.code, message.message) : new Error(message.message));
        return;
      case 'fedtls:answer': {
        const question = this.pending.get(message.id);
        if (!question) return;
        question.answers.set(worker.id, message.payload);
        question.waiting.delete(worker.id);
        if (question.waiting.size === 0) this.finish(message.id);
      }
    }
  }

  private finish(id: number): void {
    const question = this.pending.get(id);
    if (!question) return;
    this.pending.delete(id);
    question.resolve();
  }

  /** Sends a question to every ready worker; resolves with the answers (worker id → payload) when all answered or after waitMs. */
  private ask(make: (id: number) => ToWorker, waitMs: number, onSlow: (stragglers: number[]) => void): Promise<Map<number, unknown>> {
    const id = this.nextQuestionId++;
    const ready = [...this.workers.entries()].filter(([, e]) => e.ready && e.worker.isConnected());
    return new Promise((resolve) => {
      const question: PendingQuestion = { waiting: new Set(ready.map(([wid]) => wid)), answers: new Map(), resolve: () => { clearTimeout(timer); resolve(question.answers); } };
      const timer = setTimeout(() => {
        if (!this.pending.has(id)) return;
        onSlow([...question.waiting]);
        this.finish(id);
      }, waitMs);
      timer.unref();
      this.pending.set(id, question);
      if (question.waiting.size === 0) {
        this.finish(id);
        return;
      }
      const message = make(id);
      for (const [, { worker }] of ready) worker.send(message);
    });
  }

  /**
   * How many reloads were sent so far (SIGHUP and ACME alike). A reload's answers describe
   * the newest state only while this has not moved on past the count right after it was sent.
   */
  get reloadCount(): number {
    return this.reloadsSent;
  }

  /**
   * Every ready worker re-reads the certificate files. Resolves with what each worker serves
   * (worker id → source id → serial) once all have answered, or after RELOAD_WAIT_MS.
   */
  reload(trigger: string): Promise<Map<number, Record<string, string | null>>> {
    this.reloadsSent += 1;
    return this.ask((id) => ({ type: 'fedtls:reload', id, trigger }), RELOAD_WAIT_MS, (stragglers) => {
      this.options.log.warn({ event: 'worker_reload_slow', workers: stragglers, trigger }, `TLS workers ${stragglers.join(', ')} did not confirm the certificate reload within ${RELOAD_WAIT_MS / 1000} s`);
    }) as Promise<Map<number, Record<string, string | null>>>;
  }

  /** Every ready worker's traffic counters, for a metrics scrape (workers that do not answer in 2 s are left out). */
  async metrics(): Promise<unknown[]> {
    return [...(await this.ask((id) => ({ type: 'fedtls:metrics', id }), METRICS_WAIT_MS, () => undefined)).values()];
  }

  /**
   * Every worker stops accepting (resolves when all have: the shared listening socket is then
   * closed), then drains its requests in flight and exits; `exited` resolves when all are
   * gone (those still running after drain + 5 s are killed). `inFlight`: the requests the
   * workers had in flight when they stopped accepting, summed (a worker that did not answer
   * counts 0).
   */
  async stop(drainMs: number): Promise<{ exited: Promise<void>; inFlight: number }> {
    this.stopping = true;
    const exited = Promise.all([...this.workers.values()].map(({ worker }) => new Promise<void>((resolve) => {
      if (worker.isDead()) { resolve(); return; }
      worker.once('exit', () => resolve());
      setTimeout(() => { if (!worker.isDead()) worker.process.kill('SIGKILL'); }, drainMs + 5000).unref();
    }))).then(() => undefined);
    for (const { worker, ready } of this.workers.values()) if (!ready) worker.kill('SIGTERM');
    const answers = await this.ask((id) => ({ type: 'fedtls:stop', id }), STOP_ACCEPTING_WAIT_MS, (stragglers) => {
      for (const id of stragglers) this.workers.get(id)?.worker.kill('SIGTERM');
    });
    let inFlight = 0;
    for (const payload of answers.values()) {
      const count = (payload as StopAnswer | null)?.inFlight;
      if (typeof count === 'number') inFlight += count;
    }
    return { exited, inFlight };
  }
}
