// One real fedtls daemon (the CLI, as a child process) serving a test CA's certificate on a
// loopback federation port and proxying to a recording backend; plus what proxy tests need
// to look at it from outside: TLS clients that trust only the test CA, a client that resets
// its TCP connection mid-upload, and the daemon's own numbers from /proc (open file
// descriptors, resident and peak memory).

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { createAuthority, issueLeaf } from './certs.js';
import { startBackend, type Backend } from './backend.js';
import { boundPort, startDaemon, tempDir, writeConfig, type RunningDaemon } from './daemon.js';
import { freePort } from './pebble.js';
import { rawTlsRequest, type RawExchange } from './tls-client.js';

export const PROXY_TEST_NAME = 'hs.fedtls.test';

export interface ProxyFixture {
  daemon: RunningDaemon;
  backend: Backend;
  port: number;
  /** PEM of the test root CA (the only thing clients trust). */
  ca: string;
  caFile: string;
  pid: number;
  /** Sends exact bytes over TLS and reads until the server closes. */
  raw(request: string | Buffer, timeoutMs?: number): Promise<RawExchange>;
  close(): Promise<void>;
}

export interface ProxyFixtureOptions {
  /** Extra `proxy:` keys. */
  proxy?: Record<string, unknown>;
  /** Point the daemon somewhere else than the recording backend (e.g. a closed port). */
  backendUrl?: string;
  logLevel?: string;
}

export async function startProxyFixture(options: ProxyFixtureOptions = {}): Promise<ProxyFixture> {
  const authority = createAuthority('Proxy Test');
  const leaf = issueLeaf(authority, { names: [PROXY_TEST_NAME] });
  const backend = await startBackend();
  const dir = tempDir('fedtls-proxy-');
  const certFile = path.join(dir, 'fullchain.pem');
  const keyFile = path.join(dir, 'privkey.pem');
  const caFile = path.join(dir, 'root.pem');
  writeFileSync(certFile, leaf.fullChainPem);
  writeFileSync(keyFile, leaf.keyPem);
  writeFileSync(caFile, authority.rootCert);
  const config = writeConfig(dir, {
    server_name: PROXY_TEST_NAME,
    backend: options.backendUrl ?? backend.url,
    listen: { http: ["127.0.0.1:0"], federation: ["127.0.0.1:0"] },
    state_dir: path.join(dir, 'state'),
    acme: { enabled: false },
    tls_certificate_path: certFile,
    tls_private_key_path: keyFile,
    log: { level: options.logLevel ?? 'debug' },
    // One process: the proxy runs in the pid the tests read /proc numbers from.
    workers: 1,
    ...(options.proxy ? { proxy: options.proxy } : {}),
  });
  const daemon = await startDaemon(config);
  const port = boundPort(daemon, 'federation');
  const ca = authority.rootCert;
  return {
    daemon, backend, port, ca, caFile,
    pid: daemon.child.pid!,
    raw: (request, timeoutMs) => rawTlsRequest({ port, servername: PROXY_TEST_NAME, ca, request, ...(timeoutMs ? { timeoutMs } : {}) }),
    async close() {
      await daemon.stop();
      await backend.close();
    },
  };
}

/** The daemon's resources as the kernel sees them. */
export interface ProcessStats {
  openFds: number;
  rssBytes: number;
  /** Peak resident memory since the process started (VmHWM). */
  peakRssBytes: number;
}

export function processStats(pid: number): ProcessStats {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!match) throw new Error(`no ${field} in /proc/${pid}/status`);
    return Number(match[1]) * 1024;
  };
  return { openFds: readdirSync(`/proc/${pid}/fd`).length, rssBytes: kb('VmRSS'), peakRssBytes: kb('VmHWM') };
}

/** Polls `check` until it returns true (or the time is up); returns its last result. */
export async function eventually(check: () => boolean, timeoutMs = 10_000, everyMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
  return check();
}

/**
 * Opens TLS over a TCP socket it owns, sends `head`, then `bodyBytes` of body, and once
 * `resetWhen()` holds (or everything is written) resets the TCP connection (RST), as a
 * client whose network drops does. Resolves with the time of the reset.
 */
export function uploadThenReset(options: { port: number; ca: string; head: string; bodyBytes: number; resetWhen?: () => boolean }): Promise<number> {
  return new Promise((resolve, reject) => {
    const tcp = net.connect(options.port, '127.0.0.1');
    tcp.on('error', () => undefined);
    const socket = tls.connect({ socket: tcp, servername: PROXY_TEST_NAME, ca: options.ca });
    socket.on('error', () => undefined);
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let sent = 0;
    let done = false;
    const reset = (): void => {
      if (done) return;
      done = true;
      clearInterval(poll);
      const at = performance.now();
      tcp.resetAndDestroy();
      resolve(at);
    };
    const poll = setInterval(() => { if (options.resetWhen?.()) reset(); }, 10);
    const pump = (): void => {
      while (!done && sent < options.bodyBytes) {
        const piece = Math.min(chunk.length, options.bodyBytes - sent);
        sent += piece;
        if (!socket.write(piece === chunk.length ? chunk : chunk.subarray(0, piece))) {
          socket.once('drain', pump);
          return;
        }
      }
      // Everything written: reset once it has left our buffers (unless waiting on resetWhen).
      if (!done && !options.resetWhen) {
        if (socket.writableLength === 0) setImmediate(reset);
        else socket.once('drain', reset);
      }
    };
    socket.once('secureConnect', () => {
      socket.write(options.head);
      pump();
    });
    socket.once('close', () => { if (!done) { done = true; clearInterval(poll); reject(new Error('the server closed the connection before the reset')); } });
  });
}

export interface StreamedResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  rawHeaders: string[];
  body: Buffer;
  /** The response ended as framed (Content-Length reached / last chunk seen). */
  complete: boolean;
  /** The connection broke before the response was complete. */
  error: string | null;
}

/** A normal HTTPS client (node:https, trusting only the test CA) that reports whether the response arrived whole. */
export function httpsRequest(fixture: Pick<ProxyFixture, 'port' | 'ca'>, options: { method?: string; path: string; headers?: Record<string, string>; body?: Buffer | string; timeoutMs?: number }): Promise<StreamedResponse> {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port: fixture.port, servername: PROXY_TEST_NAME, ca: fixture.ca, agent: false,
      method: options.method ?? 'GET', path: options.path, headers: { Host: PROXY_TEST_NAME, ...options.headers },
    }, (res) => {
      const chunks: Buffer[] = [];
      let error: string | null = null;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (e: NodeJS.ErrnoException) => { error = e.code ?? e.message; });
      res.on('close', () => resolve({
        status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks),
        complete: res.complete, error: res.complete ? null : (error ?? 'closed early'),
      }));
    });
    req.setTimeout(options.timeoutMs ?? 30_000, () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(options.body);
  });
}
