// The `fedtls certificates` report: what each configured name is served with (source, serial,
// issuer, validity, days left, files) and what is wrong with it. Pure functions of the
// store's state and a clock, so the CLI (reading files itself) and the running daemon
// (answering from its live store) build the very same report.

import { nameMatches } from './pem.js';
import type { SourceState } from './store.js';

const DAY_MS = 86_400_000;

export interface CertificateReportRow {
  /** One configured (or, without configuration, certificate) name. */
  name: string;
  source_id: string;
  /** acme: obtained and renewed by fedtls; file: managed by hand. */
  source: 'acme' | 'file';
  /**
   * serving: the running daemon serves a pair; valid: read from the files (no daemon asked), the
   * pair loads; refused: the files do not load (nothing, or an older pair, is served); missing:
   * ACME has not obtained one yet.
   */
  status: 'serving' | 'valid' | 'refused' | 'missing';
  /** False when the served certificate does not hold this name. */
  covered: boolean;
  serial: string | null;
  issuer: string | null;
  not_before: string | null;
  not_after: string | null;
  /** Whole days left, rounded down (negative once expired). */
  days_left: number | null;
  key_type: string | null;
  certificate_path: string;
  private_key_path: string;
  warnings: string[];
  /** The last reload that was refused for this source (the previous pair, if any, is still served). */
  problem: { file: string; reason: string; at: string } | null;
}

export interface CertificateReport {
  generated_at: string;
  /** daemon: the running daemon's live store; files: read from disk by this command. */
  origin: 'daemon' | 'files';
  certificates: CertificateReportRow[];
  /** Problems of the whole set, e.g. no certificate holds server_name. */
  warnings: string[];
}

/** The issuer's CN (or the whole DN when it has none), for the table. */
function shortIssuer(issuer: string): string {
  return /(?:^|, )CN=([^,]+)/.exec(issuer)?.[1] ?? issuer;
}

/** `serverName`: the host part of server_name, which some certificate (or ACME) must cover. */
export function buildCertificateReport(states: SourceState[], now: Date, origin: CertificateReport['origin'], serverName?: string): CertificateReport {
  const certificates: CertificateReportRow[] = [];
  const warnings: string[] = [];
  if (serverName) {
    const coveredByAPair = states.some(({ entry }) => entry?.pair.leaf.names.some((pattern) => nameMatches(pattern, serverName)));
    const acmeWillObtain = states.some(({ source, entry }) => source.kind === 'acme' && !entry && source.names.some((name) => nameMatches(name, serverName)));
    if (!coveredByAPair && !acmeWillObtain) {
      warnings.push(`no certificate holds server_name ${serverName}: peers that connect to ${serverName} will refuse the TLS handshake (fine only if /.well-known/matrix/server delegates to a name that is covered)`);
    }
  }
  for (const { source, entry, refusal } of states) {
    const pair = entry?.pair ?? null;
    const names = source.names.length > 0 ? source.names : pair?.leaf.names ?? [];
    const status: CertificateReportRow['status'] = pair ? (origin === 'daemon' ? 'serving' : 'valid') : refusal ? 'refused' : 'missing';
    for (const name of names.length > 0 ? names : ['(unknown)']) {
      certificates.push({
        name,
        source_id: source.id,
        source: source.kind,
        status,
        covered: pair ? pair.leaf.names.some((pattern) => nameMatches(pattern, name)) : false,
        serial: pair?.leaf.serial ?? null,
        issuer: pair?.leaf.issuer ?? null,
        not_before: pair?.leaf.notBefore.toISOString() ?? null,
        not_after: pair?.leaf.notAfter.toISOString() ?? null,
        days_left: pair ? Math.floor((pair.leaf.notAfter.getTime() - now.getTime()) / DAY_MS) : null,
        key_type: pair?.keyType ?? null,
        certificate_path: source.certificatePath,
        private_key_path: source.privateKeyPath,
        warnings: pair?.warnings ?? [],
        problem: refusal ? { file: refusal.file, reason: refusal.reason, at: refusal.at.toISOString() } : null,
      });
    }
  }
  return { generated_at: now.toISOString(), origin, certificates, warnings };
}

function renderTable(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]): string => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** A table for people: one row per name, then the problems and warnings below it. */
export function formatCertificateReport(report: CertificateReport): string {
  if (report.certificates.length === 0) return 'No certificates are configured.\n';
  const header = ['NAME', 'SOURCE', 'STATUS', 'SERIAL', 'ISSUER', 'NOT AFTER', 'DAYS LEFT', 'FILES'];
  const rows = report.certificates.map((row) => [
    row.name,
    row.source,
    (row.status === 'serving' || row.status === 'valid') && !row.covered ? 'NAME NOT IN CERT' : row.status,
    row.serial ?? '-',
    row.issuer ? shortIssuer(row.issuer) : '-',
    row.not_after?.replace(/\.\d{3}Z$/, 'Z') ?? '-',
    row.days_left === null ? '-' : String(row.days_left),
    row.certificate_path === row.private_key_path ? row.certificate_path : `${row.certificate_path} ${row.private_key_path}`,
  ]);
  const notes: string[] = [];
  const seen = new Set<string>();
  for (const row of report.certificates) {
    if (seen.has(row.source_id)) continue;
    seen.add(row.source_id);
    if (row.problem) {
      const served = row.status === 'serving' ? `still serving serial ${row.serial}` : row.status === 'valid' ? `serial ${row.serial} loads` : 'nothing served from this source';
      notes.push(`problem (${row.source_id}): ${row.problem.file}: ${row.problem.reason} [${served}]`);
    }
    for (const warning of row.warnings) notes.push(`warning (${row.source_id}): ${warning}`);
  }
  for (const warning of report.warnings ?? []) notes.push(`warning: ${warning}`);
  const origin = report.origin === 'files'
    ? 'Read from the configured files: no running daemon answered, so "valid" means the files load, not that they are served.'
    : 'As served by the running daemon.';
  return `${renderTable(header, rows)}\n${notes.length > 0 ? `\n${notes.join('\n')}\n` : ''}\n${origin}\n`;
}
