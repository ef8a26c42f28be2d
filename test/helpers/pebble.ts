// Test wrapper around src/demo/pebble.ts: a real Pebble for one test file, on fresh ports.

import { startPebble, type PebbleInstance, type PebbleOptions } from '../../src/demo/pebble.js';
import { freePort } from '../../src/demo/ports.js';
import path from 'node:path';
import { tempDir, writeConfig } from './daemon.js';

export { freePort };

export interface PebbleFixture extends PebbleInstance {
  /** The port fedtls must answer HTTP-01 on (Pebble validates there). */
  httpPort: number;
  workDir: string;
}

export async function startTestPebble(options: Partial<Omit<PebbleOptions, 'workDir'>> = {}): Promise<PebbleFixture> {
  const workDir = tempDir('fedtls-pebble-');
  const httpPort = options.httpPort ?? await freePort();
  const pebble = await startPebble({ workDir, httpPort, ...options });
  return Object.assign(pebble, { httpPort, workDir });
}

/**
 * A config for a daemon that obtains its certificate from `pebble` (HTTP-01 on Pebble's
 * validation port, federation on a port of its own choosing). `overrides` replace top-level
 * keys; `acme` and `listen` are merged into the Pebble settings.
 */
export function writePebbleDaemonConfig(dir: string, pebble: PebbleFixture, serverName: string, backendUrl: string, overrides: Record<string, unknown> = {}): { configFile: string; stateDir: string } {
  const stateDir = path.join(dir, 'state');
  const { acme, listen, ...rest } = overrides;
  const configFile = writeConfig(dir, {
    server_name: serverName,
    backend: backendUrl,
    listen: { http: [`127.0.0.1:${pebble.httpPort}`], federation: ['127.0.0.1:0'], ...(listen as object | undefined) },
    state_dir: stateDir,
    acme: { url: pebble.directoryUrl, ca_bundle: pebble.caBundlePath, ...(acme as object | undefined) },
    ...rest,
  });
  return { configFile, stateDir };
}
