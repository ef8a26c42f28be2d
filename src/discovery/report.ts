// The result of `fedtls check`: a list of findings, each one step a remote homeserver takes,
// with its outcome and, when something is wrong, the fix in an admin's terms. Owns the
// verdict rule (federation works when nothing failed; warnings do not fail it) and the two
// renderings: readable text and JSON for scripts.

export type FindingStatus = 'ok' | 'info' | 'warn' | 'fail';

export interface Finding {
  /** Which step: server_name, well_known, srv, address, tls, certificate, version, keys. */
  check: string;
  status: FindingStatus;
  summary: string;
  /** Extra facts worth showing (one line each). */
  details?: string[];
  /** What to change, when status is warn or fail. */
  fix?: string;
  /** The address this finding is about ("matrix.example.org:8448 at 192.0.2.1"), for per-address checks. */
  target?: string;
}

export interface CheckReport {
  serverName: string;
  resolver: string;
  checkedAt: string;
  findings: Finding[];
  /** True when no finding failed: a remote homeserver would federate with this server. */
  ok: boolean;
}

export function buildReport(serverName: string, resolver: string, findings: Finding[]): CheckReport {
  return { serverName, resolver, checkedAt: new Date().toISOString(), findings, ok: !findings.some((f) => f.status === 'fail') };
}

const LABELS: Record<FindingStatus, string> = { ok: 'ok', info: 'info', warn: 'WARN', fail: 'FAIL' };

export function formatReportText(report: CheckReport): string {
  const lines = [`Checking ${report.serverName} as a remote homeserver would (DNS: ${report.resolver})`, ''];
  let currentTarget: string | undefined;
  for (const finding of report.findings) {
    if (finding.target !== currentTarget) {
      currentTarget = finding.target;
      if (currentTarget) lines.push('', `${currentTarget}`);
    }
    lines.push(`  ${LABELS[finding.status].padEnd(4)}  ${finding.check.padEnd(12)} ${finding.summary}`);
    for (const detail of finding.details ?? []) lines.push(`${' '.repeat(21)}${detail}`);
    if (finding.fix) lines.push(`${' '.repeat(21)}fix: ${finding.fix}`);
  }
  const failures = report.findings.filter((f) => f.status === 'fail').length;
  const warnings = report.findings.filter((f) => f.status === 'warn').length;
  const warned = warnings ? ` (${warnings} warning${warnings === 1 ? '' : 's'})` : '';
  lines.push('', report.ok
    ? `Result: federation with ${report.serverName} would work${warned}.`
    : `Result: federation with ${report.serverName} would FAIL: ${failures} problem${failures === 1 ? '' : 's'}${warned}.`);
  return `${lines.join('\n')}\n`;
}

export function formatReportJson(report: CheckReport): string {
  return `${JSON.stringify({
    server_name: report.serverName,
    resolver: report.resolver,
    checked_at: report.checkedAt,
    ok: report.ok,
    findings: report.findings,
  }, null, 2)}\n`;
}
