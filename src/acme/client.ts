// The ACME account and the configured acme-client instance. Owns the account key file
// (created once, mode 0600, reused), the saved account URL, and how acme-client talks HTTP
// (extra CA roots for private/test CAs; no hidden retries, because the renewal scheduler owns
// timing and must honour Retry-After itself).

import https from 'node:https';
import tls from 'node:tls';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import acme from 'acme-client';
import type { AcmeConfig } from '../config/types.js';
import type { Logger } from '../ops/log.js';
import { writeFileAtomic } from '../certs/files.js';

export interface AccountFiles {
  keyPath: string;
  infoPath: string;
}

/** One account per directory URL, so switching between staging and production is safe. */
export function accountFiles(stateDir: string, directoryUrl: string): AccountFiles {
  const url = new URL(directoryUrl);
  const slug = `${url.hostname}${url.port ? `_${url.port}` : ''}${url.pathname.replace(/[^A-Za-z0-9]+/g, '_')}`.replace(/_+$/, '');
  const dir = path.join(stateDir, 'acme', 'accounts', slug);
  return { keyPath: path.join(dir, 'account.key'), infoPath: path.join(dir, 'account.json') };
}

let httpConfiguredFor: string | null = null;

/** Points acme-client's HTTP client at the right roots and turns off its own retry loop. */
export function configureAcmeHttp(caBundlePath: string | null): void {
  const key = caBundlePath ?? '';
  if (httpConfiguredFor === key) return;
  let ca: string[] | undefined;
  try {
    ca = caBundlePath ? [...tls.rootCertificates, readFileSync(caBundlePath, 'utf8')] : undefined;
  } catch (error) {
    throw new Error(`acme.ca_bundle ${caBundlePath}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); fix the path or remove the key`);
  }
  acme.axios.defaults.httpsAgent = new https.Agent({ keepAlive: true, ...(ca ? { ca } : {}) });
  const settings = (acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number } }).acmeSettings;
  settings.retryMaxAttempts = 0;
  acme.axios.defaults.timeout = 30_000;
  httpConfiguredFor = key;
}

export interface AccountHandle {
  client: acme.Client;
  accountUrl: string;
  created: boolean;
}

/**
 * Returns a client bound to this directory's account. The account is created at the CA only
 * when no account URL is saved yet; afterwards the saved URL is reused with the same key.
 * `quiet`: the caller logs the registration itself (a re-registration says why).
 */
export async function openAccount(stateDir: string, config: AcmeConfig, log: Logger, options: { quiet?: boolean } = {}): Promise<AccountHandle> {
  configureAcmeHttp(config.caBundlePath);
  const files = accountFiles(stateDir, config.directoryUrl);
  let accountKey: Buffer;
  if (existsSync(files.keyPath)) {
    accountKey = readFileSync(files.keyPath);
  } else {
    accountKey = await acme.crypto.createPrivateEcdsaKey('P-256');
    writeFileAtomic(files.keyPath, accountKey, 0o600);
    log.info({ event: 'acme_account_key_created', file: files.keyPath }, 'created a new ACME account key');
  }
  let savedUrl: string | null = null;
  if (existsSync(files.infoPath)) {
    try {
      savedUrl = (JSON.parse(readFileSync(files.infoPath, 'utf8')) as { url?: string }).url ?? null;
    } catch {
      savedUrl = null;
    }
  }
  const client = new acme.Client({
    directoryUrl: config.directoryUrl,
    accountKey,
    ...(savedUrl ? { accountUrl: savedUrl } : {}),
    ...(config.eab ? { externalAccountBinding: { kid: config.eab.kid, hmacKey: config.eab.hmacKey } } : {}),
    backoffAttempts: 10,
    backoffMin: 1000,
    backoffMax: 10_000,
  });
  if (savedUrl) return { client, accountUrl: savedUrl, created: false };

  await client.createAccount({
    termsOfServiceAgreed: true,
    ...(config.email ? { contact: [`mailto:${config.email}`] } : {}),
  });
  const accountUrl = client.getAccountUrl();
  writeFileAtomic(files.infoPath, `${JSON.stringify({ url: accountUrl, directory: config.directoryUrl, created: new Date().toISOString() }, null, 2)}\n`, 0o600);
  if (!options.quiet) log.info({ event: 'acme_account_registered', account: accountUrl, directory: config.directoryUrl }, 'registered the ACME account');
  return { client, accountUrl, created: true };
}
