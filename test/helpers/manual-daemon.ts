// A config for a daemon that serves a hand-managed certificate (ACME off) on loopback ports,
// for tests about the daemon's own behaviour (signals, notify, metrics, status, start-up).

import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { createAuthority, issueLeaf } from './certs.js';
import { writeConfig } from './daemon.js';
import { freePort } from './pebble.js';

export interface ManualDaemonConfig {
  configFile: string;
  stateDir: string;
  notAfter: Date;
  certificatePath: string;
  privateKeyPath: string;
  /** Serial of the certificate written, as openssl prints it. */
  serial: string;
}

/** Writes a certificate for `name`, its key and a config into `dir`; `overrides` replace top-level keys (listen is merged). */
export async function writeManualDaemonConfig(dir: string, name: string, backendUrl: string, overrides: Record<string, unknown> = {}): Promise<ManualDaemonConfig> {
  const leaf = issueLeaf(createAuthority(), { names: [name], days: 30 });
  const certificatePath = path.join(dir, 'fullchain.pem');
  const keyPath = path.join(dir, 'privkey.pem');
  writeFileSync(certificatePath, leaf.fullChainPem);
  writeFileSync(keyPath, leaf.keyPem);
  const stateDir = path.join(dir, 'state');
  const { listen, ...rest } = overrides;
  const configFile = writeConfig(dir, {
    server_name: name, backend: backendUrl, state_dir: stateDir,
    listen: { http: ["127.0.0.1:0"], federation: ["127.0.0.1:0"], ...(listen as object | undefined) },
    acme: { enabled: false },
    tls_certificate_path: certificatePath, tls_private_key_path: keyPath,
    ...rest,
  });
  return { configFile, stateDir, notAfter: new Date(new X509Certificate(leaf.certPem).validTo), certificatePath, privateKeyPath: keyPath, serial: leaf.serial };
}
