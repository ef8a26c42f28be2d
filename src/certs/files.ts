// Atomic file writes for certificates, keys and state: write a temporary file in the same
// folder, fsync it, rename it over the target, fsync the folder. A reader (or a crash) sees
// the old file or the new one, never half of one. Also: telling, before anything is written,
// whether this process can write a folder at all (and what to run if not).

import { accessSync, closeSync, constants as fsConstants, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

export function ensureDirectory(dir: string, mode = 0o700): void {
  mkdirSync(dir, { recursive: true, mode });
}

export function writeFileAtomic(file: string, data: string | Buffer, mode = 0o644): void {
  const dir = path.dirname(file);
  ensureDirectory(dir);
  const temp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  let fd = -1;
  try {
    fd = openSync(temp, 'wx', mode);
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    renameSync(temp, file);
  } catch (error) {
    if (fd >= 0) closeSync(fd);
    rmSync(temp, { force: true });
    throw error;
  }
  try {
    const dirFd = openSync(dir, 'r');
    try { fsyncSync(dirFd); } finally { closeSync(dirFd); }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic.
  }
}

/** Null when `dir` exists (or can be created) and this process can write in it; else what is wrong and how to fix it. */
export function unwritableDirectory(dir: string, chownTarget: string): string | null {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    accessSync(dir, fsConstants.W_OK | fsConstants.X_OK);
    return null;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    let user: string;
    try { user = userInfo().username; } catch { user = `uid ${process.getuid?.() ?? '?'}`; }
    return `fedtls (running as ${user}) cannot write ${dir} (${code}); fix the ownership, e.g. chown -R ${user}: ${chownTarget}, then restart or run fedtls renew`;
  }
}
