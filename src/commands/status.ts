// `fedtls status [--json]`: asks the running daemon (control socket) for its status report and
// prints it for people, or as JSON. Exit 0 when the daemon answered (the container health
// check relies on that), 1 when it did not.

import { askDaemon } from './control-call.js';
import { formatStatusReport, type StatusReport } from '../ops/status.js';

export async function statusCommand(options: { configPath: string; json: boolean }): Promise<number> {
  const answer = await askDaemon(options.configPath, 'status', {}, { timeoutMs: 10_000 });
  if (!answer.ok) return answer.exitCode;
  const report = answer.result as StatusReport;
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatusReport(report));
  return 0;
}
