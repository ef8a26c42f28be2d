// Prometheus metrics (text exposition format 0.0.4), served on listen.metrics (off by
// default; a bare port binds loopback). Owns the counters that nothing else keeps: open
// connections and responses per listener, backend latency. Everything else (certificates,
// renewals) is read from its owner at scrape time, so a scrape never shows stale state;
// with TLS workers, their counters are asked for at scrape time and summed.
// Promises: a scrape never changes anything, and only GET /metrics answers.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server, Socket } from 'node:net';

/** Backend response-header latency buckets, seconds (federation calls range from ms to a minute). */
export const BACKEND_LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export interface CertificateMetric {
  name: string;
  source: string;
  notAfter: Date;
}

/** What the daemon's parts know at scrape time. */
export interface MetricsSnapshot {
  certificates: CertificateMetric[];
  /** Null when ACME is off. */
  renewals: { ok: number; failed: number } | null;
  startedAt: Date;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labels(pairs: Record<string, string>): string {
  const inner = Object.entries(pairs).map(([key, value]) => `${key}="${escapeLabel(value)}"`).join(',');
  return inner ? `{${inner}}` : '';
}

function formatNumber(value: number): string {
  if (value === Infinity) return '+Inf';
  return Number.isInteger(value) ? String(value) : value.toPrecision(6).replace(/\.?0+$/, '');
}

class Family {
  readonly lines: string[] = [];
  constructor(readonly name: string, type: 'gauge' | 'counter' | 'histogram', help: string) {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  }

  sample(value: number, pairs: Record<string, string> = {}, suffix = ''): this {
    this.lines.push(`${this.name}${suffix}${labels(pairs)} ${formatNumber(value)}`);
    return this;
  }
}

/** The traffic counters of one process, as plain data (TLS workers send theirs to the primary). */
export interface TrafficCounters {
  openConnections: Record<string, number>;
  responses: Record<string, Record<string, number>>;
  backendLatency: { counts: number[]; sum: number; count: number };
}

export class Histogram {
  private counts: number[];
  private sum = 0;
  private count = 0;

  constructor(readonly buckets: number[]) {
    this.counts = buckets.map(() => 0);
  }

  observe(value: number): void {
    this.sum += value;
    this.count += 1;
    for (let i = 0; i < this.buckets.length; i += 1) if (value <= this.buckets[i]!) this.counts[i]! += 1;
  }

  snapshot(): TrafficCounters['backendLatency'] {
    return { counts: [...this.counts], sum: this.sum, count: this.count };
  }

  /** Adds another process's observations (same buckets). */
  add(other: TrafficCounters['backendLatency']): void {
    this.counts = this.counts.map((n, i) => n + (other.counts[i] ?? 0));
    this.sum += other.sum;
    this.count += other.count;
  }

  writeTo(family: Family): void {
    this.buckets.forEach((bound, i) => family.sample(this.counts[i]!, { le: formatNumber(bound) }, '_bucket'));
    family.sample(this.count, { le: '+Inf' }, '_bucket');
    family.sample(this.sum, {}, '_sum');
    family.sample(this.count, {}, '_count');
  }
}

export class DaemonMetrics {
  private readonly openConnections = new Map<string, number>();
  private readonly responses = new Map<string, Map<string, number>>();
  readonly backendLatency = new Histogram(BACKEND_LATENCY_BUCKETS);

  /** Counts the connections a listener holds and (for HTTP servers) the responses it sends, by status class. */
  observeListener(role: string, server: Server): void {
    this.openConnections.set(role, this.openConnections.get(role) ?? 0);
    if (!this.responses.has(role)) this.responses.set(role, new Map());
    server.on('connection', (socket: Socket) => {
      this.openConnections.set(role, this.openConnections.get(role)! + 1);
      socket.once('close', () => this.openConnections.set(role, this.openConnections.get(role)! - 1));
    });
    server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
      res.once('close', () => {
        // A response that never got its head out (client left first) has no status to count.
        if (!res.headersSent) return;
        const statusClass = `${Math.floor(res.statusCode / 100)}xx`;
        const counts = this.responses.get(role)!;
        counts.set(statusClass, (counts.get(statusClass) ?? 0) + 1);
      });
    });
  }

  /** Seconds from sending a request to the backend until its response headers arrived. */
  observeBackendLatency(seconds: number): void {
    this.backendLatency.observe(seconds);
  }

  /** This process's counters as plain data. */
  counters(): TrafficCounters {
    const responses: TrafficCounters['responses'] = {};
    for (const [role, counts] of this.responses) responses[role] = Object.fromEntries(counts);
    return { openConnections: Object.fromEntries(this.openConnections), responses, backendLatency: this.backendLatency.snapshot() };
  }

  /** `others`: the counters of the TLS worker processes, summed with this process's. */
  render(snapshot: MetricsSnapshot, others: TrafficCounters[] = []): string {
    const families: Family[] = [];
    const openConnections = new Map(this.openConnections);
    const responses = new Map([...this.responses].map(([role, counts]) => [role, new Map(counts)]));
    const backendLatency = new Histogram(BACKEND_LATENCY_BUCKETS);
    backendLatency.add(this.backendLatency.snapshot());
    for (const other of others) {
      for (const [role, n] of Object.entries(other.openConnections)) openConnections.set(role, (openConnections.get(role) ?? 0) + n);
      for (const [role, counts] of Object.entries(other.responses)) {
        const into = responses.get(role) ?? new Map<string, number>();
        responses.set(role, into);
        for (const [statusClass, n] of Object.entries(counts)) into.set(statusClass, (into.get(statusClass) ?? 0) + n);
      }
      backendLatency.add(other.backendLatency);
    }

    const expiry = new Family('fedtls_certificate_expiry_timestamp_seconds', 'gauge', 'When the served certificate for a name expires (Unix time).');
    for (const cert of snapshot.certificates) expiry.sample(Math.floor(cert.notAfter.getTime() / 1000), { name: cert.name, source: cert.source });
    families.push(expiry);

    const renewals = new Family('fedtls_certificate_renewals_total', 'counter', 'ACME issuances and renewals since start, by result.');
    if (snapshot.renewals) {
      renewals.sample(snapshot.renewals.ok, { result: 'ok' }).sample(snapshot.renewals.failed, { result: 'failed' });
    }
    families.push(renewals);

    const requests = new Family('fedtls_requests_total', 'counter', 'Responses sent, by listener and HTTP status class.');
    for (const [role, counts] of responses) {
      for (const [statusClass, count] of [...counts].sort()) requests.sample(count, { listener: role, status_class: statusClass });
    }
    families.push(requests);

    const latency = new Family('fedtls_backend_latency_seconds', 'histogram', 'Time until the homeserver sent its response headers.');
    backendLatency.writeTo(latency);
    families.push(latency);

    const connections = new Family('fedtls_open_connections', 'gauge', 'Client connections open now, by listener.');
    for (const [role, count] of openConnections) connections.sample(count, { listener: role });
    families.push(connections);

    families.push(new Family('fedtls_start_time_seconds', 'gauge', 'When this fedtls process started (Unix time).').sample(Math.floor(snapshot.startedAt.getTime() / 1000)));

    return `${families.flatMap((family) => family.lines).join('\n')}\n`;
  }
}

/** The metrics listener's handler: GET /metrics → the text format; anything else → 404. */
export function createMetricsHandler(render: () => string | Promise<string>): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('fedtls serves metrics at GET /metrics\n');
      return;
    }
    void Promise.resolve(render()).then((body) => {
      res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    }, () => {
      res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('fedtls could not collect its metrics\n');
    });
  };
}
