// The certificate commands of the control channel: `certificates` answers with the report
// of what the running daemon serves right now (its live store), built by certs/report.ts.

import type { ControlServer } from '../ops/control-server.js';
import { buildCertificateReport } from './report.js';
import type { CertificateStore } from './store.js';

export function registerCertificateCommands(control: ControlServer, store: CertificateStore, serverHost: string): void {
  control.register('certificates', () => buildCertificateReport(store.states(), new Date(), 'daemon', serverHost));
}
