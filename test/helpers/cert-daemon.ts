// A running fedtls with hand-managed certificate files, for certificate tests: writes the
// files, starts the real daemon, and turns "SIGHUP and wait until every source has logged
// its outcome" into one call. Also reads what a TLS client really receives on the wire.

import { execFile } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startBackend, type Backend } from './backend.js';
import { boundPort, startDaemon, tempDir, writeConfig, type LogLine, type RunningDaemon } from './daemon.js';
import { freePort } from './pebble.js';

export const OUTCOME_EVENTS = new Set(['certificate_added', 'certificate_replaced', 'certificate_kept', 'certificate_refused', 'certificate_missing']);

export { serialOf } from './tls-client.js';

/** Replaces a file the way careful tools do (write beside it, rename over it). */
export function replaceFile(file: string, content: string | Buffer): void {
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, content);
  renameSync(temp, file);
}

export interface CertDaemon {
  daemon: RunningDaemon;
  backend: Backend;
  dir: string;
  configFile: string;
  port: number;
  /** SIGHUP, then resolves (after its closing "certificates_reloaded" line) with the outcome lines of that reload, one per source. */
  reload(): Promise<LogLine[]>;
  /** Log lines logged since `mark` (a logs.length taken earlier). */
  since(mark: number): LogLine[];
  close(): Promise<void>;
}

/** `workers` defaults to 2 so that every swap is proven in TLS worker processes, whatever the machine's CPU count. */
export async function startCertDaemon(options: { serverName: string; config: (dir: string) => Record<string, unknown>; sources: number; workers?: number }): Promise<CertDaemon> {
  const dir = tempDir('fedtls-certs-');
  const backend = await startBackend();
  const configFile = writeConfig(dir, {
    server_name: options.serverName, backend: backend.url,
    listen: { http: ["127.0.0.1:0"], federation: ["127.0.0.1:0"] },
    state_dir: path.join(dir, 'state'),
    acme: { enabled: false },
    workers: options.workers ?? 2,
    ...options.config(dir),
  });
  const daemon = await startDaemon(configFile);
  const isOutcome = (line: LogLine): boolean => OUTCOME_EVENTS.has(String(line.event));
  return {
    daemon, backend, dir, configFile,
    port: boundPort(daemon, 'federation'),
    since: (mark) => daemon.logs.slice(mark),
    async reload() {
      const mark = daemon.logs.length;
      daemon.signal('SIGHUP');
      await daemon.waitForLog((line) => line.event === 'certificates_reloaded' && daemon.logs.indexOf(line) >= mark, 20_000, 'the end of the reload after SIGHUP');
      const outcomes = daemon.logs.slice(mark).filter(isOutcome);
      if (outcomes.length !== options.sources) throw new Error(`expected ${options.sources} outcome line(s), got ${outcomes.length}`);
      return outcomes;
    },
    async close() {
      await daemon.stop();
      await backend.close();
    },
  };
}

/** The certificates the server sent in the handshake, as `openssl s_client -showcerts` prints them (leaf first). */
export function servedChain(options: { port: number; servername?: string }): Promise<{ subjects: string[]; pems: string[] }> {
  const args = ['s_client', '-connect', `127.0.0.1:${options.port}`, '-showcerts', ...(options.servername ? ['-servername', options.servername] : ['-noservername'])];
  return new Promise((resolve, reject) => {
    const child = execFile('openssl', args, { timeout: 20_000 }, (error, stdout) => {
      const pems = stdout.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
      const subjects = [...stdout.matchAll(/^\s*\d+ s:(.*)$/gm)].map((m) => m[1]!.trim());
      if (pems.length === 0) reject(new Error(`openssl s_client got no certificate: ${error?.message ?? ''}\n${stdout}`));
      else resolve({ subjects, pems });
    });
    child.stdin?.end();
  });
}
