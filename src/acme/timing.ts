// When to check, when to renew and when to retry — pure functions, no clocks or timers of
// their own (callers pass `now`). Promises: a retry is never earlier than the CA's
// Retry-After; backoff is exponential with a cap; failed attempts are bounded per hour;
// checks follow the certificate's lifetime, with jitter so that many servers do not hit the
// CA at the same second; a new certificate is never due again within a tenth of its lifetime
// (a too-long acme.renew_before falls back to the default rule, and a floor catches the rest).

export interface AcmeTiming {
  /** First retry after a failure. */
  retryBaseMs: number;
  /** Longest wait between retries. */
  retryCapMs: number;
  /** At most this many failed orders per `failureWindowMs` (Let's Encrypt: 5 failed validations per name per hour). */
  maxFailuresPerWindow: number;
  failureWindowMs: number;
  /** Bounds of the routine check interval (a fraction of the certificate lifetime in between). */
  minCheckIntervalMs: number;
  maxCheckIntervalMs: number;
  /** Bounds on how soon/late to ask the CA's renewalInfo (ARI) again, whatever its Retry-After. */
  ariMinRecheckMs: number;
  ariMaxRecheckMs: number;
  /** Re-ask renewalInfo this long after a failed ARI request. */
  ariErrorRecheckMs: number;
}

export const DEFAULT_TIMING: AcmeTiming = {
  retryBaseMs: 60_000,
  retryCapMs: 6 * 3_600_000,
  maxFailuresPerWindow: 5,
  failureWindowMs: 3_600_000,
  minCheckIntervalMs: 1000,
  maxCheckIntervalMs: 6 * 3_600_000,
  ariMinRecheckMs: 60_000,
  ariMaxRecheckMs: 24 * 3_600_000,
  ariErrorRecheckMs: 3_600_000,
};

/** Multiplies by a random factor in [1 - spread, 1 + spread]. */
export function jitter(ms: number, spread = 0.1, random = Math.random): number {
  return Math.round(ms * (1 - spread + 2 * spread * random()));
}

/** How often to look at a certificate of this lifetime: 1/24 of it, within bounds, jittered. */
export function checkInterval(lifetimeMs: number, timing: AcmeTiming, random = Math.random): number {
  const base = Math.min(timing.maxCheckIntervalMs, Math.max(timing.minCheckIntervalMs, lifetimeMs / 24));
  return Math.max(timing.minCheckIntervalMs, jitter(base, 0.1, random));
}

/**
 * acme.renew_before is obeyed only while it leaves the certificate in service for at least
 * this share of its lifetime; a longer one (2000d for 5-year certificates, 90d for 90-day
 * ones) would make every new certificate due at once, so the default rule is used instead.
 */
export const MIN_SERVICE_SHARE = 0.1;

export interface LifetimeRenewal {
  renewAt: Date;
  /** 'renew_before': as configured; 'lifetime': one third of the lifetime left. */
  basis: 'renew_before' | 'lifetime';
  /** acme.renew_before was set but is too long for this certificate's lifetime, so 'lifetime' applies. */
  renewBeforeTooLong: boolean;
}

/**
 * The lifetime rule: renew with `renewBeforeMs` left, or with one third of the lifetime left
 * (the default, and the fallback when renew_before would leave less than MIN_SERVICE_SHARE
 * of the lifetime before renewal).
 */
export function lifetimeRenewalTime(notBefore: Date, notAfter: Date, renewBeforeMs: number | null): LifetimeRenewal {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  const byDefault = new Date(notAfter.getTime() - lifetime / 3);
  if (renewBeforeMs === null) return { renewAt: byDefault, basis: 'lifetime', renewBeforeTooLong: false };
  if (renewBeforeMs > lifetime * (1 - MIN_SERVICE_SHARE)) return { renewAt: byDefault, basis: 'lifetime', renewBeforeTooLong: true };
  return { renewAt: new Date(notAfter.getTime() - renewBeforeMs), basis: 'renew_before', renewBeforeTooLong: false };
}

/**
 * The earliest moment the daemon may order again by itself after the served certificate was
 * issued, whatever the config, the clock or the CA's renewal information says: a tenth of the
 * lifetime after issuance for the lifetime rules, `ariMinRecheckMs` for ARI (the CA's explicit
 * word, e.g. after a revocation). `issuedAt` is when this process obtained the certificate
 * (null if it did not): the later of it and notBefore counts, so a local clock that runs ahead
 * of the CA's cannot make a fresh certificate look old. An admin's --force is not bound by it.
 */
export function earliestRoutineOrder(notBefore: Date, notAfter: Date, issuedAt: number | null, basis: 'ari' | 'renew_before' | 'lifetime', timing: AcmeTiming): number {
  const lifetime = Math.max(0, notAfter.getTime() - notBefore.getTime());
  const issued = Math.max(notBefore.getTime(), issuedAt ?? -Infinity);
  return issued + (basis === 'ari' ? timing.ariMinRecheckMs : lifetime * MIN_SERVICE_SHARE);
}

/** A uniformly random moment in [start, end] (RFC 9773 §4.2); `now` if the window is already open past its end. */
export function randomMomentIn(start: Date, end: Date, now: Date, random = Math.random): Date {
  if (end.getTime() <= now.getTime()) return now;
  const from = Math.max(start.getTime(), now.getTime());
  return new Date(from + Math.floor((end.getTime() - from) * random()));
}

/** How long to wait before re-asking renewalInfo, from its Retry-After (clamped). */
export function ariRecheckDelay(retryAfterMs: number | null, timing: AcmeTiming): number {
  const wanted = retryAfterMs ?? 6 * 3_600_000;
  return Math.min(timing.ariMaxRecheckMs, Math.max(timing.ariMinRecheckMs, wanted));
}

export interface RetryInput {
  /** Failures in a row, including the one just seen (1 = first failure). */
  consecutiveFailures: number;
  /** Times of failed attempts (ms since epoch), including the one just seen. */
  failureTimes: number[];
  /** The CA's Retry-After for the failed attempt, if any. */
  retryAfterMs: number | null;
  /** When the served certificate expires, if one is served: retries get more frequent near the end. */
  notAfter: Date | null;
  now: number;
}

export interface RetryDecision {
  delayMs: number;
  /** What decided the delay, for the log. */
  reason: 'backoff' | 'retry_after' | 'attempt_limit';
}

/** The wait before the next attempt after a failure. */
export function retryDelay(input: RetryInput, timing: AcmeTiming, random = Math.random): RetryDecision {
  let cap = timing.retryCapMs;
  if (input.notAfter) {
    // With little lifetime left, do not sleep through most of it: at most 1/8 of what remains.
    cap = Math.max(timing.retryBaseMs, Math.min(cap, (input.notAfter.getTime() - input.now) / 8));
  }
  const exponential = Math.min(cap, timing.retryBaseMs * 2 ** Math.max(0, input.consecutiveFailures - 1));
  // Jitter only upwards, so the wait is never below what the CA asked for.
  let delayMs = jitter(exponential, 0.1, random);
  let reason: RetryDecision['reason'] = 'backoff';
  if (input.retryAfterMs !== null && input.retryAfterMs >= delayMs) {
    delayMs = input.retryAfterMs + Math.round(Math.min(1000, input.retryAfterMs * 0.05) * random());
    reason = 'retry_after';
  }
  const recent = input.failureTimes.filter((t) => t > input.now - timing.failureWindowMs).sort((a, b) => a - b);
  if (recent.length >= timing.maxFailuresPerWindow) {
    const oldestCounted = recent[recent.length - timing.maxFailuresPerWindow]!;
    const allowedAt = oldestCounted + timing.failureWindowMs;
    if (allowedAt - input.now > delayMs) {
      delayMs = allowedAt - input.now;
      reason = 'attempt_limit';
    }
  }
  return { delayMs: Math.max(0, Math.round(delayMs)), reason };
}
