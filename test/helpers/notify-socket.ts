// A real systemd notify socket for tests: an AF_UNIX datagram socket bound by
// `systemd-socket-activate --datagram` (Debian package "systemd"), read by
// notify-receiver.mjs. Collects each datagram as the list of its KEY=VALUE lines.

import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const RECEIVER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'notify-receiver.mjs');

export interface NotifySocket {
  path: string;
  /** Every datagram received, in order, BARRIER=1 (systemd-notify's sync message) left out. */
  messages: Record<string, string>[];
  waitFor(predicate: (message: Record<string, string>) => boolean, what: string, timeoutMs?: number): Promise<Record<string, string>>;
  close(): void;
}

export async function startNotifySocket(dir: string): Promise<NotifySocket> {
  const socketPath = path.join(dir, 'notify.sock');
  const child: ChildProcess = spawn('systemd-socket-activate', ['--datagram', '-l', socketPath, process.execPath, RECEIVER], { stdio: ['ignore', 'pipe', 'pipe'] });
  const messages: Record<string, string>[] = [];
  const waiters: { predicate: (m: Record<string, string>) => boolean; resolve: (m: Record<string, string>) => void }[] = [];
  let partial = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    partial += chunk.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      const text = JSON.parse(line) as string;
      const message = Object.fromEntries(text.split('\n').filter(Boolean).map((field) => [field.slice(0, field.indexOf('=')), field.slice(field.indexOf('=') + 1)]));
      if (message.BARRIER === '1') continue;
      messages.push(message);
      for (const waiter of [...waiters]) {
        if (waiter.predicate(message)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(message);
        }
      }
    }
  });
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`systemd-socket-activate exited (${code}): ${stderr}`)));
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.includes('Listening on')) resolve();
    });
  });
  // Let an unprivileged daemon send to it, as systemd's own socket allows.
  chmodSync(socketPath, 0o666);
  return {
    path: socketPath,
    messages,
    waitFor(predicate, what, timeoutMs = 30_000) {
      const found = messages.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for notify message ${what}; got ${JSON.stringify(messages)}`)), timeoutMs);
        waiters.push({ predicate, resolve: (m) => { clearTimeout(timer); resolve(m); } });
      });
    },
    close() { child.kill('SIGKILL'); },
  };
}
