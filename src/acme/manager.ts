// Keeps the ACME-managed certificate valid: decides when to order (none yet, expired, or
// inside the renewal window), runs one order at a time, writes the result atomically to
// state_dir, and asks the store to load it from there (ACME → files → store). On failure it
// waits with capped exponential backoff, never sooner than the CA's Retry-After, while the
// current certificate keeps being served.

import path from 'node:path';
import type { Config } from '../config/types.js';
import type { Logger } from '../ops/log.js';
import type { CertificateSource, CertificateStore, ReloadOutcome } from '../certs/store.js';
import { writeFileAtomic } from '../certs/files.js';
import { formatDuration } from '../config/units.js';
import type { ChallengeTable } from './challenges.js';
import { openAccount, type AccountHandle } from './client.js';
import { orderCertificate } from './order.js';

const MIN_RETRY_MS = 60_000;
const MAX_RETRY_MS = 6 * 3_600_000;
const MAX_CHECK_INTERVAL_MS = 6 * 3_600_000;

/** The files ACME writes for a set of names, named after the first one. */
export function acmeCertificateSource(config: Config): CertificateSource {
  const primary = config.acme.domains[0]!;
  const dir = path.join(config.stateDir, 'certificates', primary);
  return {
    id: `acme:${primary}`,
    kind: 'acme',
    certificatePath: path.join(dir, 'fullchain.pem'),
    privateKeyPath: path.join(dir, 'privkey.pem'),
    names: config.acme.domains,
  };
}

export interface AcmeStatus {
  names: string[];
  state: 'idle' | 'ordering' | 'waiting_retry' | 'stopped';
  nextCheck: Date | null;
  lastError: { message: string; at: Date } | null;
  consecutiveFailures: number;
  lastIssued: Date | null;
  /** Orders since start, by result (for metrics). */
  orders: { ok: number; failed: number };
}

export interface AcmeManagerOptions {
  config: Config;
  store: CertificateStore;
  challenges: ChallengeTable;
  log: Logger;
  /** Called with each store outcome after an issuance is written and loaded. */
  onIssued?: (outcome: ReloadOutcome) => void;
}

export class AcmeManager {
  readonly source: CertificateSource;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private account: AccountHandle | null = null;
  private status: AcmeStatus;

  constructor(private readonly options: AcmeManagerOptions) {
    this.source = acmeCertificateSource(options.config);
    this.status = { names: options.config.acme.domains, state: 'idle', nextCheck: null, lastError: null, consecutiveFailures: 0, lastIssued: null, orders: { ok: 0, failed: 0 } };
  }

  getStatus(): AcmeStatus {
    return { ...this.status, orders: { ...this.status.orders } };
  }

  /** When the current certificate should be renewed, or null if there is none. */
  renewalDue(): Date | null {
    const entry = this.options.store.get(this.source.id);
    if (!entry) return null;
    const { notBefore, notAfter } = entry.pair.leaf;
    const lifetime = notAfter.getTime() - notBefore.getTime();
    const before = this.options.config.acme.renewBeforeMs ?? lifetime / 3;
    return new Date(notAfter.getTime() - before);
  }

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.status.state = 'stopped';
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
  }

  /** Runs a check now (force = order even if not due). Resolves with the status after that run. */
  async renewNow(force = false): Promise<AcmeStatus> {
    if (this.running) await this.running.catch(() => undefined);
    await this.run(force);
    return this.getStatus();
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.status.nextCheck = new Date(Date.now() + delayMs);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.run(false);
    }, Math.min(delayMs, 2 ** 31 - 1));
    this.timer.unref();
  }

  private run(force: boolean): Promise<void> {
    if (this.running) return this.running;
    this.running = this.check(force).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async check(force: boolean): Promise<void> {
    const { log } = this.options;
    const now = new Date();
    const due = this.renewalDue();
    if (!force && due && due > now) {
      const entry = this.options.store.get(this.source.id)!;
      const lifetime = entry.pair.leaf.notAfter.getTime() - entry.pair.leaf.notBefore.getTime();
      const interval = Math.min(MAX_CHECK_INTERVAL_MS, Math.max(1000, lifetime / 24));
      const wait = Math.min(due.getTime() - now.getTime(), interval);
      this.status.state = 'idle';
      log.debug({ event: 'acme_not_due', renew_at: due.toISOString() }, 'certificate not due for renewal');
      this.schedule(wait);
      return;
    }
    this.status.state = 'ordering';
    const names = this.options.config.acme.domains;
    const reason = force ? 'renewal forced' : due ? 'renewal window reached' : 'no certificate yet';
    log.info({ event: 'acme_order_start', names, reason, directory: this.options.config.acme.directoryUrl }, `ordering a certificate for ${names.join(', ')} (${reason})`);
    try {
      this.account ??= await openAccount(this.options.config.stateDir, this.options.config.acme, log);
      const issued = await orderCertificate({
        client: this.account.client,
        domains: names,
        challenges: this.options.challenges,
        keyType: this.options.config.acme.keyType,
        log,
        ...(this.options.config.acme.profile ? { orderExtras: { profile: this.options.config.acme.profile } } : {}),
      });
      writeFileAtomic(this.source.privateKeyPath, issued.keyPem, 0o600);
      writeFileAtomic(this.source.certificatePath, issued.chainPem, 0o644);
      const outcome = this.options.store.reloadSource(this.source);
      this.options.onIssued?.(outcome);
      if (outcome.status === 'refused') throw new Error(`the CA's certificate did not load: ${outcome.error.message}`);
      this.status.consecutiveFailures = 0;
      this.status.lastError = null;
      this.status.lastIssued = new Date();
      this.status.orders.ok += 1;
      const leaf = 'pair' in outcome ? outcome.pair.leaf : null;
      log.info({ event: 'acme_certificate_issued', names, serial: leaf?.serial, not_after: leaf?.notAfter.toISOString(), file: this.source.certificatePath },
        `obtained a certificate for ${names.join(', ')}, valid until ${leaf?.notAfter.toISOString()}`);
      this.schedule(0);
    } catch (error) {
      this.status.consecutiveFailures += 1;
      this.status.orders.failed += 1;
      const message = (error as Error).message;
      this.status.lastError = { message, at: new Date() };
      const delay = Math.min(MAX_RETRY_MS, MIN_RETRY_MS * 2 ** (this.status.consecutiveFailures - 1));
      const jittered = Math.round((delay * (0.9 + Math.random() * 0.2)) / 1000) * 1000;
      this.status.state = 'waiting_retry';
      const serving = this.options.store.get(this.source.id);
      log.error({ event: 'acme_order_failed', names, error: message, attempt: this.status.consecutiveFailures, retry_in: formatDuration(jittered), still_serving: serving?.pair.leaf.serial ?? null },
        `could not obtain a certificate for ${names.join(', ')}: ${message}; next try in ${formatDuration(jittered)}`);
      this.schedule(jittered);
    }
  }
}
