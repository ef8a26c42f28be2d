// Atomic file writes for certificates, keys and state: write a temporary file in the same
// folder, fsync it, rename it over the target, fsync the folder. A reader (or a crash) sees
// the old file or the new one, never half of one. Also: telling, before anything is written,
// whether this process can write a folder at all (and what to run if not), and creating
// folders one level at a time: Node's recursive mkdir loops forever, in synchronous code that
// no signal interrupts, where a parent exists but refuses new entries with ENOENT (/proc).

import { accessSync, closeSync, constants as fsConstants, fsyncSync, mkdirSync, openSync, renameSync, rmSync, statfsSync, statSync, writeSync } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

/** An error from creating or using a folder, with the path it is about. */
class DirectoryError extends Error {
  constructor(readonly code: string, readonly at: string, readonly parentExists: boolean) {
    super(`${code}: ${at}`);
  }
}

/** Creates `dir` and its missing parents, one level at a time; throws DirectoryError. */
export function ensureDirectory(dir: string, mode = 0o700): void {
  const missing: string[] = [];
  let at = path.resolve(dir);
  for (;;) {
    try {
      if (!statSync(at).isDirectory()) throw new DirectoryError('ENOTDIR', at, true);
      break;
    } catch (error) {
      if (error instanceof DirectoryError) throw error;
      const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
      if (code !== 'ENOENT') throw new DirectoryError(code, at, true);
      missing.push(at);
      const parent = path.dirname(at);
      if (parent === at) break;
      at = parent;
    }
  }
  for (const level of missing.reverse()) {
    try {
      mkdirSync(level, { mode });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
      if (code !== 'EEXIST') throw new DirectoryError(code, level, true);
    }
  }
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

/**
 * Null when `dir` exists (or can be created) and this process can write in it; else what is
 * wrong and how to fix it. `ownershipHint` is added when the fix is the folder's owner.
 */
export function unwritableDirectory(dir: string, chownTarget: string, ownershipHint = ''): string | null {
  try {
    ensureDirectory(dir);
    accessSync(dir, fsConstants.W_OK | fsConstants.X_OK);
    return null;
  } catch (error) {
    const code = error instanceof DirectoryError ? error.code : (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    const at = error instanceof DirectoryError ? error.at : dir;
    return directoryProblem(dir, at, code, chownTarget, ownershipHint);
  }
}

/** /proc and /sys (statfs magic numbers): folders cannot be made there, whoever asks. */
const VIRTUAL_FILE_SYSTEMS = new Set([0x9fa0, 0x62656572]);

function onVirtualFileSystem(at: string): boolean {
  for (let dir = path.dirname(at); ; dir = path.dirname(dir)) {
    try {
      return VIRTUAL_FILE_SYSTEMS.has(Number(statfsSync(dir).type));
    } catch {
      if (path.dirname(dir) === dir) return false;
    }
  }
}

/** The path at or above `at` that exists and is not a folder (for ENOTDIR). */
function fileAbove(at: string): string {
  for (let dir = at; ; dir = path.dirname(dir)) {
    try {
      if (!statSync(dir).isDirectory()) return dir;
    } catch {
      // missing or not reachable: look higher
    }
    if (path.dirname(dir) === dir) return at;
  }
}

/**
 * Like unwritableDirectory, without creating anything (for check-config): whether `dir`
 * exists and is writable, or could be created under its nearest existing parent.
 */
export function directoryCannotBeUsed(dir: string, chownTarget: string): string | null {
  let at = path.resolve(dir);
  for (;;) {
    try {
      if (!statSync(at).isDirectory()) return directoryProblem(dir, at, 'ENOTDIR', chownTarget);
      break;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
      if (code !== 'ENOENT') return directoryProblem(dir, at, code, chownTarget);
      const parent = path.dirname(at);
      if (parent === at) return null;
      at = parent;
    }
  }
  // `at` is the folder itself, or the nearest existing parent in which the rest would be made.
  if (at !== path.resolve(dir) && onVirtualFileSystem(path.join(at, 'x'))) return directoryProblem(dir, path.join(at, path.relative(at, dir).split(path.sep)[0]!), 'ENOENT', chownTarget);
  try {
    accessSync(at, fsConstants.W_OK | fsConstants.X_OK);
    return null;
  } catch (error) {
    return directoryProblem(dir, at, (error as NodeJS.ErrnoException).code ?? 'EACCES', chownTarget);
  }
}

function directoryProblem(dir: string, at: string, code: string, chownTarget: string, ownershipHint = ''): string {
  if ((code === 'ENOENT' || code === 'EPERM' || code === 'EACCES') && onVirtualFileSystem(at)) code = 'ENOENT';
  let user: string;
  try { user = userInfo().username; } catch { user = `uid ${process.getuid?.() ?? '?'}`; }
  switch (code) {
    case 'EROFS':
      return `fedtls cannot write ${dir}: ${at} is on a read-only file system (EROFS). Under systemd (ProtectSystem=strict) only /var/lib/fedtls is writable: keep state_dir there, or create this folder (owned by the fedtls user) and allow it with ReadWritePaths=${dir} in a drop-in (systemctl edit fedtls)`;
    case 'ENOTDIR':
      return `fedtls cannot create ${dir}: ${fileAbove(at)} is a file, not a folder (ENOTDIR); choose another path, e.g. /var/lib/fedtls`;
    case 'ENOENT':
      // The parent exists, yet creating in it fails: a virtual file system.
      return `fedtls cannot create ${at}: its parent folder is on a virtual file system (such as /proc or /sys) that takes no new folders; choose a path on a disk, e.g. /var/lib/fedtls`;
    case 'EACCES':
    case 'EPERM':
      return `fedtls (running as ${user}) cannot write ${dir} (${code}); fix the ownership, e.g. chown -R ${user}: ${chownTarget}, then restart or run fedtls renew${ownershipHint}`;
    default:
      return `fedtls (running as ${user}) cannot create or write ${dir} (${code} at ${at}); check the path, its owner and its file system`;
  }
}
