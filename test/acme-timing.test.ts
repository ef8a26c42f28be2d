// The timing rules of renewal and retries (pure functions), including what happens over an
// hour of CA downtime, and the ARI CertID of a real certificate.

import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_TIMING, checkInterval, earliestRoutineOrder, lifetimeRenewalTime, randomMomentIn, retryDelay } from '../src/acme/timing.js';
import { ariCertId } from '../src/acme/directory.js';
import { createAuthority, issueLeaf } from './helpers/certs.js';
import { tempDir } from './helpers/daemon.js';

const MINUTE = 60_000;
const DAY = 86_400_000;

/** Failure times of a CA that is down from t=0 for `downMs`, following retryDelay. */
function simulateOutage(downMs: number, random: () => number): number[] {
  const failures: number[] = [];
  let now = 0;
  while (now < downMs) {
    failures.push(now);
    const { delayMs } = retryDelay({ consecutiveFailures: failures.length, failureTimes: failures, retryAfterMs: null, notAfter: new Date(20 * DAY), now }, DEFAULT_TIMING, random);
    now += delayMs;
  }
  return failures;
}

describe('renewal and retry timing', () => {
  it('A5: never earlier than Retry-After, whatever the jitter', () => {
    for (const r of [0, 0.3, 0.999]) {
      for (const failures of [1, 2, 5]) {
        const decision = retryDelay({ consecutiveFailures: failures, failureTimes: [0], retryAfterMs: 120_000, notAfter: null, now: 0 }, DEFAULT_TIMING, () => r);
        expect(decision.delayMs).toBeGreaterThanOrEqual(120_000);
      }
    }
  });

  it('A5: exponential backoff from one minute, capped at 6 h (and at an eighth of the remaining lifetime)', () => {
    const delays = [1, 2, 3, 4, 12].map((n) => retryDelay({ consecutiveFailures: n, failureTimes: [], retryAfterMs: null, notAfter: null, now: 0 }, DEFAULT_TIMING, () => 0.5).delayMs);
    expect(delays).toEqual([MINUTE, 2 * MINUTE, 4 * MINUTE, 8 * MINUTE, 6 * 60 * MINUTE]);
    const nearExpiry = retryDelay({ consecutiveFailures: 12, failureTimes: [], retryAfterMs: null, notAfter: new Date(8 * 60 * MINUTE), now: 0 }, DEFAULT_TIMING, () => 0.5);
    expect(nearExpiry.delayMs).toBe(60 * MINUTE);
  });

  it('A5/C3: a CA down for an hour gets at most 5 attempts in that hour, at about 0, 1, 3, 7 and 15 minutes', () => {
    const failures = simulateOutage(60 * MINUTE, () => 0.5);
    expect(failures.map((t) => t / MINUTE)).toEqual([0, 1, 3, 7, 15]);
    const longer = simulateOutage(6 * 60 * MINUTE, Math.random);
    for (const t of longer) expect(longer.filter((u) => u > t - 60 * MINUTE && u <= t).length).toBeLessThanOrEqual(5);
  });

  it('the check interval follows the lifetime: a 60 s certificate every ~2.5 s, a 90-day one every ~6 h, jittered', () => {
    expect(checkInterval(60_000, DEFAULT_TIMING, () => 0.5)).toBe(2500);
    expect(checkInterval(90 * DAY, DEFAULT_TIMING, () => 0.5)).toBe(6 * 60 * MINUTE);
    const samples = Array.from({ length: 50 }, () => checkInterval(6 * DAY, DEFAULT_TIMING));
    expect(new Set(samples).size).toBeGreaterThan(1);
    for (const s of samples) expect(s).toBeGreaterThanOrEqual(0.9 * 6 * 60 * MINUTE);
  });

  it('renewal time: one third of the lifetime left by default, or acme.renew_before', () => {
    const notBefore = new Date(0);
    const notAfter = new Date(90 * DAY);
    expect(lifetimeRenewalTime(notBefore, notAfter, null)).toEqual({ renewAt: new Date(60 * DAY), basis: 'lifetime', renewBeforeTooLong: false });
    expect(lifetimeRenewalTime(notBefore, notAfter, 30 * DAY)).toEqual({ renewAt: new Date(60 * DAY), basis: 'renew_before', renewBeforeTooLong: false });
    expect(lifetimeRenewalTime(notBefore, notAfter, 10 * DAY).renewAt.getTime()).toBe(80 * DAY);
    // The Pebble suites: 60 s certificates, renew_before 45s → renewal 15 s after issuance.
    expect(lifetimeRenewalTime(new Date(0), new Date(60_000), 45_000)).toMatchObject({ renewAt: new Date(15_000), basis: 'renew_before' });
  });

  it('a renew_before that would make a new certificate due within its first tenth (or at once) falls back to one third of the lifetime', () => {
    const notBefore = new Date(0);
    const letsEncrypt = new Date(90 * DAY - 1000); // Let's Encrypt: 90 days minus a second
    const pebble = new Date(1826 * DAY); // Pebble's default: 5 years
    for (const [notAfter, renewBefore] of [[letsEncrypt, 90 * DAY], [letsEncrypt, 85 * DAY], [pebble, 2000 * DAY], [pebble, 1826 * DAY]] as const) {
      const rule = lifetimeRenewalTime(notBefore, notAfter, renewBefore);
      expect(rule).toEqual({ renewAt: new Date(notAfter.getTime() - notAfter.getTime() / 3), basis: 'lifetime', renewBeforeTooLong: true });
    }
    // Up to 90 % of the lifetime is still obeyed as written.
    expect(lifetimeRenewalTime(notBefore, new Date(90 * DAY), 81 * DAY)).toEqual({ renewAt: new Date(9 * DAY), basis: 'renew_before', renewBeforeTooLong: false });
  });

  it('after an issuance, no routine order for a tenth of the lifetime (a minute under ARI), counted from the later of notBefore and the local issuance', () => {
    const notBefore = new Date(0);
    const notAfter = new Date(90 * DAY);
    expect(earliestRoutineOrder(notBefore, notAfter, null, 'lifetime', DEFAULT_TIMING)).toBe(9 * DAY);
    expect(earliestRoutineOrder(notBefore, notAfter, null, 'renew_before', DEFAULT_TIMING)).toBe(9 * DAY);
    expect(earliestRoutineOrder(notBefore, notAfter, null, 'ari', DEFAULT_TIMING)).toBe(MINUTE);
    // A local clock 60 days ahead of the CA's: the certificate looks 60 days old when it arrives.
    expect(earliestRoutineOrder(notBefore, notAfter, 60 * DAY, 'lifetime', DEFAULT_TIMING)).toBe(69 * DAY);
    // 60 s test certificates: 6 s, well before renew_before 45s (15 s).
    expect(earliestRoutineOrder(new Date(0), new Date(60_000), null, 'renew_before', DEFAULT_TIMING)).toBe(6000);
  });

  it('ARI: the moment chosen is inside the window (or now, if the window has passed)', () => {
    const start = new Date(10_000);
    const end = new Date(20_000);
    for (const r of [0, 0.5, 0.9999]) {
      const chosen = randomMomentIn(start, end, new Date(0), () => r).getTime();
      expect(chosen).toBeGreaterThanOrEqual(10_000);
      expect(chosen).toBeLessThanOrEqual(20_000);
    }
    expect(randomMomentIn(start, end, new Date(30_000)).getTime()).toBe(30_000);
  });

  it('ARI CertID matches RFC 9773 (AKI and serial DER bytes, base64url), checked against openssl', () => {
    const authority = createAuthority('ARI');
    for (let i = 0; i < 8; i += 1) { // random serials: about half have the high bit set (DER adds a 00 byte)
      const leaf = issueLeaf(authority, { names: ['ari.fedtls.test'] });
      const file = path.join(tempDir(), 'leaf.pem');
      writeFileSync(file, leaf.certPem);
      const text = execFileSync('openssl', ['x509', '-in', file, '-noout', '-ext', 'authorityKeyIdentifier']).toString();
      const aki = Buffer.from(/([0-9A-F]{2}(?::[0-9A-F]{2})+)/i.exec(text)![1]!.replace(/:/g, ''), 'hex');
      const serialHex = execFileSync('openssl', ['x509', '-in', file, '-noout', '-serial']).toString().trim().split('=')[1]!;
      let serial = Buffer.from(serialHex.length % 2 ? `0${serialHex}` : serialHex, 'hex');
      if (serial[0]! & 0x80) serial = Buffer.concat([Buffer.from([0]), serial]);
      expect(ariCertId(readFileSync(file, 'utf8'))).toBe(`${aki.toString('base64url')}.${serial.toString('base64url')}`);
    }
  });
});
