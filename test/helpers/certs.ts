// Certificate fixtures made with the openssl command, as admins and CAs make them: a root,
// an intermediate, and leaves with RSA, P-256 or Ed25519 keys in the usual key formats; and
// self-signed certificates, as people make them for tests.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import path from 'node:path';

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface Authority {
  dir: string;
  rootCert: string;
  intermediateCert: string;
  intermediateKeyFile: string;
  intermediateCertFile: string;
}

export function createAuthority(name = 'Test'): Authority {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fedtls-ca-'));
  const ext = path.join(dir, 'ca.ext');
  writeFileSync(ext, 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'root.key', '-out', 'root.pem', '-days', '3650', '-subj', `/CN=${name} Root CA`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'int.key', '-out', 'int.csr', '-subj', `/CN=${name} Intermediate CA`], dir);
  openssl(['x509', '-req', '-in', 'int.csr', '-CA', 'root.pem', '-CAkey', 'root.key', '-CAcreateserial', '-out', 'int.pem', '-days', '3650', '-extfile', ext], dir);
  return {
    dir,
    rootCert: readFileSync(path.join(dir, 'root.pem'), 'utf8'),
    intermediateCert: readFileSync(path.join(dir, 'int.pem'), 'utf8'),
    intermediateKeyFile: path.join(dir, 'int.key'),
    intermediateCertFile: path.join(dir, 'int.pem'),
  };
}

export interface LeafOptions {
  names: string[];
  keyType?: 'ec' | 'rsa' | 'ed25519';
  /** How the private key is written: PKCS#8 ("PRIVATE KEY"), or the traditional form (SEC1 "EC PRIVATE KEY" / PKCS#1 "RSA PRIVATE KEY"). */
  keyFormat?: 'pkcs8' | 'traditional';
  days?: number;
  /** openssl -not_before/-not_after style offsets are awkward; use startOffsetDays (negative = past). */
  startOffsetDays?: number;
}

export interface Leaf {
  certPem: string;
  keyPem: string;
  /** leaf + intermediate */
  fullChainPem: string;
  serial: string;
}

let counter = 0;

export function issueLeaf(authority: Authority, options: LeafOptions): Leaf {
  const dir = authority.dir;
  const id = `leaf${++counter}`;
  const keyType = options.keyType ?? 'ec';
  const keyArgs = keyType === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : keyType === 'ed25519' ? ['-newkey', 'ed25519'] : ['-newkey', 'rsa:2048'];
  openssl(['req', ...keyArgs, '-nodes', '-keyout', `${id}.key`, '-out', `${id}.csr`, '-subj', `/CN=${options.names[0]}`], dir);
  writeFileSync(path.join(dir, `${id}.ext`), `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${options.names.map((n) => `${isIP(n) ? 'IP' : 'DNS'}:${n}`).join(',')}\nauthorityKeyIdentifier=keyid\n`);
  const start = options.startOffsetDays ?? -1;
  const days = options.days ?? 90;
  const fmt = (d: Date): string => d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
  const notBefore = new Date(Date.now() + start * 86_400_000);
  const notAfter = new Date(notBefore.getTime() + days * 86_400_000);
  // `openssl ca` (unlike `x509 -req` in OpenSSL 3.0) accepts exact start and end dates.
  writeFileSync(path.join(dir, 'index.txt'), '');
  writeFileSync(path.join(dir, 'serial.txt'), `${randomBytes(8).toString('hex')}\n`);
  writeFileSync(path.join(dir, 'ca.cnf'), '[ca]\ndefault_ca=CA_default\n[CA_default]\ndatabase=index.txt\nserial=serial.txt\nnew_certs_dir=.\ndefault_md=sha256\npolicy=policy_any\nunique_subject=no\n[policy_any]\ncommonName=supplied\n');
  openssl(['ca', '-batch', '-config', 'ca.cnf', '-notext', '-cert', authority.intermediateCertFile, '-keyfile', authority.intermediateKeyFile,
    '-in', `${id}.csr`, '-out', `${id}.pem`, '-startdate', fmt(notBefore), '-enddate', fmt(notAfter), '-extfile', `${id}.ext`], dir);
  let keyPem = readFileSync(path.join(dir, `${id}.key`), 'utf8');
  if (options.keyFormat === 'traditional' && keyType !== 'ed25519') {
    keyPem = execFileSync('openssl', [keyType === 'ec' ? 'ec' : 'rsa', '-in', `${id}.key`, ...(keyType === 'rsa' ? ['-traditional'] : [])], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  }
  const certPem = readFileSync(path.join(dir, `${id}.pem`), 'utf8');
  const serial = execFileSync('openssl', ['x509', '-in', `${id}.pem`, '-noout', '-serial'], { cwd: dir }).toString().trim().split('=')[1]!.toLowerCase();
  return { certPem, keyPem, fullChainPem: certPem + authority.intermediateCert, serial };
}

/** A self-signed certificate for `names` (as `openssl req -x509` makes one), with its key. */
export function selfSignedLeaf(names: string[], days = 90): { certPem: string; keyPem: string; serial: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fedtls-self-'));
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'self.key', '-out', 'self.pem', '-days', String(days), '-subj', `/CN=${names[0]}`,
    '-addext', `subjectAltName=${names.map((n) => `${isIP(n) ? 'IP' : 'DNS'}:${n}`).join(',')}`], dir);
  const certPem = readFileSync(path.join(dir, 'self.pem'), 'utf8');
  const serial = execFileSync('openssl', ['x509', '-in', 'self.pem', '-noout', '-serial'], { cwd: dir }).toString().trim().split('=')[1]!.toLowerCase();
  return { certPem, keyPem: readFileSync(path.join(dir, 'self.key'), 'utf8'), serial };
}
