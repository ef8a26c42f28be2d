// A certificate that cannot be stored must not be ordered: with state_dir/certificates not
// writable by the daemon's user, fedtls says so in one line and never asks the CA (a real
// Pebble would otherwise issue a certificate on every retry, against the CA's limits).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { startTestPebble, type PebbleFixture } from './helpers/pebble.js';
import { runCli, tempDir, writeConfig } from './helpers/daemon.js';
import { shareWithUnprivileged, unprivilegedPrefix } from './helpers/unprivileged.js';

const unprivileged = unprivilegedPrefix();
const cannotTest = 'reason' in unprivileged ? unprivileged.reason : null;
if (cannotTest) console.warn(`state_dir permission test skipped: ${cannotTest}`);

describe.skipIf(cannotTest !== null)('ACME with a certificate folder the daemon cannot write', () => {
  let pebble: PebbleFixture;

  beforeAll(async () => {
    pebble = await startTestPebble();
    chmodSync(pebble.workDir, 0o755);
    chmodSync(pebble.caBundlePath, 0o644);
  });
  afterAll(async () => {
    await pebble?.stop();
  });

  it('logs what to fix and sends no order to the CA', async () => {
    const dir = tempDir();
    const stateDir = path.join(dir, 'state');
    shareWithUnprivileged(dir, stateDir);
    mkdirSync(path.join(stateDir, 'certificates'), { mode: 0o700 }); // made by root, e.g. by a run as root
    const configFile = writeConfig(dir, {
      server_name: 'perm.fedtls.test', workers: 1, state_dir: stateDir,
      listen: { http: [`127.0.0.1:${pebble.httpPort}`], federation: ['127.0.0.1:0'] },
      acme: { url: pebble.directoryUrl, ca_bundle: pebble.caBundlePath },
    });
    const run = runCli(['run', '--config', configFile], {}, 'prefix' in unprivileged ? unprivileged.prefix : []);
    try {
      const line = await run.waitForLog((l) => l.event === 'acme_state_dir_unwritable', 20_000, 'acme_state_dir_unwritable');
      expect(String(line.msg)).toMatch(/^not ordering: fedtls \(running as \S+\) cannot write .*certificates\/perm\.fedtls\.test \(EACCES\); fix the ownership, e.g\. chown -R \S+: .*state, then restart or run fedtls renew$/);
      expect(run.logs.some((l) => l.event === 'acme_order_start')).toBe(false);
      expect(pebble.output()).not.toMatch(/order-plz|Issued certificate/);
    } finally {
      await run.stop();
    }
  });
});
