// Every kind of broken certificate input an admin can produce, each swapped in with SIGHUP
// under a running daemon: each is refused with a reason that says what is wrong and names
// the file, the previous certificate keeps serving (real handshake, same serial), and a
// second, healthy source reloads in the same SIGHUP as if nothing happened.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { X509Certificate, randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createAuthority, issueLeaf, type Authority, type Leaf } from './helpers/certs.js';
import { replaceFile, serialOf, startCertDaemon, type CertDaemon } from './helpers/cert-daemon.js';
import { handshake } from './helpers/tls-client.js';

const NAME = 'broken.fedtls.test';
const OTHER = 'other.fedtls.test';

function opensslOut(args: string[], input: string): Buffer {
  return execFileSync('openssl', args, { input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** The certificate with one byte of its signature flipped: it still parses, and its key still matches. */
function flipSignatureByte(certPem: string): string {
  const der = Buffer.from(new X509Certificate(certPem).raw);
  der[der.length - 1]! ^= 0x01;
  return `-----BEGIN CERTIFICATE-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;
}

/** Puts `target` at `file` whatever kind of thing is there now (file, directory, symlink, FIFO). */
function clear(file: string): void {
  rmSync(file, { recursive: true, force: true });
}

describe('broken certificate input is refused clearly and the previous pair keeps serving', () => {
  let authority: Authority;
  let foreign: Authority;
  let rekeyed: Authority;
  let running: CertDaemon;
  let certFile: string;
  let keyFile: string;
  let otherCert: string;
  let otherKey: string;
  let current: Leaf;
  let otherCurrent: Leaf;

  const served = async (name: string): Promise<string> => serialOf((await handshake({ port: running.port, servername: name })).serial);

  beforeAll(async () => {
    authority = createAuthority();
    foreign = createAuthority('Foreign');
    rekeyed = createAuthority(); // the same names as `authority`, other keys: a CA that re-keyed its intermediate
    current = issueLeaf(authority, { names: [NAME] });
    otherCurrent = issueLeaf(authority, { names: [OTHER] });
    running = await startCertDaemon({
      serverName: NAME, sources: 2,
      config: (dir) => {
        certFile = path.join(dir, 'fullchain.pem');
        keyFile = path.join(dir, 'privkey.pem');
        otherCert = path.join(dir, 'other-fullchain.pem');
        otherKey = path.join(dir, 'other-privkey.pem');
        writeFileSync(certFile, current.fullChainPem);
        writeFileSync(keyFile, current.keyPem, { mode: 0o600 });
        writeFileSync(otherCert, otherCurrent.fullChainPem);
        writeFileSync(otherKey, otherCurrent.keyPem, { mode: 0o600 });
        return { tls: { certificate_path: certFile, private_key_path: keyFile, certificates: [{ certificate_path: otherCert, private_key_path: otherKey, names: [OTHER] }] } };
      },
    });
  });

  afterAll(async () => {
    await running?.close();
  });

  interface BrokenCase {
    kind: string;
    /** Breaks the files (the main pair's), starting from a good pair `next`. */
    write: (next: Leaf) => void;
    /** Which file the message must name. */
    file: () => string;
    reason: RegExp;
  }

  const cases: BrokenCase[] = [
    { kind: 'empty certificate file', write: () => replaceFile(certFile, ''), file: () => certFile, reason: /empty \(0 bytes\).*put the certificate chain \(PEM; certbot's \/etc\/letsencrypt\/live\/<name>\/fullchain\.pem.* at \S+fullchain\.pem, or point certificate_path at where it is, then reload/ },
    { kind: 'empty key file', write: (n) => { replaceFile(certFile, n.fullChainPem); replaceFile(keyFile, ''); }, file: () => keyFile, reason: /empty \(0 bytes\).*put the private key \(PEM; certbot's \/etc\/letsencrypt\/live\/<name>\/privkey\.pem.* at \S+privkey\.pem, or point private_key_path at where it is, then reload/ },
    { kind: 'whitespace-only key file', write: (n) => { replaceFile(certFile, n.fullChainPem); replaceFile(keyFile, '\n\n  \n'); }, file: () => keyFile, reason: /only whitespace.*put the private key .*privkey\.pem/ },
    { kind: 'binary junk', write: () => replaceFile(certFile, randomBytes(1500)), file: () => certFile, reason: /binary data, not PEM/ },
    { kind: 'DER certificate instead of PEM', write: (n) => { replaceFile(certFile, opensslOut(['x509', '-outform', 'der'], n.certPem)); replaceFile(keyFile, n.keyPem); }, file: () => certFile, reason: /certificate in binary DER form, not PEM.*openssl x509 -inform der/ },
    { kind: 'DER key instead of PEM', write: (n) => { replaceFile(certFile, n.fullChainPem); replaceFile(keyFile, opensslOut(['pkey', '-outform', 'der'], n.keyPem)); }, file: () => keyFile, reason: /private key in binary DER form.*openssl pkey -inform der/ },
    { kind: 'PKCS#12 bundle instead of PEM', write: (n) => { const dir = running.dir; writeFileSync(path.join(dir, 'p12.crt'), n.certPem); writeFileSync(path.join(dir, 'p12.key'), n.keyPem); replaceFile(certFile, execFileSync('openssl', ['pkcs12', '-export', '-in', path.join(dir, 'p12.crt'), '-inkey', path.join(dir, 'p12.key'), '-passout', 'pass:'])); replaceFile(keyFile, n.keyPem); }, file: () => certFile, reason: /PKCS#12 bundle.*openssl pkcs12 -in .* -nokeys -out fullchain\.pem/ },
    { kind: 'text that is not PEM (a config file)', write: () => replaceFile(certFile, 'server_name: example.org\nbackend: http://127.0.0.1:8008\n'), file: () => certFile, reason: /not a PEM file/ },
    { kind: 'key in the certificate file', write: (n) => { replaceFile(certFile, n.keyPem); replaceFile(keyFile, n.keyPem); }, file: () => certFile, reason: /this is a private key: certificate_path must point at the certificate chain/ },
    { kind: 'certificate in the key file', write: (n) => { replaceFile(certFile, n.fullChainPem); replaceFile(keyFile, n.fullChainPem); }, file: () => keyFile, reason: /private_key_path must point at the key/ },
    { kind: 'public key in the key file', write: (n) => { replaceFile(certFile, n.fullChainPem); replaceFile(keyFile, opensslOut(['pkey', '-pubout'], n.keyPem)); }, file: () => keyFile, reason: /public key is not enough/ },
    { kind: 'certificate request (CSR) in the certificate file', write: (n) => { const keyCopy = path.join(running.dir, 'csr.key'); writeFileSync(keyCopy, n.keyPem); replaceFile(certFile, opensslOut(['req', '-new', '-key', keyCopy, '-subj', `/CN=${NAME}`], '')); replaceFile(keyFile, n.keyPem); }, file: () => certFile, reason: /certificate request \(CSR\) is not a certificate/ },
    { kind: 'passphrase-protected key (PKCS#8)', write: (n) => { replaceFile(certFile, n.fullChainPem); replaceFile(keyFile, opensslOut(['pkey', '-aes256', '-passout', 'pass:secret'], n.keyPem)); }, file: () => keyFile, reason: /protected by a passphrase/ },
    { kind: 'passphrase-protected key (traditional, Proc-Type header)', write: (n) => { replaceFile(certFile, n.fullChainPem); replaceFile(keyFile, opensslOut(['ec', '-aes256', '-passout', 'pass:secret'], n.keyPem)); }, file: () => keyFile, reason: /protected by a passphrase/ },
    { kind: 'two keys in the key file', write: (n) => { replaceFile(certFile, n.fullChainPem); replaceFile(keyFile, n.keyPem + current.keyPem); }, file: () => keyFile, reason: /2 private keys in one file/ },
    { kind: 'key that does not belong', write: (n) => { replaceFile(certFile, n.fullChainPem); replaceFile(keyFile, current.keyPem); }, file: () => certFile, reason: /does not belong/ },
    { kind: 'chain from another CA', write: (n) => { replaceFile(certFile, n.certPem + foreign.intermediateCert); replaceFile(keyFile, n.keyPem); }, file: () => certFile, reason: /no other certificate in the file issued the leaf.*Foreign Intermediate CA/ },
    { kind: 'leaf whose signature is damaged (one byte flipped)', write: (n) => { replaceFile(certFile, flipSignatureByte(n.certPem) + authority.intermediateCert); replaceFile(keyFile, n.keyPem); }, file: () => certFile, reason: /^(?!.*another certificate or CA)the leaf's signature does not verify against "CN=Test Intermediate CA" in the file.*damaged.*re-keyed.*then reload$/ },
    { kind: 'intermediate with the right name but another key (re-keyed CA)', write: (n) => { replaceFile(certFile, n.certPem + rekeyed.intermediateCert); replaceFile(keyFile, n.keyPem); }, file: () => certFile, reason: /^(?!.*another certificate or CA)the file holds a certificate named "CN=Test Intermediate CA", the leaf's issuer, but not the one that issued the leaf: its key identifier differs.*full chain that came with this certificate/ },
    { kind: 'truncated in the middle of the base64', write: (n) => { replaceFile(certFile, n.fullChainPem.slice(0, 300)); replaceFile(keyFile, n.keyPem); }, file: () => certFile, reason: /truncated/ },
    { kind: 'damaged base64 between intact BEGIN/END lines', write: (n) => { replaceFile(certFile, n.certPem.replace(/\n[A-Za-z0-9+/]{64}\n/, '\n' + 'A'.repeat(64) + '\n')); replaceFile(keyFile, n.keyPem); }, file: () => certFile, reason: /cannot be parsed|does not belong/ },
    { kind: 'two files pasted together without the END line', write: (n) => { replaceFile(certFile, n.certPem.replace(/-----END CERTIFICATE-----\n$/, '') + authority.intermediateCert); replaceFile(keyFile, n.keyPem); }, file: () => certFile, reason: /no END line before the next BEGIN/ },
    { kind: 'expired certificate', write: () => { const old = issueLeaf(authority, { names: [NAME], startOffsetDays: -100, days: 10 }); replaceFile(certFile, old.fullChainPem); replaceFile(keyFile, old.keyPem); }, file: () => certFile, reason: /expired on \d{4}-\d\d-\d\dT.*valid from \d{4}-/ },
    { kind: 'not yet valid certificate', write: () => { const early = issueLeaf(authority, { names: [NAME], startOffsetDays: 3, days: 90 }); replaceFile(certFile, early.fullChainPem); replaceFile(keyFile, early.keyPem); }, file: () => certFile, reason: /not valid yet: valid from \d{4}-\d\d-\d\dT.* to \d{4}-/ },
    { kind: 'missing file', write: () => clear(certFile), file: () => certFile, reason: /file not found: nothing at this path; put the certificate chain .*fullchain\.pem/ },
    { kind: 'missing key file', write: (n) => { replaceFile(certFile, n.fullChainPem); clear(keyFile); }, file: () => keyFile, reason: /file not found: nothing at this path; put the private key .*privkey\.pem.*point private_key_path at where it is/ },
    { kind: 'directory instead of a file', write: () => { clear(certFile); mkdirSync(certFile); }, file: () => certFile, reason: /is a directory/ },
    { kind: 'dangling symlink', write: () => { clear(certFile); symlinkSync(path.join(path.dirname(certFile), 'archive', 'gone.pem'), certFile); }, file: () => certFile, reason: /symlink to .*gone\.pem, which does not exist/ },
    { kind: 'FIFO instead of a file (must not hang the daemon)', write: () => { clear(certFile); execFileSync('mkfifo', [certFile]); }, file: () => certFile, reason: /not a regular file/ },
    { kind: 'huge file (wrong file picked)', write: () => replaceFile(certFile, Buffer.alloc(3 * 1024 * 1024, 'A')), file: () => certFile, reason: /far too large/ },
  ];

  for (const brokenCase of cases) {
    it(`refuses ${brokenCase.kind}, keeps serving, and the other source still reloads`, async () => {
      const next = issueLeaf(authority, { names: [NAME] });
      const otherNext = issueLeaf(authority, { names: [OTHER] });
      brokenCase.write(next);
      replaceFile(otherCert, otherNext.fullChainPem);
      replaceFile(otherKey, otherNext.keyPem);
      const outcomes = await running.reload();
      const main = outcomes.find((l) => l.certificate === certFile)!;
      const other = outcomes.find((l) => l.certificate === otherCert)!;
      expect(main.event, JSON.stringify(main)).toBe('certificate_refused');
      expect(main.file).toBe(brokenCase.file());
      expect(String(main.reason)).toMatch(brokenCase.reason);
      expect(String(main.msg)).toContain(brokenCase.file());
      expect(String(main.msg)).toContain('still serving the previous certificate (serial ');
      expect(serialOf(String(main.kept_serial))).toBe(serialOf(current.serial));
      expect(other.event).toBe('certificate_replaced');
      expect(await served(NAME)).toBe(serialOf(current.serial));
      expect(await served(OTHER)).toBe(serialOf(otherNext.serial));
      otherCurrent = otherNext;
      // Put a good pair back for the next case.
      clear(certFile);
      replaceFile(certFile, current.fullChainPem);
      replaceFile(keyFile, current.keyPem);
    });
  }

  it('follows certbot-style symlinks swapped to a new archive version', async () => {
    const archive = path.join(running.dir, 'archive');
    mkdirSync(archive, { recursive: true });
    const next = issueLeaf(authority, { names: [NAME] });
    writeFileSync(path.join(archive, 'fullchain2.pem'), next.fullChainPem);
    writeFileSync(path.join(archive, 'privkey2.pem'), next.keyPem, { mode: 0o600 });
    clear(certFile);
    clear(keyFile);
    symlinkSync(path.join(archive, 'fullchain2.pem'), certFile);
    symlinkSync(path.join(archive, 'privkey2.pem'), keyFile);
    const outcomes = await running.reload();
    expect(outcomes.find((l) => l.certificate === certFile)!.event).toBe('certificate_replaced');
    expect(await served(NAME)).toBe(serialOf(next.serial));
    current = next;
  });

  it('names a private key in the certificate file (with the chmod while others can read it) and a world-readable key, serves the pair, and drops each warning once fixed', async () => {
    const next = issueLeaf(authority, { names: [OTHER] });
    replaceFile(otherCert, next.fullChainPem + next.keyPem);
    replaceFile(otherKey, next.keyPem);
    execFileSync('chmod', ['644', otherCert, otherKey]);
    const warningsOf = async (): Promise<{ event: unknown; warnings: string[] }> => {
      const mark = running.daemon.logs.length;
      const outcome = (await running.reload()).find((l) => l.certificate === otherCert)!;
      return { event: outcome.event, warnings: running.since(mark).filter((l) => l.event === 'certificate_warning' && l.certificate === otherCert).map((l) => String(l.msg)) };
    };
    const exposed = await warningsOf();
    expect(exposed.event).toBe('certificate_replaced');
    expect(await served(OTHER)).toBe(serialOf(next.serial));
    const inCert = exposed.warnings.find((w) => /certificate file also holds a private key/.test(w));
    expect(inCert).toMatch(new RegExp(`readable by every user on this machine \\(mode 644\\): run chmod 600 ${otherCert} now`));
    expect(inCert).toContain(`it belongs only in ${otherKey}`);
    expect(inCert).toMatch(/sed -i '.*PRIVATE KEY.*'/);
    expect(exposed.warnings.find((w) => /readable by every user/.test(w) && w.includes(`chmod 600 ${otherKey}`))).toBeDefined();
    // Only the owner can read it now: still named (a certificate file is meant to be public), without the chmod.
    execFileSync('chmod', ['600', otherCert, otherKey]);
    const ownerOnly = await warningsOf();
    expect(ownerOnly.event).toBe('certificate_kept');
    expect(ownerOnly.warnings).toEqual([expect.stringMatching(/certificate file also holds a private key; a certificate file is meant to be public.*remove it from this file/)]);
    // The key taken out of the certificate file: no warning left.
    replaceFile(otherCert, next.fullChainPem);
    const clean = await warningsOf();
    expect(clean.event).toBe('certificate_kept');
    expect(clean.warnings).toEqual([]);
    otherCurrent = next;
  });
});
