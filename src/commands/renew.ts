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

/** Exit code when the daemon did not order because it must wait (backoff or the CA's Retry-After): EX_TEMPFAIL. */
export const EXIT_MUST_WAIT = 75;

/** Orders can take minutes (the CA validates from several places). */
const RENEW_TIMEOUT_MS = 15 * 60_000;

export async function renewCommand(options: RenewCommandOptions): Promise<number> {
  const args = { ...(options.name ? { name: options.name } : {}), force: options.force, dry_run: options.dryRun };
  const answer = await askDaemon(options.configPath, 'renew', args, { timeoutMs: RENEW_TIMEOUT_MS });
  if (!answer.ok) return answer.exitCode;
  const result = answer.result as Record<string, unknown>;
  // Scripts must be able to tell "renewed / nothing due" (0) from "did not order: must wait"
  // (75) and "the order failed" (1).
  const code = result.outcome === 'waiting' ? EXIT_MUST_WAIT : result.outcome === 'failed' ? 1 : 0;
  if (options.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return code;
  }
  (code === 0 ? process.stdout : process.stderr).write(`${code === 0 ? '' : 'fedtls renew: '}${String(result.message ?? JSON.stringify(result))}\n`);
  return code;
}
