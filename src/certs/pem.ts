// Reading and validating a certificate/key pair as admins and CAs save them. Owns: PEM
// tolerance (CRLF, BOM, missing final newline, key and chain in one file), key types (RSA
// and EC in PKCS#1, SEC1 and PKCS#8; Ed25519/Ed448 with a warning), key-to-leaf matching,
// chain ordering and signatures, validity dates, and what a single read of the files says
// (warnings, a digest of the bytes). Promises: a LoadedPair is complete, leaf-first and
// matching; anything else is a CertificateLoadError that names the file and what to do.

import { X509Certificate, createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import { closeSync, constants as fsConstants, fstatSync, openSync, readFileSync, readlinkSync } from 'node:fs';
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
  /** Things an admin should fix that do not stop the pair from being served (from this read of the files). */
  warnings: string[];
  /** SHA-256 over the bytes of the certificate and key files as read; null when loaded from text. */
  filesDigest: string | null;
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
  /** RFC 1421 headers (e.g. "Proc-Type: 4,ENCRYPTED" on an old-style encrypted key). */
  headers: string[];
}

/** Undoes the ways PEM text gets mangled by editors, e-mail and Windows. */
export function normalizePemText(text: string): string {
  return text.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n').replace(/[ \t]+$/gm, '');
}

export function splitPemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  const pattern = /-----BEGIN ([A-Z0-9 ]+)-----\n([\s\S]*?)\n?-----END \1-----/g;
  for (const match of normalizePemText(text).matchAll(pattern)) {
    const headers = match[2]!.split('\n').filter((line) => /^[A-Za-z-]+:/.test(line));
    const body = match[2]!.split('\n').filter((line) => !/^[A-Za-z-]+:/.test(line)).join('').replace(/\s+/g, '');
    const lines = body.match(/.{1,64}/g) ?? [];
    blocks.push({ label: match[1]!, headers, pem: `-----BEGIN ${match[1]}-----\n${lines.join('\n')}\n-----END ${match[1]}-----\n` });
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

/** Certificate and key files are a few KiB; anything far larger is not one. */
const MAX_PEM_FILE_BYTES = 1024 * 1024;

/** What a file is for, so a message about it can say what belongs there. */
export type PemFileRole = 'certificate' | 'key' | 'combined';

/** Who writes the file: the admin (or certbot…), or fedtls's own ACME client. */
export type PemFileOrigin = 'file' | 'acme';

/** The fix for a file that is missing or has nothing in it: what belongs there and where it usually comes from. */
export function missingFileFix(file: string, role: PemFileRole, origin: PemFileOrigin = 'file'): string {
  if (origin === 'acme') {
    return `fedtls's ACME client writes this file; run "fedtls renew --force" to obtain and write a new certificate and key (a certificate already being served keeps serving until then)`;
  }
  const what = role === 'key'
    ? 'the private key (PEM; certbot\'s /etc/letsencrypt/live/<name>/privkey.pem, or the file openssl wrote with -keyout)'
    : role === 'combined'
      ? 'the certificate chain and its private key (PEM)'
      : 'the certificate chain (PEM; certbot\'s /etc/letsencrypt/live/<name>/fullchain.pem, or your CA\'s certificate followed by its intermediate)';
  const key = role === 'key' ? 'private_key_path' : 'certificate_path';
  return `put ${what} at ${file}, or point ${key} at where it is, then reload (systemctl reload fedtls)`;
}

function describeReadError(file: string, error: NodeJS.ErrnoException, role: PemFileRole, origin: PemFileOrigin): string {
  switch (error.code) {
    case 'ENOENT': {
      let target: string | null = null;
      try { target = readlinkSync(file); } catch { /* not a symlink */ }
      return target !== null
        ? `file not found: it is a symlink to ${target}, which does not exist (fix the link, then reload)`
        : `file not found: nothing at this path; ${missingFileFix(file, role, origin)}`;
    }
    case 'EACCES':
    case 'EPERM':
      return 'permission denied: the fedtls user cannot read it (check owner and mode, and the folders above it)';
    case 'EISDIR':
      return 'is a directory, expected a PEM file';
    case 'ENOTDIR':
      return 'a folder in this path is a file, not a folder';
    case 'ELOOP':
      return 'symlink loop: the link points back at itself';
    default:
      return error.message;
  }
}

export interface PemFile {
  text: string;
  mode: number;
  /** SHA-256 of the bytes as read (hex). */
  digest: string;
}

/**
 * Reads a PEM file without ever blocking or reading without bound: FIFOs, devices and
 * sockets are refused before any read (O_NONBLOCK keeps a FIFO from stalling the daemon).
 * `role` and `origin` only shape the messages (what belongs in the file, where it comes from).
 */
export function readPemFile(file: string, role: PemFileRole = 'certificate', origin: PemFileOrigin = 'file'): PemFile {
  let fd: number;
  try {
    fd = openSync(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (error) {
    throw new CertificateLoadError(file, describeReadError(file, error as NodeJS.ErrnoException, role, origin));
  }
  try {
    const stat = fstatSync(fd);
    if (stat.isDirectory()) throw new CertificateLoadError(file, 'is a directory, expected a PEM file');
    if (!stat.isFile()) throw new CertificateLoadError(file, 'is not a regular file (a pipe, socket or device); point fedtls at the PEM file itself');
    if (stat.size > MAX_PEM_FILE_BYTES) {
      throw new CertificateLoadError(file, `is ${stat.size} bytes, far too large for a certificate or key (at most ${MAX_PEM_FILE_BYTES}); is this the right file?`);
    }
    const buffer = readFileSync(fd);
    return { text: decodePemBytes(file, buffer, role, origin), mode: stat.mode, digest: createHash('sha256').update(buffer).digest('hex') };
  } catch (error) {
    if (error instanceof CertificateLoadError) throw error;
    throw new CertificateLoadError(file, describeReadError(file, error as NodeJS.ErrnoException, role, origin));
  } finally {
    closeSync(fd);
  }
}

/** True when the bytes are one DER-encoded ASN.1 SEQUENCE, which is how every certificate and key starts. */
function looksLikeDer(bytes: Buffer): boolean {
  if (bytes.length < 2 || bytes[0] !== 0x30) return false;
  const first = bytes[1]!;
  let total: number;
  if (first < 0x80) total = 2 + first;
  else if (first === 0x81 && bytes.length > 2) total = 3 + bytes[2]!;
  else if (first === 0x82 && bytes.length > 3) total = 4 + bytes.readUInt16BE(2);
  else return false;
  return total === bytes.length || (total === bytes.length - 1 && bytes[bytes.length - 1] === 0x0a);
}

/** PKCS#12 (PFX) starts SEQUENCE { INTEGER 3, ... }. */
function isPkcs12(bytes: Buffer): boolean {
  const header = bytes[1]! < 0x80 ? 2 : 2 + (bytes[1]! & 0x7f);
  return bytes[header] === 0x02 && bytes[header + 1] === 0x01 && bytes[header + 2] === 0x03;
}

function derKind(bytes: Buffer): 'certificate' | 'key' | null {
  try {
    new X509Certificate(bytes);
    return 'certificate';
  } catch { /* not a certificate */ }
  for (const type of ['pkcs8', 'sec1', 'pkcs1'] as const) {
    try {
      createPrivateKey({ key: bytes, format: 'der', type });
      return 'key';
    } catch { /* try the next form */ }
  }
  return null;
}

/** Turns file bytes into PEM text, or explains what the bytes are instead. */
function decodePemBytes(file: string, bytes: Buffer, role: PemFileRole, origin: PemFileOrigin): string {
  if (bytes.length === 0) {
    throw new CertificateLoadError(file, `the file is empty (0 bytes): it may still be being written, or the copy failed; ${missingFileFix(file, role, origin)}`);
  }
  // Windows editors save "Unicode" as UTF-16 with a byte-order mark; read it as the text it is.
  const text = bytes[0] === 0xff && bytes[1] === 0xfe ? bytes.subarray(2).toString('utf16le')
    : bytes[0] === 0xfe && bytes[1] === 0xff ? Buffer.from(bytes.subarray(2)).swap16().toString('utf16le')
    : bytes.toString('utf8');
  if (!text.includes('-----BEGIN ')) {
    if (looksLikeDer(bytes) && isPkcs12(bytes)) {
      throw new CertificateLoadError(file, `the file is a PKCS#12 bundle (.p12/.pfx), not PEM; extract the chain and the key with "openssl pkcs12 -in ${file} -nokeys -out fullchain.pem" and "openssl pkcs12 -in ${file} -nocerts -nodes -out privkey.pem", then point certificate_path and private_key_path at them`);
    }
    if (looksLikeDer(bytes)) {
      const tool = derKind(bytes) === 'certificate' ? 'x509' : derKind(bytes) === 'key' ? 'pkey' : null;
      const convert = (command: string): string => `"openssl ${command} -inform der -in ${file} -out ${file}.new && mv ${file}.new ${file}"`;
      throw new CertificateLoadError(file, tool
        ? `the file is a ${tool === 'x509' ? 'certificate' : 'private key'} in binary DER form, not PEM text; convert it with ${convert(tool)}`
        : `the file is binary DER, not PEM text; convert it with ${convert('x509')} (certificate) or ${convert('pkey')} (key)`);
    }
    if (/^\s*$/.test(text)) {
      throw new CertificateLoadError(file, `the file holds only whitespace, no PEM data; ${missingFileFix(file, role, origin)}`);
    }
    // eslint-disable-next-line no-control-regex
    if (bytes.includes(0) || /[\x00-\x08\x0e-\x1f]/.test(text.slice(0, 512)) || text.includes('\uFFFD')) {
      throw new CertificateLoadError(file, 'the file holds binary data, not PEM text (expected lines starting with "-----BEGIN CERTIFICATE-----" or "-----BEGIN PRIVATE KEY-----")');
    }
    throw new CertificateLoadError(file, 'no "-----BEGIN ...-----" line: this is not a PEM file (expected "-----BEGIN CERTIFICATE-----" or "-----BEGIN PRIVATE KEY-----")');
  }
  checkComplete(file, text);
  return text;
}

/** Refuses PEM that stops in the middle: a BEGIN line without its END line. */
function checkComplete(file: string, text: string): void {
  const normal = normalizePemText(text);
  const lines = normal.split('\n');
  let open: { label: string; line: number } | null = null;
  lines.forEach((line, index) => {
    const begin = /^-----BEGIN ([A-Z0-9 ]+)-----$/.exec(line.trim());
    const end = /^-----END ([A-Z0-9 ]+)-----$/.exec(line.trim());
    if (begin) {
      if (open) throw new CertificateLoadError(file, `the "${open.label}" block starting on line ${open.line} has no END line before the next BEGIN on line ${index + 1}: the file is truncated or two files were pasted together badly`);
      open = { label: begin[1]!, line: index + 1 };
    } else if (end) {
      if (!open || (open as { label: string }).label !== end[1]) {
        throw new CertificateLoadError(file, `line ${index + 1}: "-----END ${end[1]}-----" without a matching BEGIN line; the file is damaged`);
      }
      open = null;
    }
  });
  if (open) {
    const { label, line } = open as { label: string; line: number };
    throw new CertificateLoadError(file, `the file is truncated: the "${label}" block starting on line ${line} has no "-----END ${label}-----" line (was it still being written? write files completely, then reload)`);
  }
}

function parsePrivateKey(file: string, blocks: PemBlock[], origin: PemFileOrigin): { key: KeyObject; pem: string } {
  if (blocks.some((b) => b.label === 'ENCRYPTED PRIVATE KEY' || (KEY_LABELS.has(b.label) && b.headers.some((h) => /ENCRYPTED/i.test(h))))) {
    throw new CertificateLoadError(file, `the private key is protected by a passphrase; fedtls needs it unencrypted (openssl pkey -in ${file} -out ${file}.plain, then point fedtls at that file, mode 0600)`);
  }
  const keyBlocks = blocks.filter((b) => KEY_LABELS.has(b.label));
  if (keyBlocks.length === 0) {
    const found = blocks.map((b) => b.label).join(', ');
    const hint = blocks.some((b) => b.label === 'CERTIFICATE')
      ? 'private_key_path must point at the key (privkey.pem), not at the certificate'
      : blocks.some((b) => b.label === 'PUBLIC KEY')
        ? 'a public key is not enough; fedtls needs the private key'
        : 'point private_key_path at the private key';
    throw new CertificateLoadError(file, found
      ? `no private key in this file (found: ${found}); ${hint}`
      : `no PEM private key found (empty, truncated, or not PEM text); ${missingFileFix(file, 'key', origin)}`);
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

function parseCertificates(file: string, blocks: PemBlock[], origin: PemFileOrigin): X509Certificate[] {
  const certBlocks = blocks.filter((b) => b.label === 'CERTIFICATE' || b.label === 'TRUSTED CERTIFICATE');
  if (certBlocks.length === 0) {
    const found = blocks.map((b) => b.label).join(', ');
    const hint = blocks.some((b) => KEY_LABELS.has(b.label) || b.label === 'ENCRYPTED PRIVATE KEY')
      ? 'this is a private key: certificate_path must point at the certificate chain (fullchain.pem), private_key_path at the key'
      : blocks.some((b) => b.label === 'CERTIFICATE REQUEST' || b.label === 'NEW CERTIFICATE REQUEST')
        ? 'a certificate request (CSR) is not a certificate; use the certificate your CA issued for it'
        : 'certificate_path must point at the certificate (full chain)';
    throw new CertificateLoadError(file, found
      ? `no certificate in this file (found: ${found}); ${hint}`
      : `no PEM certificate found (empty, truncated, or not PEM text); ${missingFileFix(file, 'certificate', origin)}`);
  }
  return certBlocks.map((block, index) => {
    try {
      return new X509Certificate(block.pem);
    } catch (error) {
      throw new CertificateLoadError(file, `certificate #${index + 1} in the file cannot be parsed (${(error as Error).message}); the file is damaged (cut short or edited); put the file from your CA back`);
    }
  });
}

/** True when `issuer` issued `cert`: names and key identifiers match, and the signature verifies. */
function issued(issuer: X509Certificate, cert: X509Certificate): boolean {
  try {
    return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

const oneLine = (dn: string): string => dn.replace(/\n/g, ', ');

/** True when `issuer` looks like the issuer of `cert` (names, key identifiers), whatever the signature says. */
function namedIssuer(issuer: X509Certificate, cert: X509Certificate): boolean {
  try {
    return cert.checkIssued(issuer);
  } catch {
    return false;
  }
}

/**
 * Puts the leaf first and each issuer after the certificate it issued; reports what it changed.
 * Throws when a certificate in the file is, by its names and key identifiers, the issuer of
 * one in the chain but the signature does not verify against it: that is damage (or a re-keyed
 * CA), not a bundle from another CA, and peers would refuse it.
 */
function orderChain(leaf: X509Certificate, others: X509Certificate[], warnings: string[], certificatePath: string): X509Certificate[] {
  const ordered = [leaf];
  const remaining = [...others];
  for (;;) {
    const last = ordered[ordered.length - 1]!;
    if (last.checkIssued(last)) break; // reached a self-signed root
    const index = remaining.findIndex((candidate) => issued(candidate, last));
    if (index < 0) {
      const lookalike = remaining.find((candidate) => namedIssuer(candidate, last));
      if (lookalike) {
        const whose = last === leaf ? 'the leaf\'s signature' : `the signature of the chain certificate "${oneLine(last.subject)}"`;
        throw new CertificateLoadError(certificatePath,
          `${whose} does not verify against "${oneLine(lookalike.subject)}" in the file, although that certificate's name and key identifier match its issuer: the file is damaged (a changed or lost byte), or the CA re-keyed that certificate and this is not the chain it came with. Peers would refuse it. Put the certificate and chain from your CA back (e.g. certbot's fullchain.pem, or download it again), then reload`);
      }
      break;
    }
    ordered.push(remaining.splice(index, 1)[0]!);
  }
  for (const unused of remaining) {
    warnings.push(`left out a certificate that is not part of the leaf's chain (${oneLine(unused.subject)})`);
  }
  return ordered;
}

export interface LoadOptions {
  now?: Date;
  /** Who writes the files (shapes the fix in messages). Default 'file': the admin. */
  origin?: PemFileOrigin;
  /** The certificate file's mode, to tell whether a private key in it is exposed. */
  certificateFileMode?: number;
  /** SHA-256 over the files' bytes, kept on the pair so a reload can tell "files rewritten" from "files unchanged". */
  filesDigest?: string;
}

const KEY_TYPES_PEERS_EXPECT = new Set(['rsa', 'ec']);

function describeKeyType(key: KeyObject): string {
  const type = key.asymmetricKeyType ?? 'unknown';
  if (type === 'ec') return `ec-${key.asymmetricKeyDetails?.namedCurve ?? 'unknown'}`;
  if (type === 'rsa' || type === 'rsa-pss') return `${type}-${key.asymmetricKeyDetails?.modulusLength ?? ''}`;
  return type;
}

/** A private key inside the certificate file: named, with what to do (more urgent when others can read it). */
function keyInCertificateFileWarning(certificatePath: string, privateKeyPath: string, mode: number | undefined): string {
  const readable = mode === undefined ? null : (mode & 0o004) !== 0 ? 'every user on this machine' : (mode & 0o040) !== 0 ? 'its group' : null;
  const strip = `sed -i '/-----BEGIN [A-Z ]*PRIVATE KEY-----/,/-----END [A-Z ]*PRIVATE KEY-----/d' ${certificatePath}`;
  return readable
    ? `the certificate file also holds a private key, and it is readable by ${readable} (mode ${(mode! & 0o777).toString(8)}): run chmod 600 ${certificatePath} now (chmod 640 with group fedtls if fedtls runs as another user), then remove the key from it (it belongs only in ${privateKeyPath}): ${strip}. Others may have read the key: consider getting a new certificate with a new key`
    : `the certificate file also holds a private key; a certificate file is meant to be public (it is sent to every peer and often left readable). Keep the key only in ${privateKeyPath} and remove it from this file: ${strip}`;
}

/** Validates PEM texts as a pair. `certificatePath`/`privateKeyPath` are used in messages only. */
export function loadPairFromText(certText: string, keyText: string, certificatePath: string, privateKeyPath: string, options: LoadOptions = {}): LoadedPair {
  const now = options.now ?? new Date();
  checkComplete(certificatePath, certText);
  if (keyText !== certText) checkComplete(privateKeyPath, keyText);
  const certBlocks = splitPemBlocks(certText);
  const keyBlocks = splitPemBlocks(keyText);
  const origin = options.origin ?? 'file';
  const certificates = parseCertificates(certificatePath, certBlocks, origin);
  const { key, pem: keyPem } = parsePrivateKey(privateKeyPath, keyBlocks, origin);
  const warnings: string[] = [];
  if (certificatePath !== privateKeyPath && certBlocks.some((b) => KEY_LABELS.has(b.label) || b.label === 'ENCRYPTED PRIVATE KEY')) {
    warnings.push(keyInCertificateFileWarning(certificatePath, privateKeyPath, options.certificateFileMode));
  }

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
  const chainCerts = orderChain(leafCert, certificates.filter((_, i) => i !== leafIndex), warnings, certificatePath);
  if (leafIndex === 0 && chainCerts.some((cert, i) => cert !== certificates[i])) {
    warnings.push('the intermediates were out of order; fedtls serves them in issuing order');
  }
  const chain = chainCerts.map(describeCertificate);
  const leaf = chain[0]!;
  if (chain.length === 1 && certificates.length > 1 && !leaf.selfSigned) {
    const others = certificates.filter((cert) => cert !== leafCert);
    const sameName = others.find((cert) => cert.subject === leafCert.issuer);
    if (sameName) {
      throw new CertificateLoadError(certificatePath,
        `the file holds a certificate named "${oneLine(sameName.subject)}", the leaf's issuer, but not the one that issued the leaf: its key identifier differs (the CA has more than one intermediate of that name, e.g. a re-keyed or older one). Use the full chain that came with this certificate (e.g. certbot's fullchain.pem), then reload`);
    }
    throw new CertificateLoadError(certificatePath,
      `no other certificate in the file issued the leaf: the leaf was issued by "${leaf.issuer}", the file also holds "${others.map((cert) => oneLine(cert.subject)).join('; ')}". The chain belongs to another certificate or CA; use the full chain that came with this certificate`);
  }
  for (const [index, cert] of chain.entries()) {
    if (index === 0) continue;
    if (now < cert.notBefore || now > cert.notAfter) {
      throw new CertificateLoadError(certificatePath,
        `the chain certificate "${cert.subject}" is valid only from ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}; peers will refuse the chain. Get the current chain from your CA`);
    }
  }

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
  const keyType = describeKeyType(key);
  if (key.asymmetricKeyType === 'ed25519' || key.asymmetricKeyType === 'ed448') {
    warnings.push(`the key is ${key.asymmetricKeyType === 'ed25519' ? 'Ed25519' : 'Ed448'}: public CAs do not issue such certificates and many TLS clients cannot verify them, so federating servers may refuse the handshake. Use an EC (P-256) or RSA certificate`);
  } else if (!KEY_TYPES_PEERS_EXPECT.has(key.asymmetricKeyType ?? '')) {
    warnings.push(`the key type is ${keyType}: federating servers expect RSA or EC (P-256, P-384) certificates and may refuse the handshake. Use an EC (P-256) or RSA certificate`);
  }

  const chainPem = chainCerts.map((cert) => cert.toString()).join('');
  let context: SecureContext;
  try {
    context = tls.createSecureContext({ cert: chainPem, key: keyPem });
  } catch (error) {
    throw new CertificateLoadError(certificatePath, `OpenSSL refused the pair: ${(error as Error).message}`);
  }
  return { certificatePath, privateKeyPath, chainPem, keyPem, leaf, chain, keyType, warnings, filesDigest: options.filesDigest ?? null, context };
}

/** Reads and validates a pair from disk. Throws CertificateLoadError naming the file at fault. */
export function loadPairFromFiles(certificatePath: string, privateKeyPath: string, options: LoadOptions = {}): LoadedPair {
  const origin = options.origin ?? 'file';
  const combined = privateKeyPath === certificatePath;
  const cert = readPemFile(certificatePath, combined ? 'combined' : 'certificate', origin);
  const key = combined ? cert : readPemFile(privateKeyPath, 'key', origin);
  const filesDigest = createHash('sha256').update(`${cert.digest}\n${combined ? '' : key.digest}`).digest('hex');
  const pair = loadPairFromText(cert.text, key.text, certificatePath, privateKeyPath, { ...options, certificateFileMode: cert.mode, filesDigest });
  if ((key.mode & 0o004) !== 0) {
    pair.warnings.push(`the private key ${privateKeyPath} is readable by every user on this machine (mode ${(key.mode & 0o777).toString(8)}); run: chmod 600 ${privateKeyPath}`);
  }
  return pair;
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

/** The names in `names` that no name in the certificate covers. */
export function namesNotCovered(names: string[], leaf: CertificateInfo): string[] {
  return names.filter((name) => !leaf.names.some((pattern) => nameMatches(pattern, name)));
}
