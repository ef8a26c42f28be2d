// Entry point of a TLS worker process (forked by WorkerPool with node:cluster). Asks the
// primary for the config text it read and the session ticket keys (and takes each rotation),
// builds the same Config, runs a Daemon in the 'worker' role (TLS listeners only),
// reloads certificate files when the primary says so and answers with what it serves, and
// drains on the primary's stop or on SIGTERM/SIGINT.

import cluster from 'node:cluster';
import { loadConfig } from '../config/load.js';
import { createLogger, type Logger } from '../ops/log.js';
import { Daemon } from '../daemon.js';
import { ListenError } from '../http/listen.js';
import { SessionTicketKeys } from '../http/session-tickets.js';
import { isToWorker, WORKER_CONFIG_FILE_ENV, type FromWorker, type StopAnswer } from './messages.js';

/** Sends to the primary; once the primary is gone (it is stopping or died) there is no one to tell. */
function send(message: FromWorker): void {
  if (!process.connected) return;
  process.send?.(message, undefined, {}, () => undefined);
}

/**
 * The config text and ticket keys from the primary, asked for once this process listens for
 * the answer (so it cannot be missed). Waits as long as the primary lives (a stopped primary
 * answers when it continues); exits if it goes away first.
 */
function receiveStartData(): Promise<{ configText: string; ticketKeys: unknown }> {
  return new Promise((resolve) => {
    const primaryGone = (): never => process.exit(0);
    const onMessage = (message: unknown): void => {
      if (!isToWorker(message) || message.type !== 'fedtls:start-data') return;
      process.off('message', onMessage);
      process.off('disconnect', primaryGone);
      resolve({ configText: message.configText, ticketKeys: message.ticketKeys });
    };
    process.on('message', onMessage);
    process.once('disconnect', primaryGone);
    send({ type: 'fedtls:need-start-data' });
  });
}

async function main(): Promise<void> {
  const file = process.env[WORKER_CONFIG_FILE_ENV];
  if (!cluster.isWorker || !file) {
    process.stderr.write('fedtls: worker-main.js is started by `fedtls run` (workers > 1), not by hand\n');
    process.exit(2);
  }
  // New keys after a rotation may come right behind the start data, before the rest of this
  // function runs: they are kept from the first moment and applied once there are keys.
  let ticketKeys: SessionTicketKeys | null = null;
  let rotatedKeys: unknown = null;
  let log: Logger | null = null;
  process.on('message', (message: unknown) => {
    if (!isToWorker(message) || message.type !== 'fedtls:ticket-keys') return;
    if (!ticketKeys) rotatedKeys = message.keys;
    else if (!ticketKeys.replace(message.keys)) log?.warn({ event: 'ticket_keys_invalid' }, 'the primary sent malformed session ticket keys; this worker keeps the ones it has until the next rotation');
  });
  const start = await receiveStartData();
  const config = loadConfig(file, start.configText);
  log = createLogger(config.log).child({ worker: cluster.worker!.id });
  ticketKeys = SessionTicketKeys.fromExported(start.ticketKeys);
  if (!ticketKeys) throw new Error('the primary sent malformed session ticket keys');
  if (rotatedKeys) ticketKeys.replace(rotatedKeys);
  const daemon = new Daemon(config, log, 'worker', ticketKeys);

  // A signal sent to the whole process group (Ctrl-C, systemd's stop) reaches workers too:
  // SIGHUP is the primary's to handle; TERM/INT drain like the primary's stop.
  process.on('SIGHUP', () => undefined);
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    daemon.stop().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('disconnect', stop);
  process.on('uncaughtException', (error) => {
    log.fatal({ event: 'crash', error: error.stack ?? String(error) }, `internal error in a TLS worker, exiting: ${error.message}`);
    process.exit(70);
  });

  process.on('message', (message: unknown) => {
    if (!isToWorker(message)) return;
    if (message.type === 'fedtls:stop') {
      stop(); // closes the listeners synchronously, so the primary's shared socket closes before the answer arrives
      const answer: StopAnswer = { inFlight: daemon.inFlight };
      send({ type: 'fedtls:answer', id: message.id, payload: answer });
      return;
    }
    if (message.type === 'fedtls:reload') {
      daemon.reloadCertificates(message.trigger);
      const serials: Record<string, string | null> = {};
      for (const entry of daemon.store.list()) serials[entry.source.id] = entry.pair.leaf.serial;
      send({ type: 'fedtls:answer', id: message.id, payload: serials });
    } else if (message.type === 'fedtls:metrics') {
      send({ type: 'fedtls:answer', id: message.id, payload: daemon.metrics.counters() });
    }
  });

  try {
    await daemon.start();
  } catch (error) {
    const listen = error instanceof ListenError ? error : null;
    send({ type: 'fedtls:start-failed', message: (error as Error).message, address: listen?.address ?? null, code: listen?.code ?? null });
    process.exitCode = 1;
    process.disconnect?.();
    return;
  }
  for (const listener of daemon.listeners) {
    send({ type: 'fedtls:listening', role: listener.role, configured: listener.configured, address: listener.address });
  }
  send({ type: 'fedtls:ready' });
}

void main();
