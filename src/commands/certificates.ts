// `fedtls certificates`: lists each configured name with its source (acme/file), serial,
// issuer, expiry, days left and files; a table for people, `--json` for scripts. Asks the
// running daemon (control socket) what it serves; when no daemon answers, reads the
// configured files itself (the same loading and validation the daemon does on reload) and
// says so. Exit 0 when every configured source loads, 1 when one does not (or the config is
// bad): offline, when its files do not load; live, when the daemon's last load of it was
// refused, even though an older pair from it is still served. Table and --json alike.

import { CertificateStore } from '../certs/store.js';
import { buildCertificateReport, formatCertificateReport, type CertificateReport } from '../certs/report.js';
import { certificateSources } from '../daemon.js';
import type { Config } from '../config/types.js';
import { callDaemon, DaemonUnreachableError } from '../ops/control-client.js';
import { loadConfigForCommand } from './config-for-command.js';

/** The report built from the files on disk, without a running daemon. */
export function reportFromFiles(config: Config, now = new Date()): CertificateReport {
  const store = new CertificateStore(config.tls.defaultName);
  store.reloadAll(certificateSources(config), now);
  return buildCertificateReport(store.states(), now, 'files', config.serverHost);
}

export async function certificatesCommand(configPath: string, options: { json: boolean }): Promise<number> {
  const config = loadConfigForCommand(configPath);
  if (!config) return 1;
  let report: CertificateReport;
  try {
    report = await callDaemon(config.controlSocket, 'certificates') as CertificateReport;
  } catch (error) {
    if (!(error instanceof DaemonUnreachableError) || /permission denied/.test(error.message)) {
      process.stderr.write(`fedtls certificates: ${(error as Error).message}\n`);
      return 1;
    }
    process.stderr.write(`fedtls certificates: ${error.message}\nReading the configured files instead.\n`);
    report = reportFromFiles(config);
  }
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatCertificateReport(report));
  return certificateReportFailed(report) ? 1 : 0;
}

/** True when a configured source does not load (offline) or its last load was refused (live, maybe still serving an older pair). */
export function certificateReportFailed(report: CertificateReport): boolean {
  return report.certificates.some((row) => row.status === 'refused' || row.problem !== null);
}
