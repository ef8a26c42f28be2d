// Test wrapper around src/demo/pebble.ts: a real Pebble for one test file, on fresh ports.

import { startPebble, type PebbleInstance, type PebbleOptions } from '../../src/demo/pebble.js';
import { freePort } from '../../src/demo/ports.js';
import { tempDir } from './daemon.js';

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
