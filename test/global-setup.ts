// One temporary folder for a whole test run: every test's temp files (configs, state_dir,
// certificates, Pebble's work dir, the daemon's own temp files) go under it through TMPDIR,
// which the test processes and the daemons they start inherit; it is removed when the run
// ends, so a run leaves nothing behind in /tmp.

import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export default function setup(): () => void {
  const runDir = mkdtempSync(path.join(os.tmpdir(), 'fedtls-tests-'));
  // Like /tmp itself: the start-up tests run the daemon as an unprivileged user, which must
  // reach (and may create) files under it.
  chmodSync(runDir, 0o1777);
  process.env.TMPDIR = runDir;
  return () => {
    if (process.env.FEDTLS_KEEP_TEST_FILES) {
      process.stdout.write(`test files kept in ${runDir}\n`);
      return;
    }
    rmSync(runDir, { recursive: true, force: true });
  };
}
