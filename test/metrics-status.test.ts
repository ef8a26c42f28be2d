// Metrics (Prometheus text on listen.metrics, scraped over HTTP) and `fedtls status` (from the
// running daemon over the control socket), with real requests through the TLS listener to a
// real backend, and a real ACME CA (Pebble) for the renewal counters and next renewal.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import tls from 'node:tls';
import path from 'node:path';
import { writeManualDaemonConfig } from './helpers/manual-daemon.js';
import { startBackend, defaultResponder, type Backend } from './helpers/backend.js';
import { boundPort, runCli, startDaemon, tempDir, writeConfig, type RunningDaemon } from './helpers/daemon.js';
import { freePort, startTestPebble, writePebbleDaemonConfig, type PebbleFixture } from './helpers/pebble.js';
import { rawTlsRequest } from './helpers/tls-client.js';

const NAME = 'metrics.fedtls.test';

interface Scrape { status: number; contentType: string; text: string; samples: Map<string, number> }

function scrape(port: number, target = '/metrics'): Promise<Scrape> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: target }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { text += chunk; });
      res.on('end', () => {
        const samples = new Map<string, number>();
        for (const line of text.split('\n')) {
          if (!line || line.startsWith('#')) continue;
          const at = line.lastIndexOf(' ');
          samples.set(line.slice(0, at), Number(line.slice(at + 1).replace('+Inf', 'Infinity')));
        }
        resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type']), text, samples });
      });
    }).on('error', reject);
  });
}

async function status(configFile: string, json: boolean): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const run = runCli(['status', '--config', configFile, ...(json ? ['--json'] : [])]);
  const code = await run.exited;
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

function get(port: number, target: string): Promise<number> {
  return rawTlsRequest({ port, servername: NAME, request: `GET ${target} HTTP/1.1\r\nHost: ${NAME}\r\nConnection: close\r\n\r\n` }).then((r) => r.status);
}

async function until<T>(probe: () => Promise<T>, ok: (value: T) => boolean, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('metrics and status, hand-managed certificate', () => {
  let backend: Backend;
  let daemon: RunningDaemon;
  let configFile: string;
  let metricsPort: number;
  let tlsPort: number;
  let notAfter: Date;

  beforeAll(async () => {
    backend = await startBackend();
    backend.respond = (req, res, record) => {
      if (req.url === '/slow') {
        setTimeout(() => defaultResponder(req, res, record), 600);
      } else if (req.url === '/missing') {
        res.writeHead(404, { 'Content-Length': 0 });
        res.end();
      } else {
        defaultResponder(req, res, record);
      }
    };
    metricsPort = await freePort();
    // A bare port: the metrics listener must bind loopback only.
    const written = await writeManualDaemonConfig(tempDir(), NAME, backend.url, { listen: { metrics: [String(metricsPort)] } });
    configFile = written.configFile;
    notAfter = written.notAfter;
    daemon = await startDaemon(configFile);
    tlsPort = boundPort(daemon, 'federation');
  });

  afterAll(async () => {
    await daemon?.stop();
    await backend?.close();
  });

  it('binds a bare metrics port on loopback only, and answers only GET /metrics', async () => {
    const line = daemon.logs.find((l) => l.event === 'listening' && l.listener === 'metrics');
    expect(line?.address).toBe(`127.0.0.1:${metricsPort}`);
    expect((await scrape(metricsPort, '/')).status).toBe(404);
  });

  it('scrape: certificate expiry per name, responses by status class, backend latency histogram, open connections', async () => {
    expect(await get(tlsPort, '/_matrix/federation/v1/version')).toBe(200);
    expect(await get(tlsPort, '/slow')).toBe(200);
    expect(await get(tlsPort, '/_matrix/key/v2/server')).toBe(200);
    expect(await get(tlsPort, '/missing')).toBe(404);

    const result = await scrape(metricsPort);
    expect(result.status).toBe(200);
    expect(result.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const s = result.samples;
    expect(s.get(`fedtls_certificate_expiry_timestamp_seconds{name="${NAME}",source="file:0:${path.dirname(configFile)}/fullchain.pem"}`))
      .toBe(Math.floor(notAfter.getTime() / 1000));
    expect(s.get('fedtls_requests_total{listener="federation",status_class="2xx"}')).toBe(3);
    expect(s.get('fedtls_requests_total{listener="federation",status_class="4xx"}')).toBe(1);
    // Four responses came from the backend; one took at least 600 ms.
    expect(s.get('fedtls_backend_latency_seconds_count')).toBe(4);
    expect(s.get('fedtls_backend_latency_seconds_bucket{le="+Inf"}')).toBe(4);
    expect(s.get('fedtls_backend_latency_seconds_bucket{le="0.5"}')).toBe(3);
    expect(s.get('fedtls_backend_latency_seconds_bucket{le="1"}')).toBe(4);
    expect(s.get('fedtls_backend_latency_seconds_sum')).toBeGreaterThanOrEqual(0.6);
    // ACME is off: the family is declared, with no samples.
    expect(result.text).toContain('# TYPE fedtls_certificate_renewals_total counter');
    expect([...s.keys()].some((k) => k.startsWith('fedtls_certificate_renewals_total'))).toBe(false);

    // One client holds a connection open: the gauge shows it, and drops when it leaves.
    const held = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: tlsPort, servername: NAME, rejectUnauthorized: false }, () => resolve(socket));
      socket.on('error', reject);
    });
    await until(() => scrape(metricsPort), (r) => r.samples.get('fedtls_open_connections{listener="federation"}') === 1, 'one open federation connection');
    held.destroy();
    await until(() => scrape(metricsPort), (r) => r.samples.get('fedtls_open_connections{listener="federation"}') === 0, 'no open federation connection');
  });

  it('fedtls status (text and --json) reports listeners, the certificate, ACME off, the backend and uptime', async () => {
    const json = await status(configFile, true);
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout);
    expect(report.server_name).toBe(NAME);
    expect(report.listeners.map((l: { role: string }) => l.role)).toEqual(['http', 'federation', 'metrics']);
    expect(report.certificates).toHaveLength(1);
    expect(report.certificates[0]).toMatchObject({ kind: 'file', names: [NAME], not_after: notAfter.toISOString(), renew_at: null });
    expect(report.acme).toBeNull();
    expect(report.backend).toMatchObject({ url: backend.url, reachable: true, error: null });
    expect(report.uptime_seconds).toBeGreaterThanOrEqual(0);

    const text = await status(configFile, false);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`fedtls for ${NAME}: running for`);
    expect(text.stdout).toMatch(new RegExp(`federation +127\\.0\\.0\\.1:${tlsPort}`));
    expect(text.stdout).toContain(`expires ${notAfter.toISOString()} (in 2`); // ~29 days
    expect(text.stdout).toContain('managed by hand');
    expect(text.stdout).toContain('ACME: off');
    expect(text.stdout).toContain(`Backend: ${backend.url} reachable`);
  });

  it('fedtls status says when the homeserver is not reachable', async () => {
    await backend.close();
    const text = await status(configFile, false);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`Backend: ${backend.url} NOT reachable (ECONNREFUSED); is the homeserver running?`);
  });
});

describe('metrics and status with ACME', () => {
  let pebble: PebbleFixture;
  let backend: Backend;
  const daemons: RunningDaemon[] = [];
  const ACME_NAME = 'acme-metrics.fedtls.test';

  beforeAll(async () => {
    pebble = await startTestPebble();
    backend = await startBackend();
  });
  afterAll(async () => {
    for (const d of daemons) await d.stop();
    await backend?.close();
    await pebble?.stop();
  });

  it('counts a successful issuance, shows its expiry per name and the next renewal', async () => {
    const dir = tempDir();
    const metricsPort = await freePort();
    const { configFile } = writePebbleDaemonConfig(dir, pebble, ACME_NAME, backend.url, { listen: { metrics: [`127.0.0.1:${metricsPort}`] } });
    const daemon = await startDaemon(configFile);
    daemons.push(daemon);
    const issued = await daemon.waitForLog((l) => l.event === 'acme_certificate_issued', 30_000, 'certificate issued');
    const s = (await scrape(metricsPort)).samples;
    expect(s.get('fedtls_certificate_renewals_total{result="ok"}')).toBe(1);
    expect(s.get('fedtls_certificate_renewals_total{result="failed"}')).toBe(0);
    expect(s.get(`fedtls_certificate_expiry_timestamp_seconds{name="${ACME_NAME}",source="acme:${ACME_NAME}"}`))
      .toBe(Math.floor(new Date(String(issued.not_after)).getTime() / 1000));

    const report = JSON.parse((await status(configFile, true)).stdout);
    expect(report.acme).toMatchObject({ names: [ACME_NAME], last_error: null, consecutive_failures: 0 });
    expect(report.certificates[0]).toMatchObject({ kind: 'acme', names: [ACME_NAME] });
    const renewAt = new Date(report.certificates[0].renew_at).getTime();
    expect(renewAt).toBeGreaterThan(Date.now());
    expect(renewAt).toBeLessThan(new Date(report.certificates[0].not_after).getTime());
    const text = (await status(configFile, false)).stdout;
    expect(text).toContain('renewal due');
    expect(text).toContain('last error: none');
  });

  it('counts a failed order and shows the last ACME error', async () => {
    const dir = tempDir();
    const metricsPort = await freePort();
    const deadDirectory = `http://127.0.0.1:${await freePort()}/directory`;
    const configFile = writeConfig(dir, {
      server_name: ACME_NAME, backend: backend.url, state_dir: path.join(dir, 'state'),
      listen: { http: ["127.0.0.1:0"], federation: ["127.0.0.1:0"], metrics: [`127.0.0.1:${metricsPort}`] },
      acme: { url: deadDirectory },
    });
    const daemon = await startDaemon(configFile);
    daemons.push(daemon);
    await daemon.waitForLog((l) => l.event === 'acme_order_failed', 30_000, 'acme_order_failed');
    const s = (await scrape(metricsPort)).samples;
    expect(s.get('fedtls_certificate_renewals_total{result="failed"}')).toBe(1);
    expect(s.get('fedtls_certificate_renewals_total{result="ok"}')).toBe(0);
    const report = JSON.parse((await status(configFile, true)).stdout);
    expect(report.certificates).toEqual([]);
    expect(report.acme.consecutive_failures).toBe(1);
    expect(report.acme.last_error.message).toBeTruthy();
    const text = (await status(configFile, false)).stdout;
    expect(text).toContain('none served yet');
    expect(text).toMatch(/last error \(.*1 failure\(s\) in a row\): \S/);
  });
});
