// ARI (RFC 9773), profiles and the CA's 429/Retry-After, with the real ACME parts of fedtls
// and a real Pebble behind a small stand-in that adds only what Pebble 2.4 lacks.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startTestPebble, freePort, type PebbleFixture } from './helpers/pebble.js';
import { startAcmeStandin, type AcmeStandin } from './helpers/acme-standin.js';
import { startAcmeHarness, type AcmeHarness } from './helpers/acme-harness.js';
import { runCli, tempDir, writeConfig, type LogLine } from './helpers/daemon.js';

const NAME = 'ari.fedtls.test';
const PROFILES = { classic: '90 days', shortlived: 'about 6 days' };
/** Short timings so that minutes-long waits become seconds; the rules are the same. */
const FAST = { retryBaseMs: 500, retryCapMs: 8000, ariMinRecheckMs: 500, ariErrorRecheckMs: 2000, minCheckIntervalMs: 200 };

/** RFC 9773 CertID computed with the openssl command, independently of fedtls. */
function opensslCertId(pemFile: string): string {
  const text = execFileSync('openssl', ['x509', '-in', pemFile, '-noout', '-ext', 'authorityKeyIdentifier', '-serial']).toString();
  const akiHex = /Authority Key Identifier:\s*\n\s*(?:keyid:)?([0-9A-F:]+)/i.exec(text)![1]!.replace(/:/g, '');
  let serialHex = /serial=([0-9A-F]+)/i.exec(text)![1]!;
  if (serialHex.length % 2) serialHex = `0${serialHex}`;
  let serial = Buffer.from(serialHex, 'hex');
  if (serial[0]! & 0x80) serial = Buffer.concat([Buffer.from([0]), serial]);
  return `${Buffer.from(akiHex, 'hex').toString('base64url')}.${serial.toString('base64url')}`;
}

describe('ARI, profiles and Retry-After (stand-in in front of real Pebble)', () => {
  let pebble: PebbleFixture;
  let standin: AcmeStandin;
  let harness: AcmeHarness | null = null;

  beforeAll(async () => {
    pebble = await startTestPebble();
    standin = await startAcmeStandin(pebble);
  });
  afterEach(async () => {
    await harness?.close();
    harness = null;
    standin.newOrderRateLimits = [];
  });
  afterAll(async () => {
    await standin?.close();
    await pebble?.stop();
  });

  it('ARI: renews at a moment inside the suggested window, re-asks after Retry-After, and sends replaces; profile is sent', async () => {
    standin.ari = true;
    standin.profiles = PROFILES;
    const asked: { certId: string; at: number }[] = [];
    let window: { start: Date; end: Date } | null = null;
    standin.renewalInfo = (certId) => {
      asked.push({ certId, at: Date.now() });
      if (certId !== asked[0]!.certId) return { start: new Date(Date.now() + 86_400_000), end: new Date(Date.now() + 2 * 86_400_000) };
      if (asked.length === 1) {
        // First answer: not yet, ask again in 1 s.
        return { start: new Date(Date.now() + 86_400_000), end: new Date(Date.now() + 2 * 86_400_000), retryAfterSeconds: 1 };
      }
      if (!window) window = { start: new Date(Date.now() + 500), end: new Date(Date.now() + 2500) };
      return { ...window, retryAfterSeconds: 3600 };
    };
    harness = await startAcmeHarness({ directoryUrl: standin.directoryUrl, caBundlePath: pebble.caBundlePath, challengePort: pebble.httpPort, domains: [NAME], acme: { profile: 'shortlived' }, timing: FAST });
    harness.manager.start();
    const first = await harness.waitFor((l) => l.event === 'acme_certificate_issued', 30_000, 'first issuance');
    const firstFile = path.join(tempDir(), 'first.pem');
    writeFileSync(firstFile, readFileSync(harness.manager.source.certificatePath));
    const expectedId = opensslCertId(firstFile);

    const second = await harness.waitFor((l) => l.event === 'acme_certificate_issued' && l.serial !== first.serial, 30_000, 'renewal by ARI');
    expect(asked.length).toBeGreaterThanOrEqual(2);
    expect(asked[0]!.certId).toBe(expectedId);
    expect(asked[1]!.certId).toBe(expectedId);
    expect(asked[1]!.at - asked[0]!.at).toBeGreaterThanOrEqual(1000); // not before its Retry-After
    const info = harness.lines.find((l) => l.event === 'acme_renewal_info' && Date.parse(String(l.window_end)) === window!.end.getTime())!;
    const renewAt = Date.parse(String(info.renew_at));
    expect(renewAt).toBeGreaterThanOrEqual(window!.start.getTime());
    expect(renewAt).toBeLessThanOrEqual(window!.end.getTime());
    // (Under heavy load an order may fail and be retried; every order still follows the rules.)
    const orders = standin.newOrders();
    const firstIssuedAt = Date.parse(String(first.time));
    const initial = orders.filter((o) => !o.payload?.replaces);
    const renewals = orders.filter((o) => o.payload?.replaces);
    expect(initial.length).toBeGreaterThanOrEqual(1);
    expect(renewals.length, JSON.stringify(harness.lines.filter((l) => l.event === 'acme_order_failed'))).toBeGreaterThanOrEqual(1);
    for (const order of initial) {
      expect(order.payload).toMatchObject({ profile: 'shortlived' });
      expect(order.at).toBeLessThanOrEqual(firstIssuedAt);
    }
    for (const order of renewals) {
      expect(order.payload).toMatchObject({ profile: 'shortlived', replaces: expectedId });
      expect(order.at).toBeGreaterThanOrEqual(window!.start.getTime());
    }
    expect(second.previous_serial).toBe(first.serial);
    // The new certificate gets its own window, asked for with its own CertID.
    await harness.waitFor((l) => l.event === 'acme_renewal_info' && l.serial === second.serial, 10_000, 'ARI for the new certificate');
  });

  it('ARI that says "renew now" for every new certificate: orders stay at least ariMinRecheckMs apart, with one warning per certificate', async () => {
    standin.ari = true;
    standin.profiles = null;
    standin.renewalInfo = () => ({ start: new Date(Date.now() - 2 * 86_400_000), end: new Date(Date.now() - 86_400_000), retryAfterSeconds: 1 });
    harness = await startAcmeHarness({ directoryUrl: standin.directoryUrl, caBundlePath: pebble.caBundlePath, challengePort: pebble.httpPort, domains: [`floor.${NAME}`], timing: { ...FAST, ariMinRecheckMs: 3000 } });
    harness.manager.start();
    const issuedLines = (): LogLine[] => harness!.lines.filter((l) => l.event === 'acme_certificate_issued');
    await harness.waitFor(() => issuedLines().length >= 3, 40_000, 'three issuances');
    const times = issuedLines().map((l) => Date.parse(String(l.time)));
    // Without the floor each renewal followed the previous issuance within a second.
    for (let i = 1; i < times.length; i += 1) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(3000);
    const held = harness.lines.filter((l) => l.event === 'acme_renewal_held');
    expect(new Set(held.map((l) => l.serial)).size).toBe(held.length); // one warning per certificate
    expect(held.map((l) => l.serial)).toEqual(expect.arrayContaining(issuedLines().slice(0, 2).map((l) => l.serial)));
    expect(String(held[0]!.msg)).toMatch(/would be due again already \(by the CA's renewal information\); fedtls does not order again before/);
  });

  it('profiles: an unknown acme.profile is refused at start, naming the profiles the CA offers', async () => {
    standin.profiles = PROFILES;
    const dir = tempDir();
    const configFile = writeConfig(dir, {
      server_name: NAME, state_dir: path.join(dir, 'state'),
      listen: { http: ["127.0.0.1:0"], federation: ["127.0.0.1:0"] },
      acme: { url: standin.directoryUrl, ca_bundle: pebble.caBundlePath, profile: 'longlived' },
    });
    const run = runCli(['run', '--config', configFile]);
    expect(await run.exited).toBe(1);
    expect(run.stdout()).toContain('acme.profile \\"longlived\\" is not offered');
    expect(run.stdout()).toContain('classic (90 days), shortlived (about 6 days)');
    expect(standin.newOrders().filter((r) => r.at >= Date.now() - 20_000 && r.payload?.profile === 'longlived')).toHaveLength(0);
  });

  it('A5: a 429 with Retry-After is honoured; then exponential backoff; the log line says what failed and when the next try is', async () => {
    standin.ari = false;
    standin.profiles = null;
    const before = standin.newOrders().length;
    standin.newOrderRateLimits = [2, null, null];
    harness = await startAcmeHarness({ directoryUrl: standin.directoryUrl, caBundlePath: pebble.caBundlePath, challengePort: pebble.httpPort, domains: [`a5.${NAME}`], timing: FAST });
    harness.manager.start();
    await harness.waitFor((l) => l.event === 'acme_certificate_issued', 40_000, 'issuance after three refusals');
    const attempts = standin.newOrders().slice(before).map((r) => r.at);
    expect(attempts).toHaveLength(4);
    const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!);
    expect(gaps[0]).toBeGreaterThanOrEqual(2000); // Retry-After: 2, although backoff alone would be 0.5 s
    expect(gaps[1]).toBeGreaterThanOrEqual(900); // 2nd failure: 1 s (±10 %)
    expect(gaps[2]).toBeGreaterThanOrEqual(1800); // 3rd failure: 2 s (±10 %)
    expect(gaps[2]).toBeGreaterThan(gaps[1]!);
    const failures = harness.lines.filter((l) => l.event === 'acme_order_failed');
    expect(failures).toHaveLength(3);
    expect(failures[0]).toMatchObject({ kind: 'rate_limited', retry_reason: 'retry_after', retry_after: '2s', attempt: 1 });
    expect(String(failures[0]!.msg)).toMatch(/rate limit.*Likely cause: rate limit at the CA.*Next try in \ds \(at \d{4}-\d\d-\d\dT/);
    expect(failures[1]).toMatchObject({ retry_reason: 'backoff', attempt: 2 });
  });

  it('A5: a forced renewal while the CA asks to wait is refused, not sent', async () => {
    standin.newOrderRateLimits = [60];
    harness = await startAcmeHarness({ directoryUrl: standin.directoryUrl, caBundlePath: pebble.caBundlePath, challengePort: pebble.httpPort, domains: [`wait.${NAME}`], timing: FAST });
    const before = standin.newOrders().length;
    const refused = await harness.manager.renew(true);
    expect(refused.outcome).toBe('failed');
    const again = await harness.manager.renew(true);
    expect(again.outcome).toBe('waiting');
    expect(again.message).toContain('the CA asked to wait (Retry-After)');
    expect(standin.newOrders().length - before).toBe(1);
  });
});
