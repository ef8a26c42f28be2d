// The daemon's logger: pino JSON to stdout by default (journald, containers), or readable
// lines with `log.format: pretty`. Writes are synchronous so the last words before an exit
// are never lost. Nothing that holds key material may be passed to it.

import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export interface LogOptions {
  level: string;
  format: 'json' | 'pretty';
  /** Where to write; defaults to stdout (fd 1). */
  fd?: number;
}

export function createLogger(options: LogOptions): Logger {
  const fd = options.fd ?? 1;
  const base = {
    level: options.level,
    base: { pid: process.pid },
    // Defence in depth: any field with these names is replaced before it is written.
    redact: { paths: ['key', 'privateKey', 'private_key', '*.privateKey', '*.key', 'hmacKey', '*.hmacKey', 'keyAuthorization'], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (options.format === 'pretty') {
    const stream = pretty({ destination: fd, sync: true, colorize: false, singleLine: true, translateTime: 'SYS:yyyy-mm-dd HH:MM:ss', ignore: 'pid,hostname' });
    return pino(base, stream);
  }
  return pino(base, pino.destination({ dest: fd, sync: true }));
}

/** A logger for the moments before the config is read (config errors, CLI usage). */
export function bootstrapLogger(): Logger {
  return createLogger({ level: 'info', format: process.stdout.isTTY ? 'pretty' : 'json' });
}
