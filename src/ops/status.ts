// `fedtls status`: what the running daemon reports about itself over the control channel —
// listeners, certificates (names, expiry, next renewal), ACME state and last error, whether
// the homeserver answers, uptime — and how the CLI prints it for people. Promises: building a
// report changes nothing (the backend probe only opens and closes a TCP connection), and the
// JSON form keeps the same field names across versions (snake_case, ISO times).

import net from 'node:net';
import type { CertificateStore } from '../certs/store.js';
import type { AcmeManager } from '../acme/manager.js';

export interface StatusReport {
  server_name: string;
  pid: number;
  started_at: string;
  uptime_seconds: number;
  listeners: { role: string; address: string }[];
  certificates: {
    source: string;
    kind: 'acme' | 'file';
    names: string[];
    serial: string;
    not_after: string;
    /** For ACME certificates: when renewal is due; null for files managed by hand. */
    renew_at: string | null;
    certificate_path: string;
  }[];
  acme: null | {
    names: string[];
    state: string;
    next_check: string | null;
    last_issued: string | null;
    last_error: { message: string; at: string } | null;
    consecutive_failures: number;
  };
  backend: { url: string; reachable: boolean; connect_ms: number | null; error: string | null };
}

export interface StatusSources {
  serverName: string;
  startedAt: Date;
  listeners: { role: string; address: string }[];
  store: CertificateStore;
  acme: AcmeManager | null;
  backend: URL;
}

/** Opens (and closes) one TCP connection to the backend: is anything listening there? */
export function probeBackend(backend: URL, timeoutMs = 2000): Promise<StatusReport['backend']> {
  const port = Number(backend.port) || (backend.protocol === 'https:' ? 443 : 80);
  const host = backend.hostname.replace(/^\[|\]$/g, '');
  const started = process.hrtime.bigint();
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (error: string | null): void => {
      clearTimeout(timer);
      socket.destroy();
      const ms = Number((process.hrtime.bigint() - started) / 1000n) / 1000;
      resolve({ url: backend.origin, reachable: error === null, connect_ms: error === null ? Math.round(ms * 10) / 10 : null, error });
    };
    const timer = setTimeout(() => done(`no answer within ${timeoutMs} ms`), timeoutMs);
    socket.once('connect', () => done(null));
    socket.once('error', (error: NodeJS.ErrnoException) => done(error.code ?? error.message));
  });
}

export async function buildStatusReport(sources: StatusSources, now = new Date()): Promise<StatusReport> {
  const acmeStatus = sources.acme?.getStatus() ?? null;
  const iso = (date: Date | null | undefined): string | null => date?.toISOString() ?? null;
  return {
    server_name: sources.serverName,
    pid: process.pid,
    started_at: sources.startedAt.toISOString(),
    uptime_seconds: Math.floor((now.getTime() - sources.startedAt.getTime()) / 1000),
    listeners: sources.listeners.map(({ role, address }) => ({ role, address })),
    certificates: sources.store.list().map(({ source, pair }) => ({
      source: source.id,
      kind: source.kind,
      names: source.names.length > 0 ? source.names : pair.leaf.names,
      serial: pair.leaf.serial,
      not_after: pair.leaf.notAfter.toISOString(),
      renew_at: source.kind === 'acme' && sources.acme?.source.id === source.id ? iso(sources.acme.renewalDue()) : null,
      certificate_path: source.certificatePath,
    })),
    acme: acmeStatus && {
      names: acmeStatus.names,
      state: acmeStatus.state,
      next_check: iso(acmeStatus.nextCheck),
      last_issued: iso(acmeStatus.lastIssued),
      last_error: acmeStatus.lastError && { message: acmeStatus.lastError.message, at: acmeStatus.lastError.at.toISOString() },
      consecutive_failures: acmeStatus.consecutiveFailures,
    },
    backend: await probeBackend(sources.backend),
  };
}

/** Rounded for people: "58d 3h", "4h 12m", "3m 5s", "12s". */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  const units: [number, string][] = [[86_400, 'd'], [3_600, 'h'], [60, 'm'], [1, 's']];
  const index = Math.max(0, units.findIndex(([size]) => seconds >= size));
  const [big, bigName] = units[index]!;
  const [small, smallName] = units[Math.min(index + 1, units.length - 1)]!;
  const first = Math.floor(seconds / big);
  const second = Math.floor((seconds % big) / small);
  return big === small || second === 0 ? `${first}${bigName}` : `${first}${bigName} ${second}${smallName}`;
}

function relative(iso: string, now: Date): string {
  const ms = new Date(iso).getTime() - now.getTime();
  return ms >= 0 ? `in ${humanDuration(ms)}` : `${humanDuration(-ms)} ago`;
}

/** The report as a person reads it. */
export function formatStatusReport(report: StatusReport, now = new Date()): string {
  const lines: string[] = [];
  lines.push(`fedtls for ${report.server_name}: running for ${humanDuration(report.uptime_seconds * 1000)} (pid ${report.pid}, since ${report.started_at})`);
  lines.push('', 'Listeners:');
  for (const listener of report.listeners) lines.push(`  ${listener.role.padEnd(11)} ${listener.address}`);
  lines.push('', 'Certificates:');
  if (report.certificates.length === 0) lines.push('  none served yet');
  for (const cert of report.certificates) {
    const expired = new Date(cert.not_after) <= now;
    lines.push(`  ${cert.names.join(', ')}`);
    lines.push(`    ${expired ? 'EXPIRED' : 'expires'} ${cert.not_after} (${relative(cert.not_after, now)}), serial ${cert.serial}`);
    lines.push(cert.renew_at ? `    renewal due ${cert.renew_at} (${relative(cert.renew_at, now)})` : `    managed by hand (${cert.certificate_path}); fedtls does not renew it`);
  }
  lines.push('');
  if (report.acme) {
    const next = report.acme.next_check ? `, next check ${report.acme.next_check} (${relative(report.acme.next_check, now)})` : '';
    lines.push(`ACME: ${report.acme.state}${next}`);
    lines.push(report.acme.last_error
      ? `  last error (${report.acme.last_error.at}, ${report.acme.consecutive_failures} failure(s) in a row): ${report.acme.last_error.message}`
      : '  last error: none');
  } else {
    lines.push('ACME: off (acme.enabled: false)');
  }
  lines.push(report.backend.reachable
    ? `Backend: ${report.backend.url} reachable (connected in ${report.backend.connect_ms} ms)`
    : `Backend: ${report.backend.url} NOT reachable (${report.backend.error}); is the homeserver running?`);
  return `${lines.join('\n')}\n`;
}
