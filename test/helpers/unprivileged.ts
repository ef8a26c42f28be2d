// Running the real CLI as an unprivileged user, as systemd runs it (User=fedtls). When the
// tests run as root, the daemon is started through `setpriv` as nobody with no capabilities;
// otherwise the tests already run unprivileged.

import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync } from 'node:fs';
import { CLI } from './daemon.js';

const NOBODY = 65534;

export const runningAsRoot = process.getuid?.() === 0;

/** The command prefix that drops to nobody (empty when already unprivileged), or null with the reason. */
export function unprivilegedPrefix(): { prefix: string[] } | { reason: string } {
  if (!runningAsRoot) return { prefix: [] };
  const prefix = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all'];
  const probe = spawnSync(prefix[0]!, [...prefix.slice(1), process.execPath, '-e', `require('fs').accessSync(${JSON.stringify(CLI)}, require('fs').constants.R_OK)`], { encoding: 'utf8' });
  if (probe.error) return { reason: `setpriv is missing (Debian package util-linux): ${probe.error.message}` };
  if (probe.status !== 0) return { reason: `user nobody cannot read ${CLI}: ${probe.stderr.trim().split('\n').pop()}` };
  return { prefix };
}

/** Makes a test folder usable by the unprivileged daemon: readable folder, writable state dir. */
export function shareWithUnprivileged(dir: string, stateDir: string): void {
  chmodSync(dir, 0o755);
  mkdirSync(stateDir, { recursive: true });
  if (runningAsRoot) chownSync(stateDir, NOBODY, NOBODY);
}
