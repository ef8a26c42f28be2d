// Runs the real fedtls CLI (dist/cli.js, built by `npm test`) as a child process with a
// config written for the test, and reads its JSON log lines as they come.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';

export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/cli.js');

export type LogLine = Record<string, unknown> & { msg?: string; event?: string; level?: number };

export function tempDir(prefix = 'fedtls-test-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function writeConfig(dir: string, config: Record<string, unknown>, name = 'fedtls.yaml'): string {
  const file = path.join(dir, name);
  writeFileSync(file, yaml.dump(config));
  return file;
}

export interface RunningDaemon {
  child: ChildProcess;
  logs: LogLine[];
  stdout(): string;
  stderr(): string;
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number, what?: string): Promise<LogLine>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  signal(sig: NodeJS.Signals): void;
  stop(): Promise<number | null>;
}

/** `prefix` runs the CLI through another command first (e.g. setpriv to drop privileges). */
export function runCli(args: string[], env: Record<string, string> = {}, prefix: string[] = []): RunningDaemon {
  const command = [...prefix, process.execPath, CLI, ...args];
  const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const logs: LogLine[] = [];
  let out = '';
  let err = '';
  let partial = '';
  const waiters: { predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  child.stdout!.on('data', (chunk: Buffer) => {
    const text = chunk.toString();
    out += text;
    partial += text;
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      let parsed: LogLine;
      try { parsed = JSON.parse(line) as LogLine; } catch { continue; }
      logs.push(parsed);
      for (const waiter of [...waiters]) {
        if (waiter.predicate(parsed)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(parsed);
        }
      }
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => { err += chunk.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child, logs,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForLog(predicate, timeoutMs = 30_000, what = 'a log line') {
      const found = logs.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; output so far:\n${out.slice(-6000)}\n${err.slice(-2000)}`)), timeoutMs);
        const onExit = (): void => { clearTimeout(timer); reject(new Error(`fedtls exited while waiting for ${what}; output:\n${out.slice(-6000)}\n${err.slice(-2000)}`)); };
        child.once('exit', onExit);
        waiters.push({ predicate, resolve: (line) => { clearTimeout(timer); child.off('exit', onExit); resolve(line); } });
      });
    },
    signal(sig) { child.kill(sig); },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Starts `fedtls run` and waits until it logs that it is ready. */
export async function startDaemon(configFile: string, options: { waitFor?: string; env?: Record<string, string>; prefix?: string[] } = {}): Promise<RunningDaemon> {
  const daemon = runCli(['run', '--config', configFile], options.env, options.prefix);
  const event = options.waitFor ?? 'ready';
  await daemon.waitForLog((l) => l.event === event, 30_000, `event "${event}"`);
  return daemon;
}

/** The port fedtls really bound for a listener role (from its "listening" log line). */
export function boundPort(daemon: RunningDaemon, role: string): number {
  const line = daemon.logs.find((l) => l.event === 'listening' && l.listener === role);
  if (!line) throw new Error(`no listening line for ${role}`);
  return Number(String(line.address).split(':').pop());
}
