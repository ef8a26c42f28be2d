// Loading the config for a one-shot command: problems go to stderr as ConfigError lists
// them, and the command exits 1 instead of throwing.

import { loadConfig, ConfigError } from '../config/load.js';
import type { Config } from '../config/types.js';

/** The config, or null after printing its problems to stderr. */
export function loadConfigForCommand(configPath: string): Config | null {
  try {
    return loadConfig(configPath);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return null;
    }
    throw error;
  }
}
