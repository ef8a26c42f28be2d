#!/usr/bin/env node
// `npm run bench`: fedtls side by side with nginx, Caddy and HAProxy on loopback.
// Owns: a fast backend (nginx answering a fixed small JSON; WebDAV PUT sink for uploads),
// one openssl-made certificate in a temp dir served by every TLS terminator, the loads
// (wrk), RSS sampling, and the results table (stdout + bench/results/<date>.md).
// Installs nothing: it says which tools are missing and skips optional peers.
// Options: --duration=SECONDS (per load, default 10), --systems=fedtls,nginx,...,
//          --loads=keepalive,newconn,upload,sighup, --workers=N (fedtls), --no-write,
//          --keep (leave the temp dir), --concurrency=N (default 50), --rounds=N (default 2).

import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, readdirSync, mkdirSync, renameSync, rmSync, existsSync, statSync } from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(ROOT, 'dist', 'cli.js');

// ---------------------------------------------------------------- options
const args = Object.fromEntries(process.argv.slice(2).map((a) => {
  const m = /^--([^=]+)(?:=(.*))?$/.exec(a);
  if (!m) { console.error(`bench: unknown argument ${a}`); process.exit(2); }
  return [m[1], m[2] ?? true];
}));
const DURATION = Number(args.duration ?? 10);
const CONCURRENCY = Number(args.concurrency ?? 50);
const ROUNDS = Number(args.rounds ?? 2);
/** Idle time between the warm-up and the first load (a worker's GC limits change after idling). */
const SETTLE_SECONDS = Number(args.settle ?? 1);
const UPLOAD_MB = 50;
const UPLOAD_IN_FLIGHT = 20;
const SIGHUPS = 100;
const ALL_LOADS = ['keepalive', 'newconn', 'upload', 'sighup'];
const LOADS = args.loads ? String(args.loads).split(',') : ALL_LOADS;
const WANTED = args.systems ? String(args.systems).split(',') : ['direct', 'fedtls', 'nginx', 'caddy', 'haproxy'];
const WRK_THREADS = 2;

// ---------------------------------------------------------------- tools
function which(cmd) {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = path.join(dir, cmd);
    if (existsSync(p)) return p;
  }
  return null;
}
const tools = { wrk: which('wrk'), openssl: which('openssl'), nginx: which('nginx'), caddy: which('caddy'), haproxy: which('haproxy') };
const missingRequired = ['wrk', 'openssl', 'nginx'].filter((t) => !tools[t]);
if (missingRequired.length > 0) {
  console.error(`bench: missing ${missingRequired.join(', ')} (required: wrk drives the load, openssl makes the certificate, nginx is the backend).\n` +
    `Install on Debian/Ubuntu:  apt-get install --no-install-recommends wrk openssl nginx-light caddy haproxy`);
  process.exit(2);
}
if (!existsSync(CLI)) {
  console.error(`bench: ${CLI} is missing; run "npm run bench" (it builds first) or "npm run build"`);
  process.exit(2);
}
const skipped = [];
for (const peer of ['caddy', 'haproxy']) {
  if (WANTED.includes(peer) && !tools[peer]) skipped.push(`${peer} (not installed: apt-get install ${peer})`);
}

// ---------------------------------------------------------------- helpers
const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'fedtls-bench-'));
const children = [];
function log(msg) { process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`); }

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function start(name, cmd, argv, env = {}) {
  const out = path.join(dir, `${name}.log`);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env }, cwd: dir });
  const chunks = [];
  child.stdout.on('data', (c) => chunks.push(c));
  child.stderr.on('data', (c) => chunks.push(c));
  child.on('exit', () => writeFileSync(out, Buffer.concat(chunks)));
  child.output = () => Buffer.concat(chunks).toString();
  children.push(child);
  return child;
}

async function stopAll() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await new Promise((r) => child.once('exit', r));
      clearTimeout(killer);
    }
  }
}
process.on('SIGINT', () => { stopAll().finally(() => process.exit(130)); });

function get(url, { timeoutMs = 2000, method = 'GET' } = {}) {
  return new Promise((resolve, reject) => {
    const lib = url.startsWith('https:') ? https : http;
    const req = lib.request(url, { method, rejectUnauthorized: false, agent: false, timeout: timeoutMs }, (res) => {
      const parts = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(parts).toString() }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function waitReady(name, url, child) {
  const deadline = Date.now() + 20_000;
  let last = '';
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new Error(`${name} exited at start:\n${child.output().slice(-3000)}`);
    try {
      const res = await get(url);
      if (res.status === 200) return;
      last = `status ${res.status}`;
    } catch (error) { last = error.message; }
    await sleep(100);
  }
  throw new Error(`${name} did not answer ${url} within 20 s (${last}):\n${child?.output().slice(-3000) ?? ''}`);
}

/** pid plus all its descendants (nginx workers, fedtls cluster workers). */
function processTree(pid) {
  const parents = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(Number(entry), ppid);
    } catch { /* gone */ }
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) {
    for (const [child, parent] of parents) if (parent === tree[i]) tree.push(child);
  }
  return tree;
}

/** Resident set of a process tree (or of the given pids), in bytes. */
function treeRss(pid, pids = processTree(pid)) {
  let total = 0;
  for (const p of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) total += Number(m[1]) * 1024;
    } catch { /* gone */ }
  }
  return total;
}

function toMs(text) {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (!m) return NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000, m: 60_000 }[m[2]];
}

function parseWrk(output) {
  const num = (re) => { const m = re.exec(output); return m ? Number(m[1]) : 0; };
  const latency = (pct) => { const m = new RegExp(`^\\s+${pct}%\\s+(\\S+)`, 'm').exec(output); return m ? toMs(m[1]) : NaN; };
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const errors = sock ? { connect: +sock[1], read: +sock[2], write: +sock[3], timeout: +sock[4] } : { connect: 0, read: 0, write: 0, timeout: 0 };
  const requests = num(/(\d+) requests in/);
  return {
    requests,
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50: latency(50), p99: latency(99),
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/),
    errors,
    failed: num(/Non-2xx or 3xx responses: (\d+)/) + errors.connect + errors.read + errors.write + errors.timeout,
  };
}

function runWrk(url, { duration = DURATION, connections = CONCURRENCY, threads = WRK_THREADS, script = null, headers = [], timeout = '10s' } = {}) {
  const argv = ['-t', String(threads), '-c', String(connections), '-d', `${duration}s`, '--latency', '--timeout', timeout];
  for (const h of headers) argv.push('-H', h);
  if (script) argv.push('-s', script);
  argv.push(url);
  return new Promise((resolve, reject) => {
    const child = spawn(tools.wrk, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => { out += c; });
    child.stderr.on('data', (c) => { out += c; });
    child.on('exit', (code) => (code === 0 ? resolve({ ...parseWrk(out), raw: out }) : reject(new Error(`wrk failed (${code}): ${out}`))));
  });
}

// ---------------------------------------------------------------- certificate
const certFile = path.join(dir, 'cert.pem');
const keyFile = path.join(dir, 'key.pem');
const combinedFile = path.join(dir, 'combined.pem');
const altCertFile = path.join(dir, 'cert-alt.pem');
function makeCertificate(out, serialHex) {
  execFileSync(tools.openssl, ['req', '-x509', '-new', '-key', keyFile, '-out', out, '-days', '2', '-set_serial', `0x${serialHex}`,
    '-subj', '/CN=bench.fedtls.test', '-addext', 'subjectAltName=DNS:bench.fedtls.test,DNS:localhost,IP:127.0.0.1'], { stdio: 'pipe' });
}
execFileSync(tools.openssl, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyFile], { stdio: 'pipe' });
makeCertificate(certFile, 'a1');
makeCertificate(altCertFile, 'b2'); // same key, other serial: what the SIGHUP load swaps in and out
writeFileSync(combinedFile, readFileSync(certFile, 'utf8') + readFileSync(keyFile, 'utf8'));

// ---------------------------------------------------------------- systems
const SMALL_JSON = '{"server":{"name":"bench","version":"1.0"}}';
const isRoot = process.getuid?.() === 0;

function nginxConfig(name, body, workers) {
  const prefix = path.join(dir, name);
  mkdirSync(path.join(prefix, 'tmp'), { recursive: true });
  mkdirSync(path.join(prefix, 'dav'), { recursive: true });
  const file = path.join(prefix, 'nginx.conf');
  writeFileSync(file, `${isRoot ? 'user root;\n' : ''}worker_processes ${workers};
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/tmp/body;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  log_format uploads '$msec $request_length $status';
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_max_body_size 0;
${body}
}
`);
  return file;
}

const uploadLog = path.join(dir, 'uploads.log');

async function startBackend() {
  const port = await freePort();
  const file = nginxConfig('backend', `  server {
    listen 127.0.0.1:${port};
    location / { default_type application/json; return 200 '${SMALL_JSON}'; }
    # Uploads: WebDAV PUT reads the whole body into a temp file (tmpfs) before it answers; each
    # upload is logged when it ends, with the bytes received (the upload figure counts both).
    location /upload/ { root ${dir}/backend/dav; dav_methods PUT; create_full_put_path on; client_body_buffer_size 1m; access_log ${uploadLog} uploads; }
  }`, '1');
  const child = start('backend', tools.nginx, ['-p', path.join(dir, 'backend'), '-c', file, '-g', 'daemon off;']);
  await waitReady('backend nginx', `http://127.0.0.1:${port}/`, child);
  return { name: 'direct', label: 'backend direct (plain HTTP, ceiling)', url: `http://127.0.0.1:${port}`, port, child, tls: false };
}

async function startNginx(backendPort) {
  const port = await freePort();
  const file = nginxConfig('nginx', `  upstream backend { server 127.0.0.1:${backendPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${certFile};
    ssl_certificate_key ${keyFile};
    ssl_protocols TLSv1.2 TLSv1.3; # nginx 1.22 (Debian 12) offers at most TLS 1.2 by default
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto https;
      proxy_request_buffering off;
    }
  }`, 'auto');
  const child = start('nginx', tools.nginx, ['-p', path.join(dir, 'nginx'), '-c', file, '-g', 'daemon off;']);
  await waitReady('nginx', `https://127.0.0.1:${port}/`, child);
  return { name: 'nginx', label: 'nginx', url: `https://127.0.0.1:${port}`, port, child, tls: true };
}

async function startCaddy(backendPort) {
  const port = await freePort();
  const home = path.join(dir, 'caddy');
  mkdirSync(home, { recursive: true });
  const file = path.join(home, 'Caddyfile');
  writeFileSync(file, `{
  admin off
  auto_https off
  storage file_system ${home}/data
}
https://127.0.0.1:${port} {
  bind 127.0.0.1
  tls ${certFile} ${keyFile}
  reverse_proxy 127.0.0.1:${backendPort}
}
`);
  const child = start('caddy', tools.caddy, ['run', '--config', file, '--adapter', 'caddyfile'], { HOME: home, XDG_DATA_HOME: home, XDG_CONFIG_HOME: home });
  await waitReady('caddy', `https://127.0.0.1:${port}/`, child);
  return { name: 'caddy', label: 'Caddy', url: `https://127.0.0.1:${port}`, port, child, tls: true };
}

async function startHaproxy(backendPort) {
  const port = await freePort();
  const file = path.join(dir, 'haproxy.cfg');
  writeFileSync(file, `global
  maxconn 4096
defaults
  mode http
  timeout connect 10s
  timeout client 75s
  timeout server 180s
  option http-keep-alive
  option forwardfor
frontend fe
  bind 127.0.0.1:${port} ssl crt ${combinedFile}
  http-request set-header X-Forwarded-Proto https
  default_backend be
backend be
  server b 127.0.0.1:${backendPort}
`);
  const child = start('haproxy', tools.haproxy, ['-db', '-f', file]);
  await waitReady('haproxy', `https://127.0.0.1:${port}/`, child);
  return { name: 'haproxy', label: 'HAProxy', url: `https://127.0.0.1:${port}`, port, child, tls: true };
}

async function startFedtls(backendPort) {
  const port = await freePort();
  const httpPort = await freePort();
  const home = path.join(dir, 'fedtls');
  mkdirSync(home, { recursive: true });
  const config = {
    server_name: 'bench.fedtls.test',
    backend: `http://127.0.0.1:${backendPort}`,
    state_dir: path.join(home, 'state'),
    listen: { http: [`127.0.0.1:${httpPort}`], federation: [`127.0.0.1:${port}`] },
    acme: { enabled: false },
    tls_certificate_path: certFile,
    tls_private_key_path: keyFile,
    proxy: { max_body_size: '64M' },
    log: { level: 'info', format: 'json' },
    ...(args.workers !== undefined ? { workers: Number(args.workers) } : {}),
  };
  const file = path.join(home, 'fedtls.yaml');
  writeFileSync(file, JSON.stringify(config, null, 2)); // JSON is YAML
  const nodeArgs = [
    ...(args['node-flags'] ? String(args['node-flags']).split(' ').filter(Boolean) : []),
    ...(args['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${path.join(ROOT, 'bench', 'profiles')}`] : []),
  ];
  const child = start('fedtls', process.execPath, [...nodeArgs, CLI, 'run', '--config', file]);
  await waitReady('fedtls', `https://127.0.0.1:${port}/`, child);
  return { name: 'fedtls', label: 'fedtls', url: `https://127.0.0.1:${port}`, port, child, tls: true };
}

// ---------------------------------------------------------------- TLS probe
/**
 * What a reconnecting OpenSSL client (like wrk) gets: the protocol, and how many of the
 * connections after the first resumed the session the previous one left (each offers the
 * ticket the previous connection received, as OpenSSL clients do: a ticket is used once).
 */
function tlsProbe(system, connections = 4) {
  const sessionFile = (i) => path.join(dir, `probe-${system.name}-${i}.pem`);
  let protocol = '?';
  let resumed = 0;
  for (let i = 0; i < connections; i++) {
    const argv = ['s_client', '-connect', `127.0.0.1:${system.port}`, '-servername', 'bench.fedtls.test', '-sess_out', sessionFile(i)];
    if (i > 0 && existsSync(sessionFile(i - 1))) argv.push('-sess_in', sessionFile(i - 1));
    // Keep stdin open a moment so the session tickets (sent after the handshake) arrive.
    const out = spawnSync('sh', ['-c', `(printf 'GET / HTTP/1.1\\r\\nHost: bench\\r\\nConnection: close\\r\\n\\r\\n'; sleep 0.4) | "$0" "$@"`, tools.openssl, ...argv], { encoding: 'utf8', timeout: 5000 }).stdout ?? '';
    const line = /^(New|Reused), (TLSv[\d.]+)/m.exec(out);
    if (line) protocol = line[2];
    if (i > 0 && line?.[1] === 'Reused') resumed += 1;
  }
  return { protocol, resumed, of: connections - 1 };
}

// ---------------------------------------------------------------- loads
const uploadScript = path.join(dir, 'upload.lua');
writeFileSync(uploadScript, `wrk.method = "PUT"
wrk.path = "/upload/blob"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.body = string.rep("x", ${UPLOAD_MB * 1024 * 1024})
`);

async function loadKeepAlive(system) {
  const r = await runWrk(`${system.url}/`);
  return { rps: r.rps, p50: r.p50, p99: r.p99, failed: r.failed };
}

async function loadNewConnections(system) {
  const r = await runWrk(`${system.url}/`, { headers: ['Connection: close'] });
  return { cps: r.rps, p99: r.p99, failed: r.failed };
}

/**
 * Bytes of upload bodies the backend has received between `since` and now (seconds): the
 * uploads it completed since (its log) plus those still arriving (their temp files' sizes).
 */
function uploadedBytesSince(since) {
  const now = Date.now() / 1000;
  let bytes = 0;
  if (existsSync(uploadLog)) {
    for (const line of readFileSync(uploadLog, 'utf8').split('\n')) {
      const [msec, length] = line.split(' ').map(Number);
      if (msec >= since && msec <= now && Number.isFinite(length)) bytes += length;
    }
  }
  const inProgress = path.join(dir, 'backend', 'tmp', 'body');
  for (const name of existsSync(inProgress) ? readdirSync(inProgress) : []) {
    try { bytes += statSync(path.join(inProgress, name)).size; } catch { /* completed meanwhile */ }
  }
  return { bytes, at: now };
}

async function loadUpload(system) {
  const pid = system.child.pid;
  const pids = processTree(pid); // fixed for the load: sampling reads only these
  const before = treeRss(pid, pids);
  let peak = before;
  const sampler = setInterval(() => { peak = Math.max(peak, treeRss(pid, pids)); }, 50);
  const duration = Math.max(DURATION, 10) * 1.5;
  const startedAt = Date.now() / 1000;
  // MB/s from the bytes the backend has received just before wrk stops, unfinished uploads
  // included: counting completed uploads only would drop up to 20 × 50 MB at the end of the
  // window (the 20 progress in step), a different share for each system.
  let received = null;
  const snapshot = setTimeout(() => { received = uploadedBytesSince(startedAt); }, (duration - 0.5) * 1000);
  const r = await runWrk(`${system.url}/`, { duration, connections: UPLOAD_IN_FLIGHT, script: uploadScript, timeout: '120s' });
  clearTimeout(snapshot);
  clearInterval(sampler);
  peak = Math.max(peak, treeRss(pid, pids));
  const mbps = received ? received.bytes / 2 ** 20 / (received.at - startedAt) : (r.requests * UPLOAD_MB) / duration;
  return { mbps, uploads: r.requests, completedMbps: (r.requests * UPLOAD_MB) / duration, rssGrowth: peak - before, failed: r.failed };
}

/** Keep-alive load while fedtls receives SIGHUPs, each one swapping the certificate (same key, other serial). */
async function loadSighup(system) {
  const certs = [altCertFile, certFile].map((f) => readFileSync(f));
  const running = runWrk(`${system.url}/`);
  const spacing = (DURATION * 1000 * 0.8) / SIGHUPS;
  await sleep(DURATION * 100);
  let sent = 0;
  for (; sent < SIGHUPS; sent++) {
    const tmp = `${certFile}.tmp`;
    writeFileSync(tmp, certs[sent % 2]);
    renameSync(tmp, certFile);
    process.kill(system.child.pid, 'SIGHUP');
    await sleep(spacing);
  }
  const r = await running;
  return { rps: r.rps, p50: r.p50, p99: r.p99, failed: r.failed, sighups: sent };
}

// ---------------------------------------------------------------- main
const results = {}; // system -> load -> figures
const systems = [];
let fatal = null;
try {
  log(`temp dir ${dir}; ${os.cpus().length} cores; duration ${DURATION}s per load, ${CONCURRENCY} connections`);
  const backend = await startBackend();
  if (WANTED.includes('direct')) systems.push(backend);
  const starters = { fedtls: startFedtls, nginx: startNginx, caddy: startCaddy, haproxy: startHaproxy };
  for (const name of ['fedtls', 'nginx', 'caddy', 'haproxy']) {
    if (!WANTED.includes(name) || (name !== 'fedtls' && !tools[name])) continue;
    try {
      systems.push(await starters[name](backend.port));
    } catch (error) {
      skipped.push(`${name} (failed to start: ${error.message.split('\n')[0]})`);
      log(error.message);
    }
  }
  // Warm up every system (JIT, connection pools), then read idle RSS.
  for (const system of systems) await runWrk(`${system.url}/`, { duration: 2 });
  await sleep(SETTLE_SECONDS * 1000);
  for (const system of systems) {
    results[system.name] = { idle: { rss: treeRss(system.child.pid) } };
  }
  for (const system of systems) if (system.tls) results[system.name].tls = tlsProbe(system);
  // Each load runs ROUNDS times over all systems in turn; the best round per system counts
  // (other processes on the machine only ever make a round worse, for every system alike).
  const better = { keepalive: 'rps', newconn: 'cps', upload: 'mbps', sighup: null };
  for (let round = 1; round <= ROUNDS; round++) {
    for (const load of LOADS) {
      if (load === 'sighup' && round !== ROUNDS) continue;
      for (const system of systems) {
        let figures = null;
        if (load === 'keepalive') figures = await loadKeepAlive(system);
        else if (load === 'newconn' && system.tls) figures = await loadNewConnections(system);
        else if (load === 'upload') figures = await loadUpload(system);
        else if (load === 'sighup' && system.name === 'fedtls') figures = await loadSighup(system);
        if (figures) {
          const kept = results[system.name][load];
          const key = better[load];
          if (kept && load === 'upload') figures.rssGrowth = Math.max(figures.rssGrowth, kept.rssGrowth);
          if (kept) figures.failed += kept.failed;
          if (!kept || !key || figures[key] > kept[key]) results[system.name][load] = figures;
          else kept.failed = figures.failed;
          log(`round ${round}/${ROUNDS} ${load.padEnd(9)} ${system.name.padEnd(8)} ${JSON.stringify(figures)}`);
        }
        await sleep(500);
      }
    }
  }
} catch (error) {
  fatal = error;
} finally {
  await stopAll();
}
if (fatal) {
  console.error(`bench: ${fatal.stack ?? fatal}`);
  console.error(`logs are in ${dir}`);
  process.exit(1);
}

// ---------------------------------------------------------------- report
const loadAverage = os.loadavg().map((n) => n.toFixed(1)).join(', ');
const rows = [
  ['keep-alive GET req/s', (r) => r.keepalive?.rps, 0, 'higher'],
  ['keep-alive p50 ms', (r) => r.keepalive?.p50, 2, 'lower'],
  ['keep-alive p99 ms', (r) => r.keepalive?.p99, 2, 'lower'],
  ['new TLS conn/s', (r) => r.newconn?.cps, 0, 'higher'],
  [`${UPLOAD_MB} MB uploads ×${UPLOAD_IN_FLIGHT}, MB/s`, (r) => r.upload?.mbps, 0, 'higher'],
  ['RSS growth under uploads, MB', (r) => r.upload?.rssGrowth / 2 ** 20, 1, 'lower'],
  ['idle RSS, MB', (r) => r.idle?.rss / 2 ** 20, 1, 'lower'],
  ['failed requests (all loads)', (r) => ['keepalive', 'newconn', 'upload', 'sighup'].reduce((n, l) => n + (r[l]?.failed ?? 0), 0), 0, 'lower'],
];
const fmt = (v, digits) => (v === undefined || Number.isNaN(v) ? '—' : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }));
const ratio = (v, ref) => (v === undefined || ref === undefined || !ref || Number.isNaN(v) || Number.isNaN(ref) ? '—' : `${(v / ref).toFixed(2)}`);
const names = systems.map((s) => s.name);
const header = `| figure | ${systems.map((s) => s.label).join(' | ')} |`;
const lines = [header, `|---|${systems.map(() => '---').join('|')}|`];
for (const [label, pick, digits] of rows) {
  const cells = names.map((n) => {
    const v = pick(results[n]);
    const nginx = results.nginx ? pick(results.nginx) : undefined;
    const caddy = results.caddy ? pick(results.caddy) : undefined;
    if (v === undefined || Number.isNaN(v)) return '—';
    const ratios = label.startsWith('failed') ? '' : ` (${ratio(v, nginx)} / ${ratio(v, caddy)})`;
    return `${fmt(v, digits)}${ratios}`;
  });
  lines.push(`| ${label} | ${cells.join(' | ')} |`);
}

const f = results.fedtls ?? {};
const n = results.nginx ?? {};
const c = results.caddy ?? {};
const goals = [];
const goal = (text, ok) => goals.push(`- [${ok === undefined ? '?' : ok ? 'x' : ' '}] ${text}`);
const known = (...vs) => vs.every((v) => v !== undefined && !Number.isNaN(v));
const ka = f.keepalive, nk = n.keepalive, ck = c.keepalive;
goal(`keep-alive req/s ≥ 2.0× Caddy: ${known(ka?.rps, ck?.rps) ? (ka.rps / ck.rps).toFixed(2) + '×' : 'n/a'}`, known(ka?.rps, ck?.rps) ? ka.rps >= 2 * ck.rps : undefined);
goal(`keep-alive req/s ≥ 0.5× nginx: ${known(ka?.rps, nk?.rps) ? (ka.rps / nk.rps).toFixed(2) + '×' : 'n/a'}`, known(ka?.rps, nk?.rps) ? ka.rps >= 0.5 * nk.rps : undefined);
goal(`keep-alive p99 ≤ Caddy's: ${known(ka?.p99, ck?.p99) ? `${ka.p99} ms vs ${ck.p99} ms` : 'n/a'}`, known(ka?.p99, ck?.p99) ? ka.p99 <= ck.p99 : undefined);
goal(`new TLS conn/s ≥ Caddy's: ${known(f.newconn?.cps, c.newconn?.cps) ? (f.newconn.cps / c.newconn.cps).toFixed(2) + '×' : 'n/a'}`, known(f.newconn?.cps, c.newconn?.cps) ? f.newconn.cps >= c.newconn.cps : undefined);
goal(`uploads ≥ 0.8× nginx MB/s: ${known(f.upload?.mbps, n.upload?.mbps) ? (f.upload.mbps / n.upload.mbps).toFixed(2) + '×' : 'n/a'}`, known(f.upload?.mbps, n.upload?.mbps) ? f.upload.mbps >= 0.8 * n.upload.mbps : undefined);
goal(`fedtls RSS growth ≤ 64 MB with ${UPLOAD_IN_FLIGHT} uploads in flight: ${known(f.upload?.rssGrowth) ? (f.upload.rssGrowth / 2 ** 20).toFixed(1) + ' MB' : 'n/a'}`, known(f.upload?.rssGrowth) ? f.upload.rssGrowth <= 64 * 2 ** 20 : undefined);
const sh = f.sighup;
goal(`p99 under ${SIGHUPS} SIGHUPs ≤ 2× steady p99, no failed request: ${sh && ka ? `${sh.p99} ms vs ${ka.p99} ms steady, ${sh.failed} failed` : 'n/a'}`, sh && ka ? sh.p99 <= 2 * ka.p99 && sh.failed === 0 : undefined);

const when = new Date();
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
const nginxVersion = spawnSync(tools.nginx, ['-v'], { encoding: 'utf8' }).stderr.trim();
const caddyVersion = tools.caddy ? execFileSync(tools.caddy, ['version'], { encoding: 'utf8' }).trim().split(' ')[0] : 'not installed';
const haproxyVersion = tools.haproxy ? execFileSync(tools.haproxy, ['-v'], { encoding: 'utf8' }).split('\n')[0].replace(/ - https.*/, '') : 'not installed';
const fedtlsCommit = (() => { try { return execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(); } catch { return 'unknown'; } })();

const report = `# fedtls benchmark, ${when.toISOString().slice(0, 16).replace('T', ' ')} UTC

Machine: ${os.cpus().length} × ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.release()}; load average at the end ${loadAverage}.
fedtls ${fedtlsCommit} on node ${process.version}${args.workers !== undefined ? ` (workers: ${args.workers})` : ''}; ${nginxVersion.replace('nginx version: ', '')}; Caddy ${caddyVersion}; ${haproxyVersion}.
Loads (wrk, ${WRK_THREADS} threads, all on loopback, client and servers share the cores): ${DURATION} s each at ${CONCURRENCY} connections, best of ${ROUNDS} rounds;
uploads ${UPLOAD_MB} MB PUT bodies, ${UPLOAD_IN_FLIGHT} in flight, ${Math.max(DURATION, 10) * 1.5} s. Each cell: value (ratio to nginx / ratio to Caddy).
${skipped.length ? `\nSkipped: ${skipped.join('; ')}.\n` : ''}
${lines.join('\n')}

TLS as a reconnecting OpenSSL client sees it (protocol; connections that resumed the previous one's session): ${systems.filter((s) => results[s.name]?.tls).map((s) => `${s.label} ${results[s.name].tls.protocol}, ${results[s.name].tls.resumed}/${results[s.name].tls.of}`).join('; ')}.

## fedtls under SIGHUP
${sh ? `${sh.sighups} SIGHUPs (each swapping the certificate) during ${DURATION} s of keep-alive load: ${fmt(sh.rps, 0)} req/s, p50 ${sh.p50} ms, p99 ${sh.p99} ms (steady: p99 ${ka?.p99} ms), ${sh.failed} failed requests.` : 'not run'}

## Goals
${goals.join('\n')}
`;

process.stdout.write(`\n${report}`);
if (!args['no-write']) {
  const outDir = path.join(ROOT, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const outFile = path.join(outDir, `${when.toISOString().slice(0, 10)}.md`);
  writeFileSync(outFile, report);
  log(`written to ${path.relative(ROOT, outFile)}`);
}
if (!args.keep) rmSync(dir, { recursive: true, force: true });
else log(`kept ${dir}`);
