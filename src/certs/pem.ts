// Reading and validating a certificate/key pair as admins and CAs save them. Owns: PEM
// tolerance (CRLF, BOM, missing final newline, key and chain in one file), key types (RSA
// and EC in PKCS#1, SEC1 and PKCS#8), key-to-leaf matching, chain ordering, validity dates.
// Promises: a LoadedPair is complete, leaf-first and matching; anything else is a
// CertificateLoadError that names the file and what to do.

import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls, { type SecureContext } from 'node:tls';

export interface CertificateInfo {
  serial: string;
  subject: string;
  issuer: string;
  /** DNS names (and IP addresses) from subjectAltName, lower-case. */
  names: string[];
  notBefore: Date;
  notAfter: Date;
  fingerprint256: string;
  selfSigned: boolean;
}

export interface LoadedPair {
  certificatePath: string;
  privateKeyPath: string;
  /** Leaf first, then the intermediates in order; what is sent to peers. */
  chainPem: string;
  keyPem: string;
  leaf: CertificateInfo;
  chain: CertificateInfo[];
  keyType: string;
  /** Things an admin should fix that do not stop the pair from being served. */
  warnings: string[];
  context: SecureContext;
}

export class CertificateLoadError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
    this.name = 'CertificateLoadError';
  }
}

interface PemBlock {
  label: string;
  pem: string;
}

/** Undoes the ways PEM text gets mangled by editors, e-mail and Windows. */
export function normalizePemText(text: string): string {
  return text.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n').replace(/[ \t]+$/gm, '');
}

export function splitPemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  const pattern = /-----BEGIN ([A-Z0-9 ]+)-----\n([\s\S]*?)\n?-----END \1-----/g;
  for (const match of normalizePemText(text).matchAll(pattern)) {
    const body = match[2]!.replace(/\s+/g, '');
    const lines = body.match(/.{1,64}/g) ?? [];
    blocks.push({ label: match[1]!, pem: `-----BEGIN ${match[1]}-----\n${lines.join('\n')}\n-----END ${match[1]}-----\n` });
  }
  return blocks;
}

const KEY_LABELS = new Set(['PRIVATE KEY', 'RSA PRIVATE KEY', 'EC PRIVATE KEY']);

export function describeCertificate(cert: X509Certificate): CertificateInfo {
  const names = (cert.subjectAltName ?? '')
    .split(/,\s*/)
    .map((entry) => /^(?:DNS|IP Address):(.+)$/.exec(entry)?.[1]?.toLowerCase())
    .filter((name): name is string => Boolean(name));
  return {
    serial: cert.serialNumber.toLowerCase(),
    subject: cert.subject.replace(/\n/g, ', '),
    issuer: cert.issuer.replace(/\n/g, ', '),
    names,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    fingerprint256: cert.fingerprint256,
    selfSigned: cert.subject === cert.issuer && cert.checkIssued(cert),
  };
}

function readPemFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'file not found'
      : code === 'EACCES' ? 'permission denied: the fedtls user cannot read it (check owner and mode)'
      : code === 'EISDIR' ? 'is a directory, expected a PEM file'
      : (error as Error).message;
    throw new CertificateLoadError(file, reason);
  }
}

function parsePrivateKey(file: string, blocks: PemBlock[]): { key: KeyObject; pem: string } {
  if (blocks.some((b) => b.label === 'ENCRYPTED PRIVATE KEY')) {
    throw new CertificateLoadError(file, `the private key is protected by a passphrase; fedtls needs it unencrypted (openssl pkey -in ${file} -out ${file}.plain, then point fedtls at that file, mode 0600)`);
  }
  const keyBlocks = blocks.filter((b) => KEY_LABELS.has(b.label));
  if (keyBlocks.length === 0) {
    const found = blocks.map((b) => b.label).join(', ');
    throw new CertificateLoadError(file, found
      ? `no private key in this file (found: ${found}); private_key_path must point at the key, not the certificate`
      : 'no PEM private key found (empty, truncated, or not PEM text)');
  }
  if (keyBlocks.length > 1) {
    throw new CertificateLoadError(file, `${keyBlocks.length} private keys in one file; keep only the key that belongs to the certificate`);
  }
  try {
    return { key: createPrivateKey(keyBlocks[0]!.pem), pem: keyBlocks[0]!.pem };
  } catch (error) {
    throw new CertificateLoadError(file, `the private key cannot be read (${(error as Error).message}); the file may be truncated or corrupted`);
  }
}

function parseCertificates(file: string, blocks: PemBlock[]): X509Certificate[] {
  const certBlocks = blocks.filter((b) => b.label === 'CERTIFICATE' || b.label === 'TRUSTED CERTIFICATE');
  if (certBlocks.length === 0) {
    const found = blocks.map((b) => b.label).join(', ');
    throw new CertificateLoadError(file, found
      ? `no certificate in this file (found: ${found}); certificate_path must point at the certificate (full chain)`
      : 'no PEM certificate found (empty, truncated, or not PEM text)');
  }
  return certBlocks.map((block, index) => {
    try {
      return new X509Certificate(block.pem);
    } catch (error) {
      throw new CertificateLoadError(file, `certificate #${index + 1} in the file cannot be parsed (${(error as Error).message}); the file may be truncated`);
    }
  });
}

/** Puts the leaf first and each issuer after the certificate it issued; reports what it changed. */
function orderChain(leaf: X509Certificate, others: X509Certificate[], warnings: string[]): X509Certificate[] {
  const ordered = [leaf];
  const remaining = [...others];
  for (;;) {
    const last = ordered[ordered.length - 1]!;
    if (last.checkIssued(last)) break; // reached a self-signed root
    const index = remaining.findIndex((candidate) => last.checkIssued(candidate));
    if (index < 0) break;
    ordered.push(remaining.splice(index, 1)[0]!);
  }
  for (const unused of remaining) {
    warnings.push(`left out a certificate that is not part of the leaf's chain (${unused.subject.replace(/\n/g, ', ')})`);
  }
  return ordered;
}

export interface LoadOptions {
  now?: Date;
}

/** Validates PEM texts as a pair. `certificatePath`/`privateKeyPath` are used in messages only. */
export function loadPairFromText(certText: string, keyText: string, certificatePath: string, privateKeyPath: string, options: LoadOptions = {}): LoadedPair {
  const now = options.now ?? new Date();
  const certBlocks = splitPemBlocks(certText);
  const keyBlocks = splitPemBlocks(keyText);
  const certificates = parseCertificates(certificatePath, certBlocks);
  const { key, pem: keyPem } = parsePrivateKey(privateKeyPath, keyBlocks);
  const warnings: string[] = [];

  const leafIndex = certificates.findIndex((cert) => {
    try { return cert.checkPrivateKey(key); } catch { return false; }
  });
  if (leafIndex < 0) {
    const first = describeCertificate(certificates[0]!);
    throw new CertificateLoadError(certificatePath,
      `the private key in ${privateKeyPath} does not belong to this certificate (${first.names.join(', ') || first.subject}, serial ${first.serial}); put the matching certificate and key in place, then reload`);
  }
  if (leafIndex > 0) {
    warnings.push(`the chain was written with the leaf in position ${leafIndex + 1}; fedtls serves it leaf-first`);
  }
  const leafCert = certificates[leafIndex]!;
  const chainCerts = orderChain(leafCert, certificates.filter((_, i) => i !== leafIndex), warnings);
  if (leafIndex === 0 && chainCerts.some((cert, i) => cert !== certificates[i])) {
    warnings.push('the intermediates were out of order; fedtls serves them in issuing order');
  }
  const chain = chainCerts.map(describeCertificate);
  const leaf = chain[0]!;

  if (now < leaf.notBefore) {
    throw new CertificateLoadError(certificatePath, `the certificate is not valid yet: valid from ${leaf.notBefore.toISOString()} to ${leaf.notAfter.toISOString()} (check this machine's clock)`);
  }
  if (now > leaf.notAfter) {
    throw new CertificateLoadError(certificatePath, `the certificate expired on ${leaf.notAfter.toISOString()} (valid from ${leaf.notBefore.toISOString()}); install a renewed one`);
  }
  if (!leaf.selfSigned && chain.length === 1) {
    warnings.push(`the file holds only the leaf certificate, without its intermediate (issuer: ${leaf.issuer}); remote servers will not be able to build the chain and will refuse to federate. Use the full chain file (e.g. fullchain.pem)`);
  }
  if (leaf.selfSigned) {
    warnings.push('the certificate is self-signed; other Matrix servers will refuse it for federation');
  }

  const chainPem = chainCerts.map((cert) => cert.toString()).join('');
  let context: SecureContext;
  try {
    context = tls.createSecureContext({ cert: chainPem, key: keyPem });
  } catch (error) {
    throw new CertificateLoadError(certificatePath, `OpenSSL refused the pair: ${(error as Error).message}`);
  }
  const keyType = key.asymmetricKeyType === 'ec'
    ? `ec-${key.asymmetricKeyDetails?.namedCurve ?? 'unknown'}`
    : `${key.asymmetricKeyType}-${key.asymmetricKeyDetails?.modulusLength ?? ''}`;
  return { certificatePath, privateKeyPath, chainPem, keyPem, leaf, chain, keyType, warnings, context };
}

/** Reads and validates a pair from disk. Throws CertificateLoadError naming the file at fault. */
export function loadPairFromFiles(certificatePath: string, privateKeyPath: string, options: LoadOptions = {}): LoadedPair {
  const certText = readPemFile(certificatePath);
  const keyText = privateKeyPath === certificatePath ? certText : readPemFile(privateKeyPath);
  return loadPairFromText(certText, keyText, certificatePath, privateKeyPath, options);
}

/** True when `name` is covered by `pattern` (exact, or a one-label wildcard). */
export function nameMatches(pattern: string, name: string): boolean {
  const p = pattern.toLowerCase();
  const n = name.toLowerCase().replace(/\.$/, '');
  if (p === n) return true;
  if (!p.startsWith('*.')) return false;
  const dot = n.indexOf('.');
  return dot > 0 && n.slice(dot + 1) === p.slice(2);
}
