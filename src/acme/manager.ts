// Keeps the ACME-managed certificate valid without anyone watching. Owns when to order: no
// certificate yet, inside the CA's ARI window (RFC 9773, a random moment in it, re-asked
// after its Retry-After), or else when acme.renew_before / one third of the lifetime is
// left (a renew_before too long for the lifetime gets one warning and the default rule);
// never again by itself within a tenth of the lifetime after an issuance (a minute under
// ARI), so no setting can make it order certificate after certificate; checks follow the
// lifetime, with jitter. Runs one order at a time (with `profile` and `replaces` when the
// CA supports them), writes the result atomically to state_dir and asks the store to load
// it from there (ACME → files → store), then runs acme.deploy_hook.
// On failure: one loud log line saying what failed, the likely cause and when the next try
// is; backoff per timing.ts (never before the CA's Retry-After); the current certificate
// keeps being served. An admin's forced renewal that fails stays forced: the next try orders
// even though the served certificate is not due, until a certificate is issued. A CA that
// no longer knows the saved account (reset) is not a failure: the account is registered again
// with the saved key and the order retried once, in the same attempt, with one warning line.

import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/types.js';
import type { Logger } from '../ops/log.js';
import type { CertificateSource, CertificateStore, ReloadOutcome, StoreEntry } from '../certs/store.js';
import { unwritableDirectory, writeFileAtomic } from '../certs/files.js';
import { nameMatches } from '../certs/pem.js';
import { formatDuration, roughDuration } from '../config/units.js';
import type { ChallengeTable } from './challenges.js';
import { accountFiles, configureAcmeHttp, openAccount, type AccountHandle } from './client.js';
import { orderCertificate, type IssuedCertificate } from './order.js';
import { withProblemRecording, type CaProblem } from './ca-problems.js';
import { accountGoneProblem, explainFailure, type FailureExplanation } from './explain.js';
import { ariCertId, fetchRenewalInfo, orderProfile, readDirectory, UnknownProfileError, type DirectoryInfo } from './directory.js';
import { ariRecheckDelay, checkInterval, DEFAULT_TIMING, earliestRoutineOrder, lifetimeRenewalTime, MIN_SERVICE_SHARE, randomMomentIn, retryDelay, type AcmeTiming, type LifetimeRenewal } from './timing.js';
import { runDeployHook } from './deploy-hook.js';
import { dryRunOrder, type DryRunResult } from './dry-run.js';

/** How long a read directory is trusted before it is read again. */
const DIRECTORY_MAX_AGE_MS = 12 * 3_600_000;

/** The files ACME writes for a set of names, named after the first one. */
/** A state_dir that cannot be written is a local problem: look again soon, without asking the CA. */
const UNWRITABLE_RECHECK_MS = 5 * 60_000;

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
  /** When the served certificate is planned to be renewed, and on what basis. */
  renewAt: Date | null;
  renewBasis: 'ari' | 'renew_before' | 'lifetime' | null;
  lastError: { message: string; cause: string; at: Date } | null;
  consecutiveFailures: number;
  lastIssued: Date | null;
  /** Orders since start, by result (for metrics). */
  orders: { ok: number; failed: number };
}

export type RenewResult =
  | { outcome: 'issued'; names: string[]; serial: string; not_after: string; message: string }
  | { outcome: 'not_due'; names: string[]; renew_at: string; message: string }
  | { outcome: 'waiting'; names: string[]; next_try: string; message: string }
  | { outcome: 'failed'; names: string[]; error: string; cause: string; next_try: string; message: string };

export interface AcmeManagerOptions {
  config: Config;
  store: CertificateStore;
  challenges: ChallengeTable;
  log: Logger;
  /** Called with each store outcome after an issuance is written and loaded. */
  /** Awaited before the issuance is logged (TLS workers reload first). */
  onIssued?: (outcome: ReloadOutcome) => void | Promise<void>;
  /** Overrides of the timing policy (tests use short ones). */
  timing?: Partial<AcmeTiming>;
}

interface AriState {
  serial: string;
  certId: string;
  start: Date;
  end: Date;
  chosen: Date;
  recheckAt: number;
}

interface RenewalPlan {
  renewAt: Date;
  basis: NonNullable<AcmeStatus['renewBasis']>;
  /** When the plan itself should be re-made (ARI Retry-After), if sooner than the routine check. */
  recheckAt: number | null;
}

function secondsText(ms: number): string {
  return formatDuration(Math.max(1000, Math.round(ms / 1000) * 1000));
}

export class AcmeManager {
  readonly source: CertificateSource;
  readonly timing: AcmeTiming;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<RenewResult> | null = null;
  private stopped = false;
  private account: AccountHandle | null = null;
  private directory: { info: DirectoryInfo; readAt: number } | null = null;
  private ari: AriState | null = null;
  private ariFailedUntil = 0;
  private warnedNoProfiles = false;
  /** Serial whose `replaces` the CA refused; later orders for it go without. */
  private replacesRefusedFor: string | null = null;
  private failureTimes: number[] = [];
  private backoffUntil = 0;
  private retryAfterUntil = 0;
  /**
   * An admin's `renew --force` that has not succeeded yet: the daemon's own retries keep
   * ordering (at the backoff time the failure announced) instead of finding the served
   * certificate "not due". Cleared by any issuance. Kept in memory only: a restart drops it.
   */
  private pendingForce: { since: Date } | null = null;
  /** The certificate this process obtained last, and when (the floor after an issuance counts from it). */
  private issued: { serial: string; at: number } | null = null;
  /** Serials already warned about (acme.renew_before too long; renewal held back by the floor): one warning per certificate. */
  private readonly warnedTooLong = new Set<string>();
  private readonly warnedHeld = new Set<string>();
  private status: AcmeStatus;

  constructor(private readonly options: AcmeManagerOptions) {
    this.source = acmeCertificateSource(options.config);
    this.timing = { ...DEFAULT_TIMING, ...options.timing };
    this.status = { names: options.config.acme.domains, state: 'idle', nextCheck: null, renewAt: null, renewBasis: null, lastError: null, consecutiveFailures: 0, lastIssued: null, orders: { ok: 0, failed: 0 } };
  }

  getStatus(): AcmeStatus {
    return { ...this.status, orders: { ...this.status.orders } };
  }

  /** When the served certificate is planned to be renewed (ARI or lifetime rule), or null without one. */
  renewalDue(): Date | null {
    if (this.status.renewAt) return this.status.renewAt;
    const entry = this.options.store.get(this.source.id);
    if (!entry) return null;
    return this.lifetimeRule(entry).renewAt;
  }

  /** renew_before or one third of the lifetime; warns once per certificate when renew_before is too long for it. */
  private lifetimeRule(entry: StoreEntry): LifetimeRenewal {
    const { notBefore, notAfter, serial } = entry.pair.leaf;
    const renewBeforeMs = this.options.config.acme.renewBeforeMs;
    const rule = lifetimeRenewalTime(notBefore, notAfter, renewBeforeMs);
    if (rule.renewBeforeTooLong && renewBeforeMs !== null && !this.warnedTooLong.has(serial)) {
      this.warnedTooLong.add(serial);
      const lifetime = notAfter.getTime() - notBefore.getTime();
      const when = renewBeforeMs >= lifetime ? 'as soon as it is issued' : `within the first ${Math.round(MIN_SERVICE_SHARE * 100)}% of its lifetime`;
      this.options.log.warn({ event: 'acme_renew_before_too_long', serial, renew_before: formatDuration(renewBeforeMs), lifetime: roughDuration(lifetime), renew_at: rule.renewAt.toISOString() },
        `acme.renew_before (${formatDuration(renewBeforeMs)}) is too long for this certificate's lifetime (${roughDuration(lifetime)}, serial ${serial}): it would be due for renewal ${when}, and every new certificate again. ` +
        `fedtls uses the default instead: renew when one third of the lifetime is left (${roughDuration(lifetime / 3)} before expiry, at ${rule.renewAt.toISOString()}). ` +
        `Set acme.renew_before well below the lifetime (e.g. ${roughDuration(lifetime / 3)}), or remove it`);
    }
    return rule;
  }

  /**
   * The plan, held back to the floor after an issuance (timing.ts earliestRoutineOrder), so
   * that no config, clock or CA answer can make the daemon order again and again.
   */
  private heldToFloor(entry: StoreEntry, plan: RenewalPlan, why: string): RenewalPlan {
    const { notBefore, notAfter, serial } = entry.pair.leaf;
    const issuedAt = this.issued?.serial === serial ? this.issued.at : null;
    const floor = earliestRoutineOrder(notBefore, notAfter, issuedAt, plan.basis, this.timing);
    if (plan.renewAt.getTime() >= floor) return plan;
    if (!this.warnedHeld.has(serial)) {
      this.warnedHeld.add(serial);
      const issued = new Date(Math.max(notBefore.getTime(), issuedAt ?? -Infinity));
      this.options.log.warn({ event: 'acme_renewal_held', serial, basis: plan.basis, due_at: plan.renewAt.toISOString(), held_until: new Date(floor).toISOString() },
        `the certificate issued at ${issued.toISOString()} (serial ${serial}) would be due again already (${why}); fedtls does not order again before ${new Date(floor).toISOString()}, so as not to order certificate after certificate` +
        (plan.basis === 'ari' ? '' : '. Check this machine\'s clock (timedatectl)'));
    }
    return { ...plan, renewAt: new Date(floor) };
  }

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  /** Stops scheduling. Waits for an order in progress (so its files are complete), not for a mere check. */
  async stop(): Promise<void> {
    this.stopped = true;
    const ordering = this.status.state === 'ordering';
    this.status.state = 'stopped';
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (ordering) await this.running?.catch(() => undefined);
  }

  /**
   * Start-time check of acme.profile against the directory. Throws UnknownProfileError when
   * the CA lists profiles without this one; an unreachable CA is not an error here (the
   * daemon serves what it has and checks again before ordering).
   */
  async preflight(timeoutMs = 3000): Promise<void> {
    configureAcmeHttp(this.options.config.acme.caBundlePath);
    if (this.options.config.acme.profile === null) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), timeoutMs); });
    const directory = await Promise.race([this.getDirectory().catch(() => null), timeout]);
    clearTimeout(timer);
    if (directory) this.profileFor(directory);
  }

  /** An admin's `fedtls renew`: check now; with force, order even if not due. */
  async renew(force: boolean): Promise<RenewResult> {
    if (this.running) await this.running.catch(() => undefined);
    return this.run(force, true);
  }

  /** `fedtls renew --dry-run`: a throw-away certificate from the staging/test directory. */
  dryRun(): Promise<DryRunResult> {
    return dryRunOrder({ config: this.options.config, challenges: this.options.challenges, log: this.options.log });
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    const delay = Math.max(0, Math.round(delayMs));
    this.status.nextCheck = new Date(Date.now() + delay);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.run(false, false);
    }, Math.min(delay, 2 ** 31 - 1));
    this.timer.unref();
  }

  private run(force: boolean, byAdmin: boolean): Promise<RenewResult> {
    if (this.running) return this.running;
    this.running = this.check(force, byAdmin).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async getDirectory(): Promise<DirectoryInfo> {
    if (this.directory && Date.now() - this.directory.readAt < DIRECTORY_MAX_AGE_MS) return this.directory.info;
    configureAcmeHttp(this.options.config.acme.caBundlePath);
    const info = await readDirectory(this.options.config.acme.directoryUrl);
    this.directory = { info, readAt: Date.now() };
    return info;
  }

  private profileFor(directory: DirectoryInfo): string | null {
    const wanted = this.options.config.acme.profile;
    if (wanted !== null && directory.profiles === null && !this.warnedNoProfiles) {
      this.warnedNoProfiles = true;
      this.options.log.warn({ event: 'acme_profile_unsupported', profile: wanted, directory: directory.url }, `acme.profile "${wanted}" is ignored: ${directory.url} offers no profiles`);
    }
    return orderProfile(wanted, directory);
  }

  /** When the served certificate should be renewed. Asks ARI when the CA offers it. */
  private async plan(entry: StoreEntry, now: number): Promise<RenewalPlan> {
    const { notBefore, notAfter, serial } = entry.pair.leaf;
    const lifetime = notAfter.getTime() - notBefore.getTime();
    const { renewAt: byConfig, basis } = this.lifetimeRule(entry);
    const ari = await this.currentAri(entry, now);
    if (!ari) return { renewAt: byConfig, basis, recheckAt: null };
    // ARI decides; renew_before (if usable) may only make it earlier; and never leave less than a tenth of the lifetime.
    const safety = notAfter.getTime() - lifetime / 10;
    const renewAt = Math.min(ari.chosen.getTime(), basis === 'renew_before' ? byConfig.getTime() : Infinity, safety);
    if (ari.serial !== serial) return { renewAt: byConfig, basis, recheckAt: null };
    return { renewAt: new Date(renewAt), basis: renewAt === ari.chosen.getTime() ? 'ari' : basis, recheckAt: ari.recheckAt };
  }

  private async currentAri(entry: StoreEntry, now: number): Promise<AriState | null> {
    const { log } = this.options;
    const serial = entry.pair.leaf.serial;
    if (this.ari && this.ari.serial === serial && now < this.ari.recheckAt) return this.ari;
    if (now < this.ariFailedUntil) return this.ari?.serial === serial ? this.ari : null;
    let directory: DirectoryInfo;
    try {
      directory = await this.getDirectory();
    } catch {
      this.ariFailedUntil = now + this.timing.ariErrorRecheckMs;
      return null; // CA unreachable: the lifetime rule decides; an order, when due, reports loudly
    }
    if (!directory.renewalInfo) return null;
    try {
      const certId = ariCertId(entry.pair.chainPem);
      const info = await withProblemRecording([], () => fetchRenewalInfo(directory.renewalInfo!, certId));
      const sameWindow = this.ari && this.ari.serial === serial && this.ari.start.getTime() === info.start.getTime() && this.ari.end.getTime() === info.end.getTime();
      const chosen = sameWindow ? this.ari!.chosen : randomMomentIn(info.start, info.end, new Date(now));
      const recheckIn = ariRecheckDelay(info.retryAfterMs, this.timing);
      this.ari = { serial, certId, start: info.start, end: info.end, chosen, recheckAt: now + recheckIn };
      if (!sameWindow) {
        log.info({ event: 'acme_renewal_info', serial, window_start: info.start.toISOString(), window_end: info.end.toISOString(), renew_at: chosen.toISOString(), recheck_in: secondsText(recheckIn), explanation: info.explanationUrl ?? undefined },
          `the CA suggests renewing between ${info.start.toISOString()} and ${info.end.toISOString()}; fedtls will renew at ${chosen.toISOString()} and ask again in ${secondsText(recheckIn)}`);
      }
      return this.ari;
    } catch (error) {
      this.ariFailedUntil = now + this.timing.ariErrorRecheckMs;
      log.warn({ event: 'acme_renewal_info_failed', error: (error as Error).message, retry_in: secondsText(this.timing.ariErrorRecheckMs) },
        `could not read the CA's renewal information (${(error as Error).message}); renewing by the certificate's lifetime meanwhile`);
      return this.ari?.serial === serial ? this.ari : null;
    }
  }

  private async check(force: boolean, byAdmin: boolean): Promise<RenewResult> {
    const { log } = this.options;
    const names = this.options.config.acme.domains;
    const now = Date.now();
    const entry = this.options.store.get(this.source.id);
    // A forced renewal that failed is retried as forced (the failure said the daemon tries again).
    const retryingForce = !force && this.pendingForce !== null;
    let reason = force ? 'renewal forced by the admin'
      : retryingForce ? `retrying the renewal the admin forced at ${this.pendingForce!.since.toISOString()}` : 'no certificate yet';
    // A name added to acme.domains since the certificate was issued: order now, not at renewal time.
    const lacking = entry ? names.filter((name) => !entry.pair.leaf.names.some((pattern) => nameMatches(pattern, name))) : [];
    // Unless this process just got that very certificate from the CA: then the floor applies like for any renewal.
    const justIssued = entry !== null && this.issued?.serial === entry.pair.leaf.serial;
    if (entry && !force && !retryingForce && lacking.length > 0 && !justIssued) {
      reason = `acme.domains lists ${lacking.join(', ')}, which the current certificate lacks`;
    } else if (entry && !force && !retryingForce) {
      const planned: RenewalPlan = lacking.length > 0 ? { renewAt: new Date(now), basis: 'lifetime', recheckAt: null } : await this.plan(entry, now);
      const why = lacking.length > 0 ? `the CA's certificate lacks ${lacking.join(', ')}, which acme.domains lists`
        : planned.basis === 'ari' ? "by the CA's renewal information" : planned.basis === 'renew_before' ? 'by acme.renew_before' : 'by one third of its lifetime left';
      const plan = this.heldToFloor(entry, planned, why);
      this.status.renewAt = plan.renewAt;
      this.status.renewBasis = plan.basis;
      if (plan.renewAt.getTime() > now) {
        const leaf = entry.pair.leaf;
        const routine = now + checkInterval(leaf.notAfter.getTime() - leaf.notBefore.getTime(), this.timing);
        const next = Math.min(plan.renewAt.getTime(), routine, plan.recheckAt ?? Infinity);
        this.status.state = 'idle';
        log.debug({ event: 'acme_not_due', renew_at: plan.renewAt.toISOString(), basis: plan.basis, next_check_in: secondsText(next - now) }, 'certificate not due for renewal');
        this.schedule(next - now);
        return { outcome: 'not_due', names, renew_at: plan.renewAt.toISOString(), message: `the certificate for ${names.join(', ')} is not due for renewal (renewal planned at ${plan.renewAt.toISOString()}, by ${plan.basis === 'ari' ? "the CA's renewal information" : plan.basis === 'renew_before' ? 'acme.renew_before' : 'one third of its lifetime left'}); use --force to renew anyway` };
      }
      reason = lacking.length > 0 ? `acme.domains lists ${lacking.join(', ')}, which the current certificate lacks`
        : plan.basis === 'ari' ? "inside the CA's suggested renewal window" : plan.basis === 'renew_before' ? 'acme.renew_before reached' : 'one third of the lifetime left';
    }
    const waitUntil = force ? this.retryAfterUntil : this.backoffUntil;
    const recentFailures = this.failureTimes.filter((t) => t > now - this.timing.failureWindowMs).length;
    if (now < waitUntil || (force && recentFailures >= this.timing.maxFailuresPerWindow)) {
      const until = Math.max(waitUntil, this.backoffUntil);
      if (!byAdmin) this.schedule(until - now);
      // The admin's force is kept: the try at `until` orders, whatever the served certificate's plan.
      if (force) this.pendingForce ??= { since: new Date(now) };
      const why = now < this.retryAfterUntil ? 'the CA asked to wait (Retry-After)' : `${recentFailures} failed attempts in the last ${secondsText(this.timing.failureWindowMs)}`;
      return { outcome: 'waiting', names, next_try: new Date(until).toISOString(), message: `not ordering now: ${why}; the next try is at ${new Date(until).toISOString()}${force || this.pendingForce ? ', and it orders a new certificate even though the current one is not due' : ''} (last error: ${this.status.lastError?.message ?? 'none'})` };
    }
    return this.order(entry, reason, force || retryingForce);
  }

  /** `forced`: ordered because the admin forced it (now, or earlier and it failed); remembered until an issuance if this fails. */
  private async order(entry: StoreEntry | null, reason: string, forced: boolean): Promise<RenewResult> {
    const { config, log } = this.options;
    const names = config.acme.domains;
    this.status.state = 'ordering';
    const problems: CaProblem[] = [];
    const replacing = entry?.pair.leaf.serial ?? null;
    // Before asking the CA for anything: the result must be storable. A certificate that cannot
    // be written would be issued again on every retry (and count against the CA's limits).
    const unwritable = unwritableDirectory(path.dirname(this.source.certificatePath), config.stateDir);
    if (unwritable) {
      this.status.state = 'waiting_retry';
      if (forced) this.pendingForce ??= { since: new Date() };
      this.status.lastError = { message: unwritable, cause: 'fix the ownership of state_dir', at: new Date() };
      log.error({ event: 'acme_state_dir_unwritable', directory: path.dirname(this.source.certificatePath), error: unwritable }, `not ordering: ${unwritable}`);
      this.schedule(UNWRITABLE_RECHECK_MS);
      return { outcome: 'failed', names, error: unwritable, cause: 'fix the ownership of state_dir', next_try: new Date(Date.now() + UNWRITABLE_RECHECK_MS).toISOString(), message: `not ordering: ${unwritable}` };
    }
    log.info({ event: 'acme_order_start', names, reason, directory: config.acme.directoryUrl }, `ordering a certificate for ${names.join(', ')} (${reason})`);
    try {
      const attempt = async (): Promise<IssuedCertificate> => {
        this.account ??= await openAccount(config.stateDir, config.acme, log);
        const directory = await this.getDirectory();
        const extras: Record<string, unknown> = {};
        const profile = this.profileFor(directory);
        if (profile) extras.profile = profile;
        if (entry && directory.renewalInfo && replacing !== this.replacesRefusedFor) {
          try { extras.replaces = ariCertId(entry.pair.chainPem); } catch { /* no AKI: nothing to replace by ARI */ }
        }
        if (extras.profile || extras.replaces) {
          log.info({ event: 'acme_order_options', names, profile: extras.profile, replaces: extras.replaces },
            `ordering${extras.profile ? ` with profile ${String(extras.profile)}` : ''}${extras.replaces ? ` as the replacement of ${String(extras.replaces)} (ARI)` : ''}`);
        }
        return orderCertificate({ client: this.account.client, domains: names, challenges: this.options.challenges, keyType: config.acme.keyType, log, orderExtras: extras });
      };
      const issued = await withProblemRecording(problems, async () => {
        try {
          return await attempt();
        } catch (error) {
          // The CA forgot the saved account (it was reset): register again with the saved key
          // and order again, in this same attempt (once: a second failure is the attempt's failure).
          const previous = this.account;
          const gone = previous && !this.stopped ? accountGoneProblem(problems, previous.accountUrl) : null;
          if (!previous || !gone) throw error;
          this.forgetAccount({ quiet: true });
          problems.length = 0;
          this.account = await openAccount(config.stateDir, config.acme, log, { quiet: true });
          log.warn({ event: 'acme_account_reregistered', previous_account: previous.accountUrl, account: this.account.accountUrl, ca_said: `${gone.type ?? gone.status}: ${gone.detail}`, directory: config.acme.directoryUrl },
            `the CA no longer knows the saved ACME account ${previous.accountUrl} (it said ${gone.type ?? `HTTP ${gone.status}`}: ${gone.detail || 'no detail'}); registered a new account ${this.account.accountUrl} with the saved key, ordering again`);
          return attempt();
        }
      });
      writeFileAtomic(this.source.privateKeyPath, issued.keyPem, 0o600);
      writeFileAtomic(this.source.certificatePath, issued.chainPem, 0o644);
      const outcome = this.options.store.reloadSource(this.source);
      await this.options.onIssued?.(outcome);
      if (outcome.status === 'refused') throw new Error(`the CA's certificate did not load: ${outcome.error.message}`);
      if (outcome.status === 'missing') throw new Error(`the certificate written to ${this.source.certificatePath} is gone`);
      const leaf = outcome.pair.leaf;
      this.status.consecutiveFailures = 0;
      this.status.lastError = null;
      this.status.lastIssued = new Date();
      this.issued = { serial: leaf.serial, at: this.status.lastIssued.getTime() };
      this.status.orders.ok += 1;
      this.status.renewAt = null;
      this.status.renewBasis = null;
      this.failureTimes = [];
      this.backoffUntil = 0;
      this.ari = null;
      this.pendingForce = null;
      log.info({ event: 'acme_certificate_issued', names, serial: leaf.serial, previous_serial: replacing, not_before: leaf.notBefore.toISOString(), not_after: leaf.notAfter.toISOString(), file: this.source.certificatePath },
        `obtained a certificate for ${names.join(', ')} (serial ${leaf.serial}), valid until ${leaf.notAfter.toISOString()}; serving it now`);
      if (config.acme.deployHook) {
        void runDeployHook({ command: config.acme.deployHook, names, certificatePath: this.source.certificatePath, privateKeyPath: this.source.privateKeyPath, log });
      }
      this.status.state = 'idle';
      this.schedule(0);
      return { outcome: 'issued', names, serial: leaf.serial, not_after: leaf.notAfter.toISOString(), message: `obtained a new certificate for ${names.join(', ')} (serial ${leaf.serial}, valid until ${leaf.notAfter.toISOString()}); it is being served` };
    } catch (error) {
      if (this.stopped) {
        // fedtls is shutting down (port 80 is closing under the CA's feet): not the admin's problem.
        log.info({ event: 'acme_order_abandoned', names }, `the order for ${names.join(', ')} was abandoned because fedtls is stopping; it starts again at the next start`);
        this.status.state = 'stopped';
        return { outcome: 'failed', names, error: 'fedtls is stopping', cause: 'shutdown', next_try: new Date().toISOString(), message: 'the order was abandoned because fedtls is stopping' };
      }
      if (forced) this.pendingForce ??= { since: new Date() };
      return this.failed(error, problems, replacing);
    }
  }

  private failed(error: unknown, problems: CaProblem[], replacing: string | null): RenewResult {
    const { config, log } = this.options;
    const names = config.acme.domains;
    const now = Date.now();
    const explanation: FailureExplanation = error instanceof UnknownProfileError
      ? { kind: 'refused', what: error.message, cause: 'set acme.profile to one of the offered profiles, or remove it to get the CA\'s default', retryAfterMs: null, accountGone: false }
      : explainFailure(error, problems, names, config.acme.directoryUrl);
    if (explanation.accountGone) this.forgetAccount();
    if (replacing && problems.some((p) => p.type === 'alreadyReplaced' || (p.type === 'malformed' && /replaces/i.test(p.detail)))) {
      this.replacesRefusedFor = replacing;
    }
    this.failureTimes = [...this.failureTimes.filter((t) => t > now - this.timing.failureWindowMs), now];
    this.status.consecutiveFailures += 1;
    this.status.orders.failed += 1;
    const serving = this.options.store.get(this.source.id)?.pair.leaf ?? null;
    const decision = retryDelay({ consecutiveFailures: this.status.consecutiveFailures, failureTimes: this.failureTimes, retryAfterMs: explanation.retryAfterMs, notAfter: serving?.notAfter ?? null, now }, this.timing);
    if (explanation.retryAfterMs !== null) this.retryAfterUntil = Math.max(this.retryAfterUntil, now + explanation.retryAfterMs);
    this.backoffUntil = now + decision.delayMs;
    const nextTry = new Date(this.backoffUntil);
    this.status.lastError = { message: explanation.what, cause: explanation.cause, at: new Date(now) };
    this.status.state = 'waiting_retry';
    const why = decision.reason === 'retry_after' ? ', as the CA asked' : decision.reason === 'attempt_limit' ? `, because of ${this.timing.maxFailuresPerWindow} failed attempts within ${secondsText(this.timing.failureWindowMs)}` : '';
    const servingText = serving ? `still serving the current certificate (serial ${serving.serial}, valid until ${serving.notAfter.toISOString()})` : 'no certificate is served for these names yet';
    log.error({
      event: 'acme_order_failed', names, kind: explanation.kind, error: explanation.what, cause: explanation.cause,
      attempt: this.status.consecutiveFailures, retry_in: secondsText(decision.delayMs), next_try_at: nextTry.toISOString(), retry_reason: decision.reason,
      retry_after: explanation.retryAfterMs === null ? undefined : secondsText(explanation.retryAfterMs),
      still_serving: serving?.serial ?? null, serving_until: serving?.notAfter.toISOString() ?? null,
    }, `could not obtain a certificate for ${names.join(', ')}: ${explanation.what}. Likely cause: ${explanation.cause}. Next try in ${secondsText(decision.delayMs)} (at ${nextTry.toISOString()}${why}); ${servingText}`);
    this.schedule(decision.delayMs);
    const again = this.pendingForce ? 'orders again' : 'tries again';
    return { outcome: 'failed', names, error: explanation.what, cause: explanation.cause, next_try: nextTry.toISOString(), message: `renewal failed: ${explanation.what}. Likely cause: ${explanation.cause}. The daemon ${again} at ${nextTry.toISOString()}` };
  }

  /** The CA lost the account: drop the saved URL (keep the key) so that the account is registered again. */
  private forgetAccount(options: { quiet?: boolean } = {}): void {
    this.account = null;
    const files = accountFiles(this.options.config.stateDir, this.options.config.acme.directoryUrl);
    if (existsSync(files.infoPath)) rmSync(files.infoPath, { force: true });
    if (!options.quiet) this.options.log.warn({ event: 'acme_account_forgotten', file: files.infoPath }, 'the CA no longer knows the saved ACME account; a new one will be registered on the next try');
  }
}
