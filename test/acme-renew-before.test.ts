// acme.renew_before longer than the certificate's lifetime (2000d against Pebble's 5-year
// certificates, like 90d against Let's Encrypt's 90-day ones) made every new certificate due
// at once: the daemon ordered certificate after certificate. Now it issues once, warns once
// that renew_before is too long, and plans the renewal at one third of the lifetime left.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTestPebble, writePebbleDaemonConfig, type PebbleFixture } from './helpers/pebble.js';
import { startBackend, type Backend } from './helpers/backend.js';
import { runCli, startDaemon, tempDir, type RunningDaemon } from './helpers/daemon.js';

const NAME = 'too-long.fedtls.test';

describe('acme.renew_before too long for the lifetime (real daemon, Pebble with its default 5-year certificates)', () => {
  let pebble: PebbleFixture;
  let backend: Backend;
  let daemon: RunningDaemon | null = null;

  beforeAll(async () => {
    pebble = await startTestPebble();
    backend = await startBackend();
  });
  afterAll(async () => {
    await daemon?.stop();
    await backend?.close();
    await pebble?.stop();
  });

  it('issues once, logs one warning naming acme.renew_before and what is used instead, then waits', async () => {
    const { configFile } = writePebbleDaemonConfig(tempDir(), pebble, NAME, backend.url, { acme: { renew_before: '2000d' } });
    daemon = await startDaemon(configFile);
    const issued = await daemon.waitForLog((l) => l.event === 'acme_certificate_issued', 45_000, 'the first certificate');
    // Before the fix, the next order started within a second of each issuance (304 in 80 s).
    await sleep(6000);
    expect(daemon.logs.filter((l) => l.event === 'acme_order_start')).toHaveLength(1);
    expect(daemon.logs.filter((l) => l.event === 'acme_certificate_issued')).toHaveLength(1);

    const warnings = daemon.logs.filter((l) => l.event === 'acme_renew_before_too_long');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40, serial: issued.serial, renew_before: '2000d', lifetime: '1826d' });
    expect(String(warnings[0]!.msg)).toMatch(/acme\.renew_before \(2000d\) is too long for this certificate's lifetime \(1826d/);
    expect(String(warnings[0]!.msg)).toMatch(/renew when one third of the lifetime is left \(609d before expiry/);

    // What the daemon plans, as `fedtls status --json` shows it: one third of the lifetime left.
    const status = runCli(['status', '--config', configFile, '--json']);
    expect(await status.exited).toBe(0);
    const report = JSON.parse(status.stdout()) as { certificates: { kind: string; not_after: string; renew_at: string | null }[] };
    const acme = report.certificates.find((c) => c.kind === 'acme')!;
    const notAfter = Date.parse(acme.not_after);
    const notBefore = Date.parse(String(issued.not_before));
    expect(Date.parse(acme.renew_at!)).toBeCloseTo(notAfter - (notAfter - notBefore) / 3, -4);
    // Still one warning: status asked again about the same certificate.
    expect(daemon.logs.filter((l) => l.event === 'acme_renew_before_too_long')).toHaveLength(1);
  });
});
