// Expiry watch for certificates that nobody renews automatically (hand-managed files, kind
// 'file'): logs a warning when one crosses 30, 14, 7 and 1 days left, and an error once it
// has expired while still being served. Owns only the when-to-warn decision and its timer;
// ACME certificates are the renewal manager's job. Each threshold is reported once per
// certificate (by fingerprint), so a renewed file starts afresh.

import type { Logger } from '../ops/log.js';
import type { CertificateStore, StoreEntry } from './store.js';

export const EXPIRY_WARNING_DAYS = [30, 14, 7, 1] as const;
const DAY_MS = 86_400_000;
const DEFAULT_CHECK_INTERVAL_MS = 3_600_000;

export interface ExpiryWarning {
  sourceId: string;
  names: string[];
  serial: string;
  notAfter: Date;
  /** Whole days left, rounded down; negative once expired. */
  daysLeft: number;
  /** The threshold crossed (30, 14, 7, 1), or 0 when the certificate has expired. */
  thresholdDays: number;
  certificatePath: string;
  privateKeyPath: string;
}

/**
 * The warnings due at `now` that `alreadyWarned` does not hold yet; adds them to it. Only the
 * nearest threshold crossed is reported (a file loaded with 5 days left warns once, for 7).
 */
export function dueExpiryWarnings(entries: StoreEntry[], now: Date, alreadyWarned: Set<string>): ExpiryWarning[] {
  const due: ExpiryWarning[] = [];
  for (const { source, pair } of entries) {
    if (source.kind !== 'file') continue;
    const msLeft = pair.leaf.notAfter.getTime() - now.getTime();
    const crossed = msLeft <= 0 ? [...EXPIRY_WARNING_DAYS, 0] : EXPIRY_WARNING_DAYS.filter((days) => msLeft <= days * DAY_MS);
    if (crossed.length === 0) continue;
    const nearest = Math.min(...crossed);
    const key = (days: number): string => `${pair.leaf.fingerprint256}:${days}`;
    const fresh = !alreadyWarned.has(key(nearest));
    for (const days of crossed) alreadyWarned.add(key(days));
    if (!fresh) continue;
    due.push({
      sourceId: source.id,
      names: pair.leaf.names,
      serial: pair.leaf.serial,
      notAfter: pair.leaf.notAfter,
      daysLeft: Math.floor(msLeft / DAY_MS),
      thresholdDays: nearest,
      certificatePath: source.certificatePath,
      privateKeyPath: source.privateKeyPath,
    });
  }
  return due;
}

export function logExpiryWarning(log: Logger, warning: ExpiryWarning): void {
  const fields = {
    event: warning.thresholdDays === 0 ? 'certificate_expired' : 'certificate_expiring',
    source: warning.sourceId, names: warning.names, serial: warning.serial,
    not_after: warning.notAfter.toISOString(), days_left: warning.daysLeft, threshold_days: warning.thresholdDays,
    certificate: warning.certificatePath, private_key_file: warning.privateKeyPath,
  };
  const names = warning.names.join(', ');
  if (warning.thresholdDays === 0) {
    log.error(fields, `the certificate for ${names} (${warning.certificatePath}) expired on ${fields.not_after} and is still being served; peers refuse it. Put a renewed certificate and key in place, then reload (SIGHUP)`);
  } else {
    log.warn(fields, `the certificate for ${names} (${warning.certificatePath}) expires on ${fields.not_after}: ${warning.daysLeft} day${warning.daysLeft === 1 ? '' : 's'} left. fedtls does not renew files it did not obtain: renew it, replace the files, then reload (SIGHUP)`);
  }
}

export interface ExpiryWatchOptions {
  store: CertificateStore;
  log: Logger;
  /** The clock; tests pass their own. */
  now?: () => Date;
  /** How often to look without a store change; default one hour. */
  checkIntervalMs?: number;
}

/** Checks at start, after every store change, and every checkIntervalMs. */
export class ExpiryWatch {
  private readonly warned = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private readonly onChange = (): void => { this.check(); };

  constructor(private readonly options: ExpiryWatchOptions) {}

  /** Logs what is due now and returns it. */
  check(): ExpiryWarning[] {
    const now = this.options.now?.() ?? new Date();
    const due = dueExpiryWarnings(this.options.store.list(), now, this.warned);
    for (const warning of due) logExpiryWarning(this.options.log, warning);
    return due;
  }

  start(): void {
    if (this.timer) return;
    this.check();
    this.options.store.on('change', this.onChange);
    this.timer = setInterval(() => this.check(), this.options.checkIntervalMs ?? DEFAULT_CHECK_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.options.store.off('change', this.onChange);
  }
}
