// The messages between the primary process and its TLS worker processes (node:cluster IPC).
// The primary owns ACME, the challenge listener, the control socket and the decision to
// reload; a worker owns nothing but its TLS listeners and its copy of the certificate store,
// which it fills from the same files when the primary says so, and the session ticket keys
// the primary gives it.

import type { ExportedTicketKeys } from '../http/session-tickets.js';

/**
 * Primary → worker. Those with an id are answered with `fedtls:answer` and that id; a stop is
 * answered as soon as the worker has stopped accepting (it then drains and exits), with a
 * StopAnswer. Start data (the config text, which may hold secrets such as the ACME EAB key, and
 * the ticket keys) answers the worker's first message; new ticket keys follow each rotation.
 * Secrets travel over this channel only, never in a worker's environment (readable in
 * /proc/<pid>/environ for the process's whole life).
 */
export type ToWorker =
  | { type: 'fedtls:start-data'; configText: string; ticketKeys: ExportedTicketKeys }
  | { type: 'fedtls:ticket-keys'; keys: ExportedTicketKeys }
  | { type: 'fedtls:reload'; id: number; trigger: string }
  | { type: 'fedtls:metrics'; id: number }
  | { type: 'fedtls:stop'; id: number };

/** Worker → primary. */
export type FromWorker =
  | { type: 'fedtls:need-start-data' }
  | { type: 'fedtls:listening'; role: string; configured: string; address: string }
  | { type: 'fedtls:ready' }
  | { type: 'fedtls:start-failed'; message: string; address: string | null; code: string | null }
  /** Reload → the serial served per source id; metrics → the worker's TrafficCounters; stop → a StopAnswer. */
  | { type: 'fedtls:answer'; id: number; payload: unknown };

/** A worker's answer to stop: the requests it still had in flight when it stopped accepting. */
export interface StopAnswer {
  inFlight: number;
}

export function isFromWorker(message: unknown): message is FromWorker {
  return typeof message === 'object' && message !== null && typeof (message as { type?: unknown }).type === 'string'
    && (message as { type: string }).type.startsWith('fedtls:');
}

export function isToWorker(message: unknown): message is ToWorker {
  return isFromWorker(message);
}

/** The environment variable carrying the config file's path (for messages) from the primary to its workers. */
export const WORKER_CONFIG_FILE_ENV = 'FEDTLS_WORKER_CONFIG_FILE';
