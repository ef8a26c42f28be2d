// A vitest reporter that ends the run with one plain line, "N passed, N failed, N skipped",
// which CI and people can read without parsing vitest's own summary. A suite or file that
// failed outside its tests (a beforeAll that threw: its tests are then skipped) counts as
// one failure, so the line never says "0 failed" for a run that failed.

import type { Reporter } from 'vitest/reporters';
import type { RunnerTask, RunnerTestFile } from 'vitest';

interface Totals { passed: number; failed: number; skipped: number }

/** Counts `tasks` into `totals`; returns how many failures it counted. */
function count(tasks: RunnerTask[], totals: Totals): number {
  let failures = 0;
  for (const task of tasks) {
    if (task.type === 'suite') {
      const inside = count(task.tasks, totals);
      failures += inside;
      if (task.result?.state === 'fail' && inside === 0) {
        totals.failed += 1;
        failures += 1;
      }
      continue;
    }
    const state = task.result?.state;
    if (state === 'pass') totals.passed += 1;
    else if (state === 'fail') {
      totals.failed += 1;
      failures += 1;
    } else totals.skipped += 1;
  }
  return failures;
}

export default class SummaryReporter implements Reporter {
  onFinished(files: RunnerTestFile[] = [], errors: unknown[] = []): void {
    const totals: Totals = { passed: 0, failed: 0, skipped: 0 };
    for (const file of files) {
      const inside = count(file.tasks, totals);
      if (file.result?.state === 'fail' && inside === 0) totals.failed += 1;
    }
    totals.failed += errors.length;
    process.stdout.write(`\ntests: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped\n`);
  }
}
