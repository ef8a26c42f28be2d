// Binding listeners with errors an admin can act on. Owns: the IPv4/IPv6 wildcard rules
// (a default `[::]` falls back to 0.0.0.0 on hosts without IPv6), and turning EADDRINUSE /
// EACCES / EADDRNOTAVAIL into one sentence naming the address and the fix.

import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { isIPv6, type Server } from 'node:net';
import type { ListenAddress } from '../config/types.js';
import type { Logger } from '../ops/log.js';

export class ListenError extends Error {
  constructor(
    readonly address: string,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ListenError';
  }
}

/** False when this machine has no IPv6 address at all (IPv6 disabled by sysctl, or no IPv6 in the kernel). */
export function machineHasIPv6(): boolean {
  try {
    return readFileSync('/proc/net/if_inet6', 'utf8').trim() !== '';
  } catch {
    return false;
  }
}

/** The lowest port an unprivileged process may bind (Linux sysctl; 1024 elsewhere). */
function unprivilegedPortStart(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim()) || 1024;
  } catch {
    return 1024;
  }
}

function explain(role: string, address: ListenAddress, code: string, configKey: string): string {
  const where = `${role} listener ${address.text}`;
  const ipv4Instead = `"${address.host === '::1' ? '127.0.0.1' : '0.0.0.0'}:${address.port}"`;
  if (code === 'EADDRNOTAVAIL' && isIPv6(address.host) && !machineHasIPv6()) code = 'EAFNOSUPPORT';
  if (code === 'EACCES' && address.port >= unprivilegedPortStart()) {
    return `${where}: permission denied by a security policy of this machine (SELinux/AppArmor, or SocketBindDeny= in the unit), not by the port number; allow it there, or change ${configKey}`;
  }
  switch (code) {
    case 'EADDRINUSE':
      return `${where}: the port is already in use by another program (find it with "ss -ltnp 'sport = :${address.port}'"); stop it, or change ${configKey}`;
    case 'EACCES':
      return `${where}: permission denied; ports below 1024 need CAP_NET_BIND_SERVICE (the systemd unit grants it with AmbientCapabilities=CAP_NET_BIND_SERVICE; by hand: setcap cap_net_bind_service=+ep "$(readlink -f "$(which node)")"), or change ${configKey}`;
    case 'EADDRNOTAVAIL':
      return `${where}: this machine has no such address; change ${configKey} to an address of this machine`;
    case 'EAFNOSUPPORT':
      return `${where}: this machine has no IPv6; change ${configKey} to an IPv4 address such as ${ipv4Instead}`;
    default:
      return `${where}: cannot listen (${code}); check ${configKey}`;
  }
}

function bindOnce(server: Server, host: string, port: number, ipv6Only: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => {
      server.off('listening', onListening);
      reject(error);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    // A TLS worker (workers > 1) shares the primary's socket: node:cluster hands out connections.
    server.listen({ host, port, ipv6Only, exclusive: !cluster.isWorker });
  });
}

/**
 * Binds `server` to `address`. `siblings` are the other addresses of the same listener, so a
 * `[::]` next to a `0.0.0.0` on the same port binds IPv6 only instead of colliding.
 * Resolves with the address really bound (port resolved when 0).
 */
export async function bindListener(server: Server, address: ListenAddress, siblings: ListenAddress[], role: string, configKey: string, log: Logger): Promise<string> {
  const ipv6Only = address.host === '::' && siblings.some((s) => s !== address && s.host === '0.0.0.0' && s.port === address.port);
  try {
    await bindOnce(server, address.host, address.port, ipv6Only);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'UNKNOWN';
    if (address.isDefault && address.host === '::' && (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL')) {
      log.warn({ event: 'ipv6_unavailable', listener: role, address: address.text }, `no IPv6 on this machine; the ${role} listener uses 0.0.0.0:${address.port} instead`);
      return bindListener(server, { ...address, host: '0.0.0.0', text: `0.0.0.0:${address.port}` }, [], role, configKey, log);
    }
    throw new ListenError(address.text, code, explain(role, address, code, configKey));
  }
  const bound = server.address();
  if (bound && typeof bound === 'object') {
    return bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
  }
  return address.text;
}
