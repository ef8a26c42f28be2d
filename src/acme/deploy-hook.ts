// acme.deploy_hook: an admin's command run by /bin/sh after each successful issuance, with
// FEDTLS_NAMES (space-separated), FEDTLS_CERTIFICATE_PATH and FEDTLS_PRIVATE_KEY_PATH in its
// environment (e.g. to copy the certificate to a TURN server and reload it). Promises: its
// outcome is logged (exit code, end of its stderr); a failure or a hang (killed after the
// timeout) is never fatal and never delays serving the new certificate.

import { spawn } from 'node:child_process';
import type { Logger } from '../ops/log.js';

export const DEPLOY_HOOK_TIMEOUT_MS = 10 * 60_000;

export interface DeployHookRun {
  command: string;
  names: string[];
  certificatePath: string;
  privateKeyPath: string;
  log: Logger;
  timeoutMs?: number;
}

export interface DeployHookResult {
  ok: boolean;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
}

export function runDeployHook(run: DeployHookRun): Promise<DeployHookResult> {
  const timeoutMs = run.timeoutMs ?? DEPLOY_HOOK_TIMEOUT_MS;
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', run.command], {
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true, // its own process group, so a timeout kills what it started too
      env: {
        ...process.env,
        FEDTLS_NAMES: run.names.join(' '),
        FEDTLS_CERTIFICATE_PATH: run.certificatePath,
        FEDTLS_PRIVATE_KEY_PATH: run.privateKeyPath,
      },
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => { stderr = (stderr + chunk).slice(-2000); });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { child.kill('SIGKILL'); }
    }, timeoutMs);
    let finished = false;
    const finish = (exitCode: number | null, signal: string | null, spawnError?: Error): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      const ok = !spawnError && !timedOut && exitCode === 0;
      const fields = { event: ok ? 'deploy_hook_done' : 'deploy_hook_failed', command: run.command, exit_code: exitCode, signal, duration_ms: Date.now() - started, stderr: stderr.trim() || undefined };
      if (ok) {
        run.log.info(fields, 'acme.deploy_hook finished');
      } else {
        const why = spawnError ? `could not start: ${spawnError.message}` : timedOut ? `killed after ${Math.round(timeoutMs / 1000)} s` : signal ? `killed by ${signal}` : `exit code ${exitCode}`;
        run.log.error(fields, `acme.deploy_hook failed (${why}); the new certificate is served anyway${stderr.trim() ? `; its stderr: ${stderr.trim().split('\n').slice(-3).join(' | ')}` : ''}`);
      }
      resolve({ ok, exitCode, signal, timedOut });
    };
    child.on('error', (error) => finish(null, null, error));
    child.on('close', (code, signal) => finish(code, signal));
  });
}
