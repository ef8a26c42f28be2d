// `fedtls run`: load the config (logging its warnings), start the daemon, and map signals
// onto it (HUP → reload certificate files; TERM/INT → graceful stop; a second TERM/INT → exit now).

import { loadConfig, ConfigError } from '../config/load.js';
import { createLogger, bootstrapLogger } from '../ops/log.js';
import { Daemon, StateDirError } from '../daemon.js';
import { ListenError } from '../http/listen.js';
import { ControlSocketError } from '../ops/control-server.js';
import { SystemdNotifier } from '../ops/notify.js';

export async function runCommand(configPath: string): Promise<number> {
  let config;
  try {
    config = loadConfig(configPath);
  } catch (error) {
    if (error instanceof ConfigError) {
      bootstrapLogger().fatal({ event: 'config_invalid', file: error.file, problems: error.problems }, error.message);
      return 1;
    }
    throw error;
  }
  const log = createLogger(config.log);
  for (const warning of config.warnings) {
    log.warn({ event: 'config_warning', file: config.file, setting: warning.key }, `${config.file}: ${warning.key}: ${warning.message}`);
  }
  const daemon = new Daemon(config, log);
  const notifier = new SystemdNotifier({ log });

  process.on('uncaughtException', (error) => {
    log.fatal({ event: 'crash', error: error.stack ?? String(error) }, `internal error, exiting: ${error.message}`);
    process.exit(70);
  });
  process.on('unhandledRejection', (reason) => {
    log.error({ event: 'unhandled_rejection', error: reason instanceof Error ? reason.stack : String(reason) }, 'internal error (unhandled promise rejection); continuing');
  });

  // Signals are handled from the first moment, also while start() runs: a SIGHUP then (e.g.
  // `systemctl reload` racing the start) is applied once started, a SIGTERM/SIGINT stops the
  // daemon as soon as start() has settled, and a second TERM/INT exits at once.
  let started = false;
  let hupWhileStarting = false;
  let stopRequested = false;
  let settle: (code: number) => void = () => undefined;
  const finished = new Promise<number>((resolve) => { settle = resolve; });

  const reloadNow = (): void => {
    void notifier.reloading('reloading certificate files');
    try {
      daemon.reload();
    } catch (error) {
      log.error({ event: 'reload_failed', error: (error as Error).message }, `reload failed: ${(error as Error).message}`);
    }
    void daemon.reloadSettled.catch(() => undefined).then(() => notifier.ready(daemon.summary()));
  };
  const stopNow = (): void => {
    const stopped = Promise.all([notifier.stopping('stopping: draining requests in flight'), daemon.stop()]);
    stopped.then(() => settle(0), (error: Error) => {
      log.error({ event: 'stop_failed', error: error.message }, `error while stopping: ${error.message}`);
      settle(1);
    });
  };
  process.on('SIGHUP', () => {
    if (started) reloadNow();
    else hupWhileStarting = true;
  });
  const onStop = (signal: NodeJS.Signals): void => {
    if (stopRequested) {
      log.warn({ event: 'exit_now', signal }, `${signal} again: exiting without waiting`);
      settle(1);
      return;
    }
    stopRequested = true;
    if (started) stopNow();
    else log.info({ event: 'stop_requested', signal }, `${signal} during start-up: stopping as soon as start-up has settled`);
  };
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);

  try {
    await daemon.start();
  } catch (error) {
    // Release what did start first, so that the reason is the last line in the log.
    await daemon.stop({ quiet: true }).catch(() => undefined);
    const message = error instanceof ListenError ? error.message : `fedtls could not start: ${(error as Error).message}`;
    if (error instanceof ListenError) {
      log.fatal({ event: 'listen_failed', address: error.address, code: error.code }, message);
    } else if (error instanceof ControlSocketError || error instanceof StateDirError) {
      log.fatal({ event: error instanceof StateDirError ? 'state_dir_unusable' : 'control_socket_failed' }, message); // already says what to do; no stack
    } else {
      log.fatal({ event: 'start_failed', error: (error as Error).stack ?? String(error) }, message);
    }
    await notifier.status(message); // shown by `systemctl status fedtls`
    return 1;
  }
  // READY=1 goes out before any RELOADING=1 or STOPPING=1, so systemd sees them in order.
  await notifier.ready(daemon.summary());
  started = true;
  if (stopRequested) stopNow();
  else if (hupWhileStarting) reloadNow();
  return finished;
}
