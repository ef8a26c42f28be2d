// When validation fails and when the CA wants more from the account: real Pebble (with
// authorization reuse off, so every order is validated), the real ACME parts of fedtls, and
// a pass-through stand-in that records every request sent to the CA.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import path from 'node:path';
import { startTestPebble, type PebbleFixture } from './helpers/pebble.js';
import { startAcmeStandin, type AcmeStandin } from './helpers/acme-standin.js';
import { captureLog, startAcmeHarness, type AcmeHarness } from './helpers/acme-harness.js';
import { tempDir } from './helpers/daemon.js';
import { openAccount } from '../src/acme/client.js';
import { withProblemRecording, type CaProblem } from '../src/acme/ca-problems.js';
import { explainFailure } from '../src/acme/explain.js';
import { buildConfig } from '../src/config/load.js';

const GOOD = 'good.fedtls.test';
const BAD = 'bad.fedtls.test';

function get(port: number, target: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: target, headers: { Host: GOOD } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

async function pointNameAt(pebble: PebbleFixture, host: string, address: string): Promise<void> {
  const response = await fetch(`${pebble.challtestManagementUrl}/add-a`, { method: 'POST', body: JSON.stringify({ host, addresses: [address] }) });
  expect(response.status).toBe(200);
}

/** Back to challtestsrv's default answer (127.0.0.1): add-a adds to what a name had, clear-a drops it. */
async function unpointName(pebble: PebbleFixture, host: string): Promise<void> {
  const response = await fetch(`${pebble.challtestManagementUrl}/clear-a`, { method: 'POST', body: JSON.stringify({ host }) });
  expect(response.status).toBe(200);
}

describe('ACME failures', () => {
  let pebble: PebbleFixture;
  let standin: AcmeStandin;
  let harness: AcmeHarness | null = null;

  beforeAll(async () => {
    pebble = await startTestPebble({ env: { PEBBLE_AUTHZREUSE: '0' } });
    standin = await startAcmeStandin(pebble);
  });
  afterEach(async () => { await harness?.close(); harness = null; });
  afterAll(async () => {
    await standin?.close();
    await pebble?.stop();
  });

  it('A10/A5: one name of two fails validation: no challenge left behind, nothing sent after the failure, the cause named, the old certificate kept', async () => {
    harness = await startAcmeHarness({ directoryUrl: standin.directoryUrl, caBundlePath: pebble.caBundlePath, challengePort: pebble.httpPort, domains: [GOOD, BAD], timing: { retryBaseMs: 60_000 } });
    const first = await harness.manager.renew(false);
    expect(first.outcome).toBe('issued');
    const served = harness.store.get(harness.manager.source.id)!.pair.leaf.serial;

    // DNS for BAD now points at an address where nothing listens on port 80.
    await pointNameAt(pebble, BAD, '127.0.0.2');
    const readyBefore = harness.lines.filter((l) => l.event === 'acme_challenge_ready').length;
    const result = await harness.manager.renew(true);
    const failedAt = Date.now();
    expect(result.outcome).toBe('failed');

    expect(harness.challenges.size).toBe(0);
    const ready = harness.lines.filter((l) => l.event === 'acme_challenge_ready').slice(readyBefore);
    // (Pebble may still reuse GOOD's valid authorization now and then; BAD is always validated.)
    expect(ready.filter((l) => l.name === BAD)).toHaveLength(1);
    const tokens = ready.map((l) => String(l.path));
    for (const token of tokens) expect((await get(harness.challengePort, token)).status).toBe(404);

    const failure = harness.lines.find((l) => l.event === 'acme_order_failed')!;
    expect(failure).toMatchObject({ kind: 'validation', still_serving: served, retry_reason: 'backoff' });
    expect(String(failure.error)).toContain(BAD);
    expect(String(failure.error)).not.toContain(`${GOOD} (`);
    expect(String(failure.cause)).toContain(`could not connect to port 80 of ${BAD}`);
    expect(String(failure.msg)).toMatch(/Next try in \d+[smh] \(at .*still serving the current certificate/);
    expect(harness.store.get(harness.manager.source.id)!.pair.leaf.serial).toBe(served);

    // Nothing is sent to the CA once the failure is known (the next try is a minute away).
    await new Promise((r) => setTimeout(r, 1500));
    const logged = Date.parse(String(failure.time));
    expect(standin.requests.filter((r) => r.at > Math.max(logged, failedAt))).toEqual([]);
    await unpointName(pebble, BAD);
  });

  it('a failed renew --force is retried as forced at the time its answer names: the daemon orders then, instead of finding the certificate not due', async () => {
    const NAME = 'forced.fedtls.test';
    harness = await startAcmeHarness({ directoryUrl: pebble.directoryUrl, caBundlePath: pebble.caBundlePath, challengePort: pebble.httpPort, domains: [NAME], timing: { retryBaseMs: 1500 } });
    const first = await harness.manager.renew(false);
    expect(first.outcome).toBe('issued');
    const firstSerial = harness.store.get(harness.manager.source.id)!.pair.leaf.serial;

    await pointNameAt(pebble, NAME, '127.0.0.2');
    const failed = await harness.manager.renew(true);
    expect(failed.outcome).toBe('failed');
    if (failed.outcome !== 'failed') return;
    expect(failed.message).toContain(`The daemon orders again at ${failed.next_try}`);
    const failedAtLine = harness.lines.length;
    await unpointName(pebble, NAME);

    // At next_try the daemon orders by itself (the served certificate is years from due).
    const issued = await harness.waitFor((l) => l.event === 'acme_certificate_issued' && l.serial !== firstSerial, 30_000, 'the retried forced renewal');
    const since = harness.lines.slice(failedAtLine);
    const start = since.find((l) => l.event === 'acme_order_start')!;
    expect(String(start.reason)).toMatch(/^retrying the renewal the admin forced at /);
    expect(Date.parse(String(start.time))).toBeGreaterThanOrEqual(Date.parse(failed.next_try) - 5);
    expect(since.slice(0, since.indexOf(issued)).filter((l) => l.event === 'acme_not_due')).toEqual([]);
    expect(harness.store.get(harness.manager.source.id)!.pair.leaf.serial).toBe(issued.serial);

    // Done: the force is not remembered beyond its success.
    expect((await harness.manager.renew(false)).outcome).toBe('not_due');
    expect(harness.lines.filter((l) => l.event === 'acme_order_start').length).toBe(3);
  });

  it('EAB: a CA that requires External Account Binding is explained; with kid and hmac_key the account is created', async () => {
    const hmacKey = Buffer.from('a 32-byte secret for EAB tests!!').toString('base64url');
    const eabPebble = await startTestPebble({ eabKeys: { 'kid-1': hmacKey } });
    try {
      const dir = tempDir();
      const base = { server_name: GOOD, state_dir: path.join(dir, 'state') };
      const without = buildConfig({ ...base, acme: { url: eabPebble.directoryUrl, ca_bundle: eabPebble.caBundlePath } }, path.join(dir, 'a.yaml'));
      const { log } = captureLog();
      const problems: CaProblem[] = [];
      const error = await withProblemRecording(problems, () => openAccount(without.stateDir, without.acme, log)).catch((e: unknown) => e);
      const explained = explainFailure(error, problems, [GOOD], without.acme.directoryUrl);
      expect(explained.kind).toBe('account');
      expect(explained.cause).toContain('acme.eab.kid and acme.eab.hmac_key');

      const withEab = buildConfig({ ...base, acme: { url: eabPebble.directoryUrl, ca_bundle: eabPebble.caBundlePath, eab: { kid: 'kid-1', hmac_key: hmacKey } } }, path.join(dir, 'b.yaml'));
      const account = await openAccount(withEab.stateDir, withEab.acme, log);
      expect(account.created).toBe(true);
    } finally {
      await eabPebble.stop();
    }
  });
});
