// The `fedtls certificates` report as a pure function of the store's state: one row per
// name with source (acme/file), status and files; names the certificate does not hold are
// flagged; an ACME certificate not obtained yet is "missing", a broken file "refused".
// The store is loaded from real files made with openssl.

import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createAuthority, issueLeaf } from './helpers/certs.js';
import { runCli, tempDir, writeConfig } from './helpers/daemon.js';
import { CertificateStore, type CertificateSource } from '../src/certs/store.js';
import { buildCertificateReport, formatCertificateReport } from '../src/certs/report.js';

describe('certificate report', () => {
  it('lists every configured name with source, status, serial, issuer, expiry, days left and files', () => {
    const authority = createAuthority();
    const dir = tempDir('fedtls-report-');
    const acmeLeaf = issueLeaf(authority, { names: ['example.org', 'matrix.example.org'], days: 30, startOffsetDays: 0 });
    const fileLeaf = issueLeaf(authority, { names: ['other.example.net'], days: 90, startOffsetDays: 0 });
    const write = (name: string, text: string): string => { const file = path.join(dir, name); writeFileSync(file, text); return file; };
    const acme: CertificateSource = { id: 'acme:example.org', kind: 'acme', certificatePath: write('acme.crt', acmeLeaf.fullChainPem), privateKeyPath: write('acme.key', acmeLeaf.keyPem), names: ['example.org', 'matrix.example.org'] };
    const file: CertificateSource = { id: 'file:0', kind: 'file', certificatePath: write('file.crt', fileLeaf.fullChainPem), privateKeyPath: write('file.key', fileLeaf.keyPem), names: ['other.example.net', 'forgotten.example.net'] };
    const notYet: CertificateSource = { id: 'acme:new.example.org', kind: 'acme', certificatePath: path.join(dir, 'absent.crt'), privateKeyPath: path.join(dir, 'absent.key'), names: ['new.example.org'] };
    const broken: CertificateSource = { id: 'file:1', kind: 'file', certificatePath: write('broken.crt', ''), privateKeyPath: write('broken.key', fileLeaf.keyPem), names: ['broken.example.net'] };
    const store = new CertificateStore('example.org');
    const now = new Date();
    store.reloadAll([acme, file, notYet, broken], now);

    const report = buildCertificateReport(store.states(), now, 'files', 'example.org');
    expect(report.certificates.map((r) => [r.name, r.source, r.status, r.covered])).toEqual([
      ['example.org', 'acme', 'valid', true],
      ['matrix.example.org', 'acme', 'valid', true],
      ['other.example.net', 'file', 'valid', true],
      ['forgotten.example.net', 'file', 'valid', false],
      ['new.example.org', 'acme', 'missing', false],
      ['broken.example.net', 'file', 'refused', false],
    ]);
    const first = report.certificates[0]!;
    expect(first.serial?.replace(/^0+/, '')).toBe(acmeLeaf.serial.replace(/^0+/, ''));
    expect(first.issuer).toBe('CN=Test Intermediate CA');
    expect(first.days_left).toBe(29);
    expect(first.key_type).toBe('ec-prime256v1');
    expect(first.certificate_path).toBe(acme.certificatePath);
    expect(report.certificates[5]!.problem?.reason).toMatch(/empty/);

    const table = formatCertificateReport(report);
    expect(table).toMatch(/^forgotten\.example\.net\s+file\s+NAME NOT IN CERT\s/m);
    expect(table).toMatch(/^new\.example\.org\s+acme\s+missing\s+-\s+-\s+-\s+-\s/m);
    expect(table).toMatch(/^problem \(file:1\): .*broken\.crt: the file is empty.*\[nothing served from this source\]$/m);
    expect(table).toContain('Read from the configured files');
    expect(report.warnings).toEqual([]);
    // Live, the daemon says "serving"; and a server_name that no certificate holds is named.
    const live = buildCertificateReport(store.states(), now, 'daemon', 'elsewhere.example.org');
    expect(live.certificates[0]!.status).toBe('serving');
    expect(live.warnings).toEqual([expect.stringMatching(/^no certificate holds server_name elsewhere\.example\.org/)]);
    expect(formatCertificateReport(live)).toMatch(/^warning: no certificate holds server_name elsewhere\.example\.org/m);
    // A name that ACME has yet to obtain is not reported as uncovered.
    expect(buildCertificateReport(store.states(), now, 'files', 'new.example.org').warnings).toEqual([]);
  });
});

describe('fedtls check-config and certificate names', () => {
  it('warns when a pair under tls.certificates lacks a name it is configured for', async () => {
    const authority = createAuthority();
    const dir = tempDir('fedtls-check-names-');
    const main = issueLeaf(authority, { names: ['names.fedtls.test'] });
    const other = issueLeaf(authority, { names: ['elsewhere.fedtls.test'] });
    for (const [name, leaf] of [['main', main], ['other', other]] as const) {
      writeFileSync(path.join(dir, `${name}.crt`), leaf.fullChainPem);
      writeFileSync(path.join(dir, `${name}.key`), leaf.keyPem, { mode: 0o600 });
    }
    const configFile = writeConfig(dir, {
      server_name: 'names.fedtls.test', acme: { enabled: false }, state_dir: path.join(dir, 'state'),
      tls: { certificate_path: path.join(dir, 'main.crt'), private_key_path: path.join(dir, 'main.key'),
        certificates: [{ certificate_path: path.join(dir, 'other.crt'), private_key_path: path.join(dir, 'other.key'), names: ['delegated.fedtls.test'] }] },
    });
    const cli = runCli(['check-config', '--config', configFile]);
    expect(await cli.exited).toBe(0);
    expect(cli.stdout()).toMatch(/other\.crt: elsewhere\.fedtls\.test, expires .*\n {4}warning: configured for delegated\.fedtls\.test, which the certificate does not hold/);
  });
});
