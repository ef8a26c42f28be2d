// Start-up as an admin meets it. C1: a listener that cannot bind (port in use, port 80
// without the capability as an unprivileged user, IPv6 absent) gives one line naming the
// address and the fix, a non-zero exit, no "listening" for it and no READY=1. C4: the
// reason is the last line of the output and nothing is lost at exit, even when the reader
// of stdout (journald, docker) is slow.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { startBackend, type Backend } from './helpers/backend.js';
import { CLI, runCli, startDaemon, tempDir, writeConfig, type LogLine } from './helpers/daemon.js';
import { freePort } from './helpers/pebble.js';
import { writeManualDaemonConfig } from './helpers/manual-daemon.js';
import { startNotifySocket } from './helpers/notify-socket.js';
import { runningAsRoot, shareWithUnprivileged, unprivilegedPrefix } from './helpers/unprivileged.js';

const NAME = 'startup.fedtls.test';

function parseLines(output: string): LogLine[] {
  return output.split('\n').filter(Boolean).map((line) => JSON.parse(line) as LogLine);
}

function occupy(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen({ host: '127.0.0.1', port, exclusive: true }, () => resolve(server));
    server.on('error', reject);
  });
}

/** Runs the CLI with its stdout into a pipe that nobody reads for `stallSeconds` (a slow journald or docker log driver). */
function runWithStalledReader(args: string[], stallSeconds: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const script = `"$@" | { sleep ${stallSeconds}; cat; }; exit "\${PIPESTATUS[0]}"`;
  const child = spawn('bash', ['-c', script, 'bash', process.execPath, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

describe('C1: listeners that cannot bind', () => {
  let backend: Backend;
  beforeAll(async () => { backend = await startBackend(); });
  afterAll(async () => { await backend?.close(); });

  for (const role of ['http', 'federation', 'metrics'] as const) {
    it(`C1: ${role} port in use → one line naming the address and the fix, exit 1, not "listening", no READY=1`, async () => {
      const dir = tempDir();
      const port = await freePort();
      const blocker = await occupy(port);
      try {
        const notify = await startNotifySocket(dir);
        const { configFile } = await writeManualDaemonConfig(dir, NAME, backend.url, { listen: { [role]: [`127.0.0.1:${port}`] } });
        const run = runCli(['run', '--config', configFile], { NOTIFY_SOCKET: notify.path });
        expect(await run.exited).toBe(1);
        const last = run.logs.at(-1)!;
        expect(last).toMatchObject({ level: 60, event: 'listen_failed', address: `127.0.0.1:${port}`, code: 'EADDRINUSE' });
        expect(last.msg).toBe(`${role} listener 127.0.0.1:${port}: the port is already in use by another program (find it with "ss -ltnp 'sport = :${port}'"); stop it, or change listen.${role}`);
        expect(run.logs.filter((l) => l.event === 'listening').map((l) => l.listener)).not.toContain(role);
        expect(run.logs.some((l) => l.event === 'ready')).toBe(false);
        // The key file is named (a path is no secret); key material never appears.
        expect(run.logs.find((l) => l.event === 'certificate_added')?.private_key_file).toBe(path.join(dir, 'privkey.pem'));
        expect(run.stdout()).not.toContain('PRIVATE KEY');
        // systemd is told why (STATUS=) and never that we are ready.
        await notify.waitFor((m) => m.STATUS === last.msg, 'STATUS with the reason');
        expect(notify.messages.some((m) => m.READY === '1')).toBe(false);
        notify.close();
        // The listeners that did bind were released.
        for (const line of run.logs.filter((l) => l.event === 'listening')) {
          const bound = Number(String(line.address).split(':').pop());
          await occupy(bound).then((s) => s.close());
        }
      } finally {
        blocker.close();
      }
    });
  }

  const unprivileged = unprivilegedPrefix();
  const portStart = Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8'));
  const cannotTest = 'reason' in unprivileged ? unprivileged.reason : portStart <= 80 ? `net.ipv4.ip_unprivileged_port_start is ${portStart}: anyone may bind port 80 here` : null;
  if (cannotTest) console.warn(`C1 unprivileged port 80 test skipped: ${cannotTest}`);

  const noUnprivilegedUser = 'reason' in unprivileged ? unprivileged.reason : null;

  it.skipIf(noUnprivilegedUser !== null)('a state_dir the daemon cannot create is one line naming the folder and the fix (no stack), exit 1', async () => {
    const dir = tempDir();
    shareWithUnprivileged(dir, path.join(dir, 'unused'));
    const { configFile } = await writeManualDaemonConfig(dir, NAME, backend.url, { state_dir: path.join(dir, 'root-only', 'state') });
    (await import('node:fs')).mkdirSync(path.join(dir, 'root-only'), { mode: 0o755 }); // owned by root: nobody cannot create state/ in it
    const run = runCli(['run', '--config', configFile], {}, 'prefix' in unprivileged ? unprivileged.prefix : []);
    expect(await run.exited).toBe(1);
    const last = run.logs.at(-1)!;
    expect(last).toMatchObject({ level: 60, event: 'state_dir_unusable' });
    expect(String(last.msg)).toMatch(/state_dir: fedtls \(running as \S+\) cannot write .*root-only\/state \(EACCES\); fix the ownership.*install -d -m 0700/);
    expect(last.error).toBeUndefined();
  });

  it('a state_dir that can never be created (under /proc, under a file) fails at once with the path and the fix, from check-config and from run', async () => {
    const dir = tempDir();
    const aFile = path.join(dir, 'a-file');
    (await import('node:fs')).writeFileSync(aFile, 'not a folder\n');
    const cases = [
      // Node's recursive mkdir loops forever here (mkdir /proc: EEXIST, mkdir /proc/x: ENOENT), deaf to signals.
      { stateDir: `/proc/fedtls-test-${process.pid}/state`, message: /cannot create \/proc\/fedtls-test-\d+: its parent folder is on a virtual file system .* choose a path on a disk, e\.g\. \/var\/lib\/fedtls/ },
      { stateDir: path.join(aFile, 'state'), message: new RegExp(`cannot create .*a-file/state: ${aFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is a file, not a folder \\(ENOTDIR\\)`) },
    ];
    for (const { stateDir, message } of cases) {
      const { configFile } = await writeManualDaemonConfig(dir, NAME, backend.url, { state_dir: stateDir });
      const check = runCli(['check-config', '--config', configFile]);
      expect(await check.exited).toBe(1);
      expect(check.stderr()).toMatch(/fedtls would not start: its state_dir cannot be used/);
      expect(check.stderr()).toMatch(message);
      const run = runCli(['run', '--config', configFile]);
      const killer = setTimeout(() => run.child.kill('SIGKILL'), 15_000);
      expect(await run.exited).toBe(1);
      clearTimeout(killer);
      const last = run.logs.at(-1)!;
      expect(last).toMatchObject({ level: 60, event: 'state_dir_unusable' });
      expect(String(last.msg)).toMatch(message);
      expect(String(last.msg)).not.toMatch(/chown|install -d/);
    }
  });

  it.skipIf(cannotTest !== null)('C1: the default port 80 as an unprivileged user → names [::]:80, CAP_NET_BIND_SERVICE and the unit setting, exit 1', async () => {
    const dir = tempDir();
    const stateDir = path.join(dir, 'state');
    shareWithUnprivileged(dir, stateDir);
    // No listen section: the defaults a first-time admin gets ([::]:80 and [::]:8448).
    const { configFile } = await writeManualDaemonConfig(dir, NAME, backend.url);
    const config = readFileSync(configFile, 'utf8').replace(/^listen:\n(  .*\n)+/m, '');
    const file = path.join(dir, 'defaults.yaml');
    (await import('node:fs')).writeFileSync(file, config);
    const run = runCli(['run', '--config', file], {}, 'prefix' in unprivileged ? unprivileged.prefix : []);
    expect(await run.exited).toBe(1);
    const last = run.logs.at(-1)!;
    expect(last).toMatchObject({ level: 60, event: 'listen_failed', address: '[::]:80', code: 'EACCES' });
    expect(last.msg).toMatch(/^http listener \[::\]:80: permission denied; ports below 1024 need CAP_NET_BIND_SERVICE \(the systemd unit grants it with AmbientCapabilities=CAP_NET_BIND_SERVICE; by hand: setcap .*\), or change listen\.http$/);
    expect(run.logs.some((l) => l.event === 'listening')).toBe(false);
  });

  const canUnshare = runningAsRoot && spawnSync('unshare', ['--net', 'ip', 'link', 'set', 'lo', 'up']).status === 0;
  if (!canUnshare) console.warn('C1 no-IPv6 tests skipped: they need root, unshare (util-linux) and ip (iproute2) to make a network namespace without IPv6');

  /** Runs `fedtls run` in a fresh network namespace whose IPv6 is switched off (sysctl disable_ipv6, as admins do). */
  function runWithoutIPv6(configFile: string): ReturnType<typeof runCli> {
    const script = 'ip link set lo up && sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.lo.disable_ipv6=1 && exec "$@"';
    return runCli(['run', '--config', configFile], {}, ['unshare', '--net', 'sh', '-c', script, 'sh']);
  }

  it.skipIf(!canUnshare)('C1: an IPv6 address on a machine without IPv6 → says so and names the IPv4 address to use, exit 1', async () => {
    const { configFile } = await writeManualDaemonConfig(tempDir(), NAME, backend.url, { listen: { federation: ['[::1]:8448'] } });
    const run = runWithoutIPv6(configFile);
    expect(await run.exited).toBe(1);
    expect(run.logs.at(-1)).toMatchObject({ level: 60, event: 'listen_failed', address: '[::1]:8448',
      msg: 'federation listener [::1]:8448: this machine has no IPv6; change listen.federation to an IPv4 address such as "127.0.0.1:8448"' });
  });

  it.skipIf(!canUnshare)('C1: the default [::] listeners still start on a machine without IPv6 and serve IPv4 clients', async () => {
    const dir = tempDir();
    const { configFile } = await writeManualDaemonConfig(dir, NAME, backend.url);
    const config = readFileSync(configFile, 'utf8').replace(/^listen:\n(  .*\n)+/m, '').replace(/^backend: .*$/m, 'backend: http://127.0.0.1:9');
    const file = path.join(dir, 'defaults.yaml');
    (await import('node:fs')).writeFileSync(file, config);
    const run = runWithoutIPv6(file);
    try {
      await run.waitForLog((l) => l.event === 'ready', 30_000, 'ready');
      expect(run.logs.filter((l) => l.event === 'listening').map((l) => l.listener)).toEqual(['http', 'federation']);
      // A client inside that namespace reaches 8448 over IPv4 and gets our certificate.
      const probe = spawnSync('nsenter', [`--net=/proc/${run.child.pid}/ns/net`, 'openssl', 's_client', '-connect', '127.0.0.1:8448', '-servername', NAME], { input: '', encoding: 'utf8', timeout: 20_000 });
      expect(probe.stdout).toContain(`CN = ${NAME}`);
    } finally {
      await run.stop();
    }
  });
});

describe('C4: the last words', () => {
  it('C4: a config with 2000 mistakes: every one is in the output, the line is whole, exit 1 — with a stalled stdout reader', async () => {
    const config: Record<string, unknown> = { server_name: NAME };
    for (let i = 0; i < 2000; i += 1) config[`mistyped_key_${i}`] = i;
    const file = writeConfig(tempDir(), config);
    const result = await runWithStalledReader(['run', '--config', file], 1.5);
    expect(result.code).toBe(1);
    expect(result.stdout.length).toBeGreaterThan(200_000); // more than a pipe buffer holds
    const lines = parseLines(result.stdout);
    const fatal = lines.at(-1)!;
    expect(fatal).toMatchObject({ level: 60, event: 'config_invalid', file });
    const problems = fatal.problems as { key: string; message: string }[];
    expect(problems).toHaveLength(2000);
    expect(problems.at(-1)!.key).toBe('mistyped_key_1999');
    expect(String(fatal.msg)).toContain(file);
  });

  it('C4: a start-up failure with log.format pretty: the reason is the last line, after every line before it', async () => {
    const dir = tempDir();
    const port = await freePort();
    const blocker = await occupy(port);
    try {
      const { configFile } = await writeManualDaemonConfig(dir, NAME, 'http://127.0.0.1:9', { listen: { federation: [`127.0.0.1:${port}`] }, log: { format: 'pretty' } });
      const result = await runWithStalledReader(['run', '--config', configFile], 1.5);
      expect(result.code).toBe(1);
      const lines = result.stdout.trimEnd().split('\n');
      expect(lines.some((l) => /INFO: .*startup\.fedtls\.test.*"event":"certificate_added"/.test(l))).toBe(true);
      expect(lines.some((l) => /INFO.*http listener on 127\.0\.0\.1:\d+/.test(l))).toBe(true);
      expect(lines.at(-1)).toMatch(new RegExp(`FATAL.*federation listener 127\\.0\\.0\\.1:${port}: the port is already in use`));
    } finally {
      blocker.close();
    }
  });

  it('C4: a config file that cannot be read or parsed: file, line and what to do, exit 1', async () => {
    const dir = tempDir();
    const missing = path.join(dir, 'nope.yaml');
    const gone = runCli(['run', '--config', missing]);
    expect(await gone.exited).toBe(1);
    expect(gone.logs.at(-1)).toMatchObject({ level: 60, event: 'config_invalid', file: missing });
    expect(String(gone.logs.at(-1)!.msg)).toMatch(/no such file \(copy config\/fedtls\.example\.yaml there and edit it\)/);

    const broken = path.join(dir, 'broken.yaml');
    (await import('node:fs')).writeFileSync(broken, 'server_name: example.org\nlisten:\n  http: [unclosed\n');
    const bad = runCli(['run', '--config', broken]);
    expect(await bad.exited).toBe(1);
    expect(String(bad.logs.at(-1)!.msg)).toMatch(/line \d+, column \d+: not valid YAML/);
  });
});

describe('starting twice', () => {
  it('a second fedtls with the same state_dir says one is already running, and exits 1', async () => {
    const backend = await startBackend();
    const { configFile } = await writeManualDaemonConfig(tempDir(), 'twice.fedtls.test', backend.url, { workers: 1 });
    const first = await startDaemon(configFile);
    try {
      const second = runCli(['run', '--config', configFile]);
      expect(await second.exited).toBe(1);
      expect(second.stdout()).toMatch(/another fedtls is already running with control socket .*control\.sock; stop it first/);
      expect(first.child.exitCode).toBeNull();
    } finally {
      await first.stop();
      await backend.close();
    }
  });
});
