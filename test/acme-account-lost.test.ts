// When the CA no longer knows the saved ACME account (a reset CA: here Pebble restarted, which
// keeps no state): fedtls registers a new account with the saved key and orders again within
// the same attempt, says so in one log line, and counts no failure. Real Pebble, the real ACME
// parts of fedtls.

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, statSync } from 'node:fs';
import { startTestPebble, type PebbleFixture } from './helpers/pebble.js';
import { startAcmeHarness, type AcmeHarness } from './helpers/acme-harness.js';
import { accountFiles } from '../src/acme/client.js';

const NAME = 'lost-account.fedtls.test';

describe('the CA forgot the account', () => {
  let pebble: PebbleFixture;
  let harness: AcmeHarness | null = null;

  beforeAll(async () => { pebble = await startTestPebble(); });
  afterEach(async () => { await harness?.close(); harness = null; });
  afterAll(async () => { await pebble?.stop(); });

  it('after the CA was reset, renew --force registers again with the saved key and succeeds in one attempt', async () => {
    harness = await startAcmeHarness({ directoryUrl: pebble.directoryUrl, caBundlePath: pebble.caBundlePath, challengePort: pebble.httpPort, domains: [NAME], timing: { retryBaseMs: 60_000 } });
    expect((await harness.manager.renew(false)).outcome).toBe('issued');
    const files = accountFiles(harness.config.stateDir, harness.config.acme.directoryUrl);
    const keyBefore = readFileSync(files.keyPath, 'utf8');
    const urlBefore = (JSON.parse(readFileSync(files.infoPath, 'utf8')) as { url: string }).url;
    const servedBefore = harness.store.get(harness.manager.source.id)!.pair.leaf.serial;

    await pebble.restart();
    const from = harness.lines.length;
    const result = await harness.manager.renew(true);
    expect(result.outcome, JSON.stringify(result)).toBe('issued');

    const since = harness.lines.slice(from);
    expect(since.filter((l) => l.event === 'acme_order_start')).toHaveLength(1);
    expect(since.filter((l) => l.event === 'acme_order_failed')).toEqual([]);
    const said = since.filter((l) => l.event === 'acme_account_reregistered');
    expect(said).toHaveLength(1);
    expect(said[0]).toMatchObject({ level: 40, previous_account: urlBefore });
    expect(String(said[0]!.msg)).toMatch(/^the CA no longer knows the saved ACME account .* \(it said accountDoesNotExist: .*\); registered a new account .* with the saved key, ordering again$/);
    // One line about it: no separate "forgotten" / "registered" lines.
    expect(since.filter((l) => ['acme_account_forgotten', 'acme_account_registered', 'acme_account_key_created'].includes(String(l.event)))).toEqual([]);

    const status = harness.manager.getStatus();
    expect(status).toMatchObject({ consecutiveFailures: 0, lastError: null, orders: { ok: 2, failed: 0 } });
    expect(harness.store.get(harness.manager.source.id)!.pair.leaf.serial).not.toBe(servedBefore);

    // The new account is saved (the next start reuses it), under the same key, still 0600.
    const saved = JSON.parse(readFileSync(files.infoPath, 'utf8')) as { url: string };
    expect(saved.url).toBe(said[0]!.account);
    expect(saved.url).not.toBe(urlBefore);
    expect(readFileSync(files.keyPath, 'utf8')).toBe(keyBefore);
    expect(statSync(files.keyPath).mode & 0o777).toBe(0o600);
    expect(statSync(files.infoPath).mode & 0o777).toBe(0o600);

    // And it is used from now on: the next order registers nothing.
    const before = harness.lines.length;
    expect((await harness.manager.renew(true)).outcome).toBe('issued');
    expect(harness.lines.slice(before).filter((l) => String(l.event).startsWith('acme_account_'))).toEqual([]);
  });
});
