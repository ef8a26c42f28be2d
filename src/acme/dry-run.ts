// `fedtls renew --dry-run`: proves that issuance works end to end (account, DNS, port 80,
// CAA, profile) without touching what is served. Orders from the staging directory that
// matches acme.url (Let's Encrypt production → Let's Encrypt staging; any other directory,
// e.g. a test CA, is used as it is), writes the result into a temporary folder, checks that
// it loads as a pair, and deletes it. The served certificate, its files and the production
// account are never touched (staging has its own account in state_dir).

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Config } from '../config/types.js';
import type { Logger } from '../ops/log.js';
import { LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING } from '../config/load.js';
import { writeFileAtomic } from '../certs/files.js';
import { loadPairFromFiles } from '../certs/pem.js';
import { ControlCommandError } from '../ops/control-server.js';
import type { ChallengeTable } from './challenges.js';
import { openAccount } from './client.js';
import { orderCertificate } from './order.js';
import { withProblemRecording, type CaProblem } from './ca-problems.js';
import { explainFailure } from './explain.js';
import { orderProfile, readDirectory } from './directory.js';

/** The directory a dry run uses for a configured directory. */
export function dryRunDirectory(directoryUrl: string): string {
  return directoryUrl === LETS_ENCRYPT_PRODUCTION ? LETS_ENCRYPT_STAGING : directoryUrl;
}

export interface DryRunResult {
  outcome: 'dry_run_ok';
  directory: string;
  names: string[];
  serial: string;
  not_after: string;
  message: string;
}

export async function dryRunOrder(options: { config: Config; challenges: ChallengeTable; log: Logger }): Promise<DryRunResult> {
  const { config, log } = options;
  const directoryUrl = dryRunDirectory(config.acme.directoryUrl);
  const names = config.acme.domains;
  const acmeConfig = { ...config.acme, directoryUrl, eab: directoryUrl === config.acme.directoryUrl ? config.acme.eab : null };
  const problems: CaProblem[] = [];
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'fedtls-dry-run-'));
  log.info({ event: 'acme_dry_run_start', names, directory: directoryUrl }, `dry run: ordering a throw-away certificate for ${names.join(', ')} from ${directoryUrl}`);
  try {
    const issued = await withProblemRecording(problems, async () => {
      const account = await openAccount(config.stateDir, acmeConfig, log);
      const profile = orderProfile(config.acme.profile, await readDirectory(directoryUrl));
      return orderCertificate({ client: account.client, domains: names, challenges: options.challenges, keyType: config.acme.keyType, log, orderExtras: profile ? { profile } : {} });
    });
    const certificatePath = path.join(workDir, 'fullchain.pem');
    const privateKeyPath = path.join(workDir, 'privkey.pem');
    writeFileAtomic(privateKeyPath, issued.keyPem, 0o600);
    writeFileAtomic(certificatePath, issued.chainPem, 0o644);
    const leaf = loadPairFromFiles(certificatePath, privateKeyPath).leaf;
    log.info({ event: 'acme_dry_run_ok', names, directory: directoryUrl, serial: leaf.serial }, `dry run succeeded: ${directoryUrl} issued a certificate for ${names.join(', ')}; it was thrown away`);
    return { outcome: 'dry_run_ok', directory: directoryUrl, names, serial: leaf.serial, not_after: leaf.notAfter.toISOString(),
      message: `dry run succeeded: ${directoryUrl} issued a certificate for ${names.join(', ')} (serial ${leaf.serial}); it was thrown away and nothing served was changed` };
  } catch (error) {
    const explanation = explainFailure(error, problems, names, directoryUrl);
    log.error({ event: 'acme_dry_run_failed', names, directory: directoryUrl, error: explanation.what, cause: explanation.cause }, `dry run failed: ${explanation.what}. Likely cause: ${explanation.cause}`);
    throw new ControlCommandError(`dry run failed: ${explanation.what}. Likely cause: ${explanation.cause}`);
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}
