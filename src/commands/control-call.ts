// Shared by the commands that talk to the running daemon (renew, certificates, status): find
// the control socket from the config and turn every failure into one line on stderr.

import { loadConfigForCommand } from './config-for-command.js';
import { callDaemon, type ControlCallOptions } from '../ops/control-client.js';
import type { ControlArgs } from '../ops/control-server.js';

export type DaemonAnswer = { ok: true; result: unknown } | { ok: false; exitCode: number };

/** Calls `command` on the daemon that `configPath` describes; reports failures on stderr. */
export async function askDaemon(configPath: string, command: string, args: ControlArgs, options: ControlCallOptions = {}): Promise<DaemonAnswer> {
  const config = loadConfigForCommand(configPath);
  if (!config) return { ok: false, exitCode: 1 };
  const socketPath = config.controlSocket;
  try {
    return { ok: true, result: await callDaemon(socketPath, command, args, options) };
  } catch (error) {
    process.stderr.write(`fedtls ${command}: ${(error as Error).message}\n`);
    return { ok: false, exitCode: 1 };
  }
}
