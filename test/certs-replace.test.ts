// Replacing a pair that is being served (SIGHUP): a valid pair is still refused when peers
// that accept the served one would refuse it — it loses server_name, the delegated host or a
// configured name, or it is self-signed where the served one is CA-issued — and the old pair
// keeps serving (real handshakes, same serial). It is swapped in with a warning when it
// expires well before the served one, or drops a name nobody configured. On first load the
// same pairs load with warnings. `fedtls certificates` exits 1 while a refusal stands.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createAuthority, issueLeaf, selfSignedLeaf, type Authority, type Leaf } from './helpers/certs.js';
import { replaceFile, serialOf, startCertDaemon, type CertDaemon } from './helpers/cert-daemon.js';
import type { LogLine } from './helpers/daemon.js';
import { runCli } from './helpers/daemon.js';
import { handshake } from './helpers/tls-client.js';

const NAME = 'replace.fedtls.test';
const MATRIX = 'matrix.replace.fedtls.test'; // the host well_known.server delegates to
const EXTRA = 'extra.replace.fedtls.test'; // in the main certificate, configured nowhere
const DELEGATED = 'delegated.replace.fedtls.test'; // configured (names) for the second pair

interface ReportRow { name: string; status: string; serial: string | null; warnings: string[]; problem: { file: string; reason: string } | null }

describe('replacing a served pair on SIGHUP', () => {
  let authority: Authority;
  let running: CertDaemon;
  let mainCert: string;
  let mainKey: string;
  let delegatedCert: string;
  let delegatedKey: string;
  let main: Leaf;
  let delegated: Leaf;
  let startLogs: LogLine[];

  const served = async (servername?: string): Promise<string> => serialOf((await handshake({ port: running.port, ...(servername ? { servername } : {}) })).serial);
  const install = (cert: string, key: string, pair: { fullChainPem?: string; certPem: string; keyPem: string }): void => {
    replaceFile(cert, pair.fullChainPem ?? pair.certPem);
    replaceFile(key, pair.keyPem);
  };
  /** SIGHUP; the outcome line of each pair and every warning line of that reload. */
  const reload = async (): Promise<{ main: LogLine; delegated: LogLine; warnings: string[] }> => {
    const mark = running.daemon.logs.length;
    const outcomes = await running.reload();
    return {
      main: outcomes.find((l) => l.certificate === mainCert)!,
      delegated: outcomes.find((l) => l.certificate === delegatedCert)!,
      warnings: running.since(mark).filter((l) => l.level === 40).map((l) => String(l.msg)),
    };
  };
  const certificates = async (json: boolean): Promise<{ code: number | null; out: string }> => {
    const cli = runCli(['certificates', '--config', running.configFile, ...(json ? ['--json'] : [])]);
    const code = await cli.exited;
    return { code, out: cli.stdout() };
  };

  beforeAll(async () => {
    authority = createAuthority();
    // At start neither pair holds what it should: first loads keep serving them, with warnings.
    const firstMain = issueLeaf(authority, { names: [MATRIX, EXTRA] });
    const firstDelegated = issueLeaf(authority, { names: ['elsewhere.replace.fedtls.test'] });
    running = await startCertDaemon({
      serverName: NAME, sources: 2,
      config: (dir) => {
        mainCert = path.join(dir, 'fullchain.pem');
        mainKey = path.join(dir, 'privkey.pem');
        delegatedCert = path.join(dir, 'delegated-fullchain.pem');
        delegatedKey = path.join(dir, 'delegated-privkey.pem');
        writeFileSync(mainCert, firstMain.fullChainPem);
        writeFileSync(mainKey, firstMain.keyPem, { mode: 0o600 });
        writeFileSync(delegatedCert, firstDelegated.fullChainPem);
        writeFileSync(delegatedKey, firstDelegated.keyPem, { mode: 0o600 });
        return {
          tls: { certificate_path: mainCert, private_key_path: mainKey, certificates: [{ certificate_path: delegatedCert, private_key_path: delegatedKey, names: [DELEGATED] }] },
          well_known: { server: `${MATRIX}:443` },
        };
      },
    });
    startLogs = [...running.daemon.logs];
    main = firstMain;
    delegated = firstDelegated;
  });

  afterAll(async () => {
    await running?.close();
  });

  it('first load: a pair without server_name, and a pair without its configured name, are served with a warning each', async () => {
    expect(startLogs.filter((l) => l.event === 'certificate_added')).toHaveLength(2);
    expect(startLogs.filter((l) => l.event === 'certificate_refused')).toEqual([]);
    expect(String(startLogs.find((l) => l.event === 'server_name_uncovered')?.msg)).toMatch(new RegExp(`no certificate holds server_name ${NAME}`));
    expect(startLogs.find((l) => l.event === 'certificate_names_uncovered')?.uncovered).toEqual([DELEGATED]);
    expect(await served(NAME)).toBe(serialOf(main.serial));
    expect(await served(DELEGATED)).toBe(serialOf(delegated.serial));
  });

  it('a replacement that adds the missing names is swapped in', async () => {
    const fixedMain = issueLeaf(authority, { names: [NAME, MATRIX, EXTRA] });
    const fixedDelegated = issueLeaf(authority, { names: [DELEGATED] });
    install(mainCert, mainKey, fixedMain);
    install(delegatedCert, delegatedKey, fixedDelegated);
    const result = await reload();
    expect(result.main.event).toBe('certificate_replaced');
    expect(result.delegated.event).toBe('certificate_replaced');
    expect(await served(NAME)).toBe(serialOf(fixedMain.serial));
    expect(await served(DELEGATED)).toBe(serialOf(fixedDelegated.serial));
    main = fixedMain;
    delegated = fixedDelegated;
  });

  it('refuses a valid pair for another name that would replace the one holding server_name: one line with the files, the names lost and the fix; the old serial keeps serving', async () => {
    const wrong = issueLeaf(authority, { names: ['other.fedtls.test'] });
    install(mainCert, mainKey, wrong);
    const result = await reload();
    expect(result.main.event).toBe('certificate_refused');
    expect(result.main.names_lost).toEqual([NAME, MATRIX]);
    const msg = String(result.main.msg);
    expect(msg).toContain(mainCert);
    expect(msg).toContain(mainKey);
    expect(msg).toMatch(new RegExp(`does not hold ${NAME} \\(server_name\\), ${MATRIX} \\(the host /\\.well-known/matrix/server delegates to\\), which the certificate being served \\(serial ${main.serial}\\) holds`));
    expect(msg).toMatch(/Put a certificate that holds .* then reload/);
    expect(msg).toMatch(/still serving the previous certificate/);
    expect(result.delegated.event).toBe('certificate_kept');
    expect(result.warnings.filter((w) => /server_name/.test(w))).toEqual([]); // nothing to warn about: server_name is still covered
    expect(await served(NAME)).toBe(serialOf(main.serial));
    expect(await served(MATRIX)).toBe(serialOf(main.serial));
    expect(await served()).toBe(serialOf(main.serial));
    install(mainCert, mainKey, main);
    expect((await reload()).main.event).toBe('certificate_kept');
  });

  it('fedtls certificates exits 1 while the daemon keeps serving the old pair of a refused source, table and --json alike, and 0 once it loads', async () => {
    expect((await certificates(false)).code).toBe(0);
    const next = issueLeaf(authority, { names: [NAME, MATRIX, EXTRA] });
    replaceFile(mainCert, next.fullChainPem); // the new certificate, the old key: refused
    expect((await reload()).main.event).toBe('certificate_refused');
    const table = await certificates(false);
    expect(table.code).toBe(1);
    expect(table.out).toMatch(new RegExp(`^${NAME.replace(/\./g, '\\.')}\\s+file\\s+serving\\s+0*${serialOf(main.serial)}\\s`, 'm'));
    expect(table.out).toMatch(new RegExp(`^problem \\(file:0:.*does not belong.*\\[still serving serial 0*${serialOf(main.serial)}\\]$`, 'm'));
    const json = await certificates(true);
    expect(json.code).toBe(1);
    const rows = (JSON.parse(json.out) as { certificates: ReportRow[] }).certificates;
    const row = rows.find((r) => r.name === NAME)!;
    expect(row.status).toBe('serving');
    expect(serialOf(row.serial!)).toBe(serialOf(main.serial));
    expect(row.problem?.reason).toMatch(/does not belong/);

    install(mainCert, mainKey, main);
    expect((await reload()).main.event).toBe('certificate_kept');
    expect((await certificates(false)).code).toBe(0);
    const after = await certificates(true);
    expect(after.code).toBe(0);
    expect((JSON.parse(after.out) as { certificates: ReportRow[] }).certificates.every((r) => r.problem === null)).toBe(true);
  });

  it('refuses a replacement that loses a name configured for the pair (names:), and keeps serving it', async () => {
    const wrong = issueLeaf(authority, { names: ['elsewhere.replace.fedtls.test'] });
    install(delegatedCert, delegatedKey, wrong);
    const result = await reload();
    expect(result.delegated.event).toBe('certificate_refused');
    expect(result.delegated.names_lost).toEqual([DELEGATED]);
    expect(String(result.delegated.msg)).toMatch(new RegExp(`${delegatedCert}.*does not hold ${DELEGATED} \\(configured for this pair\\)`));
    expect(result.main.event).toBe('certificate_kept');
    expect(await served(DELEGATED)).toBe(serialOf(delegated.serial));
    install(delegatedCert, delegatedKey, delegated);
    expect((await reload()).delegated.event).toBe('certificate_kept');
  });

  it('refuses a self-signed replacement for a CA-issued certificate, even one with every name', async () => {
    const self = selfSignedLeaf([NAME, MATRIX, EXTRA]);
    install(mainCert, mainKey, self);
    const result = await reload();
    expect(result.main.event).toBe('certificate_refused');
    expect(String(result.main.reason)).toMatch(/is self-signed, and the one being served .* is CA-issued: federating servers refuse self-signed certificates/);
    expect(String(result.main.reason)).toMatch(/restart fedtls/);
    expect(result.main.names_lost).toEqual([]);
    expect(await served(NAME)).toBe(serialOf(main.serial));
    install(mainCert, mainKey, main);
    await reload();
  });

  it('swaps in a replacement that expires weeks before the served one, with a warning naming both dates', async () => {
    const older = issueLeaf(authority, { names: [NAME, MATRIX, EXTRA], days: 20 });
    install(mainCert, mainKey, older);
    const result = await reload();
    expect(result.main.event).toBe('certificate_replaced');
    expect(result.warnings.join('\n')).toMatch(new RegExp(`expires \\S+, (6[89]|70) days before the one it replaced \\(serial ${main.serial}, .*older certificate put back by mistake`));
    expect(await served(NAME)).toBe(serialOf(older.serial));
    main = older;
    // A renewal (later expiry) says nothing of the kind.
    const renewed = issueLeaf(authority, { names: [NAME, MATRIX, EXTRA] });
    install(mainCert, mainKey, renewed);
    const again = await reload();
    expect(again.main.event).toBe('certificate_replaced');
    expect(again.warnings.join('\n')).not.toMatch(/days before the one it replaced/);
    main = renewed;
  });

  it('swaps in a replacement that drops a name nobody configured, with a warning naming it', async () => {
    const fewer = issueLeaf(authority, { names: [NAME, MATRIX] });
    install(mainCert, mainKey, fewer);
    const result = await reload();
    expect(result.main.event).toBe('certificate_replaced');
    expect(result.warnings.join('\n')).toMatch(new RegExp(`no longer holds ${EXTRA}, which the one it replaced \\(serial ${main.serial}\\) held`));
    expect(await served(NAME)).toBe(serialOf(fewer.serial));
    main = fewer;
  });
});
