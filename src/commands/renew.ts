// `fedtls renew [NAME] [--force] [--dry-run]`: asks the running daemon (over the control
// socket; the daemon holds port 80) to renew its ACME certificate now if due, or regardless
// with --force; --dry-run obtains a throw-away certificate from the staging/test directory.

import { askDaemon } from './control-call.js';

export interface RenewCommandOptions {
  configPath: string;
  name: string | undefined;
  force: boolean;
  dryRun: boolean;
  json: boolean;
}

/** Orders can take minutes (the CA validates from several places). */
const RENEW_TIMEOUT_MS = 15 * 60_000;

export async function renewCommand(options: RenewCommandOptions): Promise<number> {
  const args = { ...(options.name ? { name: options.name } : {}), force: options.force, dry_run: options.dryRun };
  const answer = await askDaemon(options.configPath, 'renew', args, { timeoutMs: RENEW_TIMEOUT_MS });
  if (!answer.ok) return answer.exitCode;
  const result = answer.result as Record<string, unknown>;
  if (options.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(`${String(result.message ?? JSON.stringify(result))}\n`);
  return 0;
}
