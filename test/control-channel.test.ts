// The control channel: the daemon's owner-only socket in state_dir, the CLI talking to it
// (`fedtls renew`), and the CLI's message when no daemon is running.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startTestPebble, writePebbleDaemonConfig, type PebbleFixture } from './helpers/pebble.js';
import { startBackend, type Backend } from './helpers/backend.js';
import { runCli, startDaemon, tempDir, boundPort, type RunningDaemon } from './helpers/daemon.js';
import { handshake, serialOf } from './helpers/tls-client.js';
import { callDaemon, DaemonUnreachableError } from '../src/ops/control-client.js';

const NAME = 'control.fedtls.test';

async function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const run = runCli(args);
  const code = await run.exited;
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

describe('control channel', () => {
  let pebble: PebbleFixture;
  let backend: Backend;
  let stateDir: string;
  let configFile: string;
  let daemon: RunningDaemon | null = null;

  beforeAll(async () => {
    pebble = await startTestPebble();
    backend = await startBackend();
    ({ configFile, stateDir } = writePebbleDaemonConfig(tempDir(), pebble, NAME, backend.url));
  });

  afterAll(async () => {
    await daemon?.stop();
    await backend?.close();
    await pebble?.stop();
  });

  it('the CLI says clearly when the daemon is not running', async () => {
    const result = await cli(['renew', '--config', configFile]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('is fedtls running?');
    expect(result.stderr).toContain(path.join(stateDir, 'control.sock'));
    await expect(callDaemon(path.join(stateDir, 'control.sock'), 'ping')).rejects.toBeInstanceOf(DaemonUnreachableError);
  });

  it('the socket is owner-only in state_dir; renew --force via the CLI swaps in a new certificate', async () => {
    daemon = await startDaemon(configFile);
    const first = await daemon.waitForLog((l) => l.event === 'acme_certificate_issued', 45_000, 'first certificate');
    const socket = path.join(stateDir, 'control.sock');
    expect(statSync(socket).isSocket()).toBe(true);
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    const ping = await callDaemon(socket, 'ping') as { commands: string[] };
    expect(ping.commands).toContain('renew');

    const notDue = await cli(['renew', '--config', configFile]);
    expect(notDue.code).toBe(0);
    expect(notDue.stdout).toContain('not due');

    const wrongName = await cli(['renew', 'other.example', '--config', configFile]);
    expect(wrongName.code).toBe(1);
    expect(wrongName.stderr).toContain('other.example is not on the ACME certificate');

    const forced = await cli(['renew', NAME, '--force', '--json', '--config', configFile]);
    expect(forced.stderr).toBe('');
    expect(forced.code).toBe(0);
    expect(JSON.parse(forced.stdout)).toMatchObject({ outcome: 'issued' });
    const issued = daemon.logs.filter((l) => l.event === 'acme_certificate_issued');
    expect(issued).toHaveLength(2);
    const served = await handshake({ port: boundPort(daemon, 'federation'), servername: NAME });
    expect(serialOf(served.serial)).toBe(serialOf(issued[1]!.serial));
    expect(served.serial).not.toBe(String(first.serial));

    // --dry-run: a certificate from the test directory, thrown away; nothing served changes.
    const certFile = path.join(stateDir, 'certificates', NAME, 'fullchain.pem');
    const before = readFileSync(certFile, 'utf8');
    const dry = await cli(['renew', '--dry-run', '--json', '--config', configFile]);
    expect(dry.stderr).toBe('');
    const dryResult = JSON.parse(dry.stdout) as { outcome: string; serial: string };
    expect(dryResult.outcome).toBe('dry_run_ok');
    expect(dryResult.serial).not.toBe(String(issued[1]!.serial));
    expect(readFileSync(certFile, 'utf8')).toBe(before);
    const stillServed = await handshake({ port: boundPort(daemon, 'federation'), servername: NAME });
    expect(stillServed.serial).toBe(served.serial);
    expect(daemon.logs.filter((l) => l.event === 'acme_certificate_issued')).toHaveLength(2);
    expect(readdirSync(os.tmpdir()).filter((f) => f.startsWith('fedtls-dry-run-'))).toEqual([]);

    const unknown = await callDaemon(socket, 'no-such-command').catch((e: Error) => e.message);
    expect(unknown).toContain('has no command "no-such-command"');
  });
});
