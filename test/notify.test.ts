// systemd notification (Type=notify) against a real AF_UNIX datagram socket, with the daemon
// running unprivileged as under the shipped unit: READY=1 only once the listeners are bound
// and a certificate is served (or its first issuance started); RELOADING=1 with
// MONOTONIC_USEC then READY=1 around SIGHUP; STOPPING=1 on SIGTERM.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { writeManualDaemonConfig } from './helpers/manual-daemon.js';
import { startBackend, type Backend } from './helpers/backend.js';
import { boundPort, runCli, tempDir, writeConfig, type RunningDaemon } from './helpers/daemon.js';
import { freePort } from './helpers/pebble.js';
import { handshake } from './helpers/tls-client.js';
import { startNotifySocket, type NotifySocket } from './helpers/notify-socket.js';
import { shareWithUnprivileged, unprivilegedPrefix } from './helpers/unprivileged.js';

const NAME = 'notify.fedtls.test';
const unprivileged = unprivilegedPrefix();
const prefix = 'prefix' in unprivileged ? unprivileged.prefix : null;
if (!prefix) console.warn(`notify tests skipped: ${'reason' in unprivileged ? unprivileged.reason : ''}`);

describe.skipIf(!prefix)('systemd notify protocol (unprivileged daemon, real datagram socket)', () => {
  let backend: Backend;
  const cleanups: (() => unknown)[] = [];

  beforeAll(async () => {
    backend = await startBackend();
  });
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    await backend?.close();
  });

  /** `writeConfigIn` writes the config into the folder (its state_dir is `state` inside) and returns its path. */
  async function start(writeConfigIn: (dir: string, stateDir: string) => Promise<string>): Promise<{ daemon: RunningDaemon; notify: NotifySocket }> {
    const dir = tempDir();
    const stateDir = path.join(dir, 'state');
    shareWithUnprivileged(dir, stateDir);
    const notify = await startNotifySocket(dir);
    cleanups.push(() => notify.close());
    const config = await writeConfigIn(dir, stateDir);
    const daemon = runCli(['run', '--config', config], { NOTIFY_SOCKET: notify.path }, prefix!);
    cleanups.push(() => daemon.stop());
    return { daemon, notify };
  }

  it('READY=1 after the listeners are bound and the certificate is served; RELOADING/READY around SIGHUP; STOPPING=1 on SIGTERM', async () => {
    const { daemon, notify } = await start(async (dir) => (await writeManualDaemonConfig(dir, NAME, backend.url)).configFile);

    const ready = await notify.waitFor((m) => m.READY === '1', 'READY=1');
    const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${daemon.child.pid}/status`, 'utf8'))![1];
    expect(uid).not.toBe('0');
    // By the time systemd hears READY=1, both listeners have said so and 8448 serves TLS.
    expect(daemon.logs.filter((l) => l.event === 'listening').map((l) => l.listener)).toEqual(['http', 'federation']);
    expect(ready.STATUS).toContain(`serving ${NAME}`);
    const served = await handshake({ port: boundPort(daemon, 'federation'), servername: NAME });
    expect(served.names).toContain(NAME);
    expect(daemon.logs.some((l) => l.event === 'notify_failed')).toBe(false);

    const beforeReload = process.hrtime.bigint() / 1000n;
    daemon.signal('SIGHUP');
    const reloading = await notify.waitFor((m) => m.RELOADING === '1', 'RELOADING=1');
    const afterReload = process.hrtime.bigint() / 1000n;
    // MONOTONIC_USEC is CLOCK_MONOTONIC in µs, the same clock this process reads.
    const monotonic = BigInt(reloading.MONOTONIC_USEC!);
    expect(monotonic >= beforeReload && monotonic <= afterReload).toBe(true);
    await notify.waitFor((m) => m.READY === '1' && notify.messages.indexOf(m) > notify.messages.indexOf(reloading), 'READY=1 after the reload');

    daemon.signal('SIGTERM');
    await notify.waitFor((m) => m.STOPPING === '1', 'STOPPING=1');
    expect(await daemon.exited).toBe(0);
    expect(notify.messages.map((m) => Object.keys(m).filter((k) => k !== 'STATUS' && k !== 'MONOTONIC_USEC').join('+'))).toEqual(['READY', 'RELOADING', 'READY', 'STOPPING']);
  });

  it('READY=1 when no certificate exists yet but its first issuance has started', async () => {
    const { daemon, notify } = await start(async (dir, stateDir) => writeConfig(dir, {
      server_name: NAME, backend: backend.url, state_dir: stateDir,
      listen: { http: ["127.0.0.1:0"], federation: ["127.0.0.1:0"] },
      // A CA that is not there: the order starts (and fails, retried later); start-up must not wait for it.
      acme: { enabled: true, url: `http://127.0.0.1:${await freePort()}/directory` },
    }));
    const ready = await notify.waitFor((m) => m.READY === '1', 'READY=1');
    expect(ready.STATUS).toContain('obtaining the first certificate');
    // The log tells a first-time admin what happens next.
    const next = await daemon.waitForLog((l) => l.event === 'waiting_for_certificate', 30_000, 'waiting_for_certificate');
    expect(next.msg).toContain(`the CA will connect to http://${NAME}/.well-known/acme-challenge/… (port 80 of this machine`);
    await daemon.waitForLog((l) => l.event === 'acme_order_start', 30_000, 'acme_order_start');
  });
});
