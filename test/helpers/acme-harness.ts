// The real ACME parts of fedtls in the test process (for timing-sensitive tests that need
// short backoff settings): a validated Config, the certificate store, the challenge table
// behind a real port-80 listener (the one Pebble validates against), an AcmeManager, and a
// pino logger whose JSON lines are kept and can be waited on.

import http from 'node:http';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { buildConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import type { Logger } from '../../src/ops/log.js';
import { CertificateStore } from '../../src/certs/store.js';
import { ChallengeTable } from '../../src/acme/challenges.js';
import { AcmeManager } from '../../src/acme/manager.js';
import type { AcmeTiming } from '../../src/acme/timing.js';
import { createChallengeHandler } from '../../src/http/challenge-listener.js';
import { tempDir, type LogLine } from './daemon.js';

export interface LogCapture {
  log: Logger;
  lines: LogLine[];
  waitFor(predicate: (line: LogLine) => boolean, timeoutMs?: number, what?: string): Promise<LogLine>;
}

export function captureLog(): LogCapture {
  const lines: LogLine[] = [];
  const waiters: { predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const text of chunk.toString().split('\n').filter(Boolean)) {
        const line = JSON.parse(text) as LogLine;
        lines.push(line);
        for (const waiter of [...waiters]) {
          if (waiter.predicate(line)) {
            waiters.splice(waiters.indexOf(waiter), 1);
            waiter.resolve(line);
          }
        }
      }
      done();
    },
  });
  const log = pino({ level: 'debug', timestamp: pino.stdTimeFunctions.isoTime }, stream);
  return {
    log, lines,
    waitFor(predicate, timeoutMs = 30_000, what = 'a log line') {
      const found = lines.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; log:\n${lines.map((l) => `${String(l.event)} ${String(l.msg)}`).join('\n')}`)), timeoutMs);
        waiters.push({ predicate, resolve: (line) => { clearTimeout(timer); resolve(line); } });
      });
    },
  };
}

export interface AcmeHarness extends LogCapture {
  config: Config;
  store: CertificateStore;
  challenges: ChallengeTable;
  manager: AcmeManager;
  challengePort: number;
  close(): Promise<void>;
}

export interface HarnessOptions {
  directoryUrl: string;
  caBundlePath: string;
  /** The port Pebble validates HTTP-01 on. */
  challengePort: number;
  domains: string[];
  acme?: Record<string, unknown>;
  timing?: Partial<AcmeTiming>;
  stateDir?: string;
}

export async function startAcmeHarness(options: HarnessOptions): Promise<AcmeHarness> {
  const dir = tempDir('fedtls-acme-');
  const config = buildConfig({
    server_name: options.domains[0],
    state_dir: options.stateDir ?? path.join(dir, 'state'),
    acme: { url: options.directoryUrl, ca_bundle: options.caBundlePath, domains: options.domains, ...options.acme },
  }, path.join(dir, 'fedtls.yaml'));
  const capture = captureLog();
  const store = new CertificateStore(config.tls.defaultName);
  const challenges = new ChallengeTable();
  const server = http.createServer(createChallengeHandler({ challenges, redirectToHttps: false, redirectHosts: new Set(), log: capture.log }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.challengePort, '127.0.0.1', () => resolve());
  });
  const manager = new AcmeManager({ config, store, challenges, log: capture.log, ...(options.timing ? { timing: options.timing } : {}) });
  return {
    ...capture, config, store, challenges, manager, challengePort: options.challengePort,
    async close() {
      await manager.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
