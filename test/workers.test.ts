// `workers: 2`: the TLS listeners run in worker processes (node:cluster). A SIGHUP swap must
// reach every worker before the primary says "certificate_replaced": several handshakes in a
// row (round-robin over the workers) all see the new serial. Requests are proxied by the
// workers, a session resumes on any worker (with a fresh ticket each time), and a worker
// that dies is replaced.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import { createAuthority, issueLeaf, type Authority } from './helpers/certs.js';
import { startBackend, type Backend } from './helpers/backend.js';
import { startDaemon, tempDir, boundPort, type RunningDaemon } from './helpers/daemon.js';
import { writeManualDaemonConfig } from './helpers/manual-daemon.js';
import { handshake, rawTlsRequest, requestWithSession, serialOf } from './helpers/tls-client.js';

const NAME = 'workers.fedtls.test';

function childPids(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) children.push(Number(entry));
    } catch { /* exited meanwhile */ }
  }
  return children;
}

async function serials(port: number, count: number): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < count; i++) seen.push(serialOf((await handshake({ port, servername: NAME })).serial));
  return seen;
}

describe('TLS worker processes', () => {
  let authority: Authority;
  let backend: Backend;
  let daemon: RunningDaemon;
  let certFile: string;
  let keyFile: string;
  let port: number;
  let configFile: string;

  beforeAll(async () => {
    authority = createAuthority();
    backend = await startBackend();
    const dir = tempDir();
    const written = await writeManualDaemonConfig(dir, NAME, backend.url, { workers: 2 });
    certFile = written.certificatePath;
    configFile = written.configFile;
    keyFile = written.privateKeyPath;
    const first = serialOf(written.serial);
    daemon = await startDaemon(written.configFile);
    port = boundPort(daemon, 'federation');
    expect(await serials(port, 4)).toEqual(Array(4).fill(first));
  });

  afterAll(async () => {
    await daemon?.stop();
    await backend?.close();
  });

  it('runs two worker processes that proxy requests', async () => {
    expect(daemon.logs.find((l) => l.event === 'workers_started')?.workers).toBe(2);
    expect(childPids(daemon.child.pid!)).toHaveLength(2);
    const before = backend.requests.length;
    for (let i = 0; i < 4; i++) {
      const res = await rawTlsRequest({ port, servername: NAME, request: `GET /_matrix/federation/v1/version?n=${i} HTTP/1.1\r\nHost: ${NAME}\r\nConnection: close\r\n\r\n` });
      expect(res.status).toBe(200);
    }
    expect(backend.requests.slice(before).map((r) => r.target)).toEqual([0, 1, 2, 3].map((i) => `/_matrix/federation/v1/version?n=${i}`));
  });

  it('a SIGHUP swap reaches every worker: several handshakes all see the new serial', async () => {
    for (let round = 0; round < 3; round++) {
      const next = issueLeaf(authority, { names: [NAME] });
      writeFileSync(certFile, next.fullChainPem);
      writeFileSync(keyFile, next.keyPem);
      const before = daemon.logs.length;
      daemon.signal('SIGHUP');
      await daemon.waitForLog((l) => daemon.logs.indexOf(l) >= before && l.event === 'certificate_replaced', 20_000, 'certificate_replaced');
      expect(await serials(port, 8)).toEqual(Array(8).fill(serialOf(next.serial)));
    }
    expect(daemon.logs.filter((l) => l.event === 'worker_certificate_mismatch')).toEqual([]);
  });

  it('a SIGHUP storm (files replaced, SIGHUP, replaced again, SIGHUP, every 50 ms) settles on the last pair everywhere, with no worker_certificate_mismatch', async () => {
    const leaves = Array.from({ length: 4 }, () => issueLeaf(authority, { names: [NAME] }));
    const final = issueLeaf(authority, { names: [NAME] });
    const before = daemon.logs.length;
    const since = (event: string): number => daemon.logs.slice(before).filter((l) => l.event === event).length;
    const stormEnds = Date.now() + 4000;
    // Back-to-back reloads with different files: the primary handles the second SIGHUP before
    // the workers have answered the first, or a worker reads files newer than the primary did.
    for (let i = 0; Date.now() < stormEnds; i++) {
      const next = leaves[i % leaves.length]!;
      writeFileSync(certFile, next.fullChainPem);
      writeFileSync(keyFile, next.keyPem);
      daemon.signal('SIGHUP');
      await new Promise((r) => setTimeout(r, i % 5));
      const other = leaves[(i + 1) % leaves.length]!;
      writeFileSync(certFile, other.fullChainPem);
      writeFileSync(keyFile, other.keyPem);
      daemon.signal('SIGHUP');
      await new Promise((r) => setTimeout(r, 50));
    }
    writeFileSync(certFile, final.fullChainPem);
    writeFileSync(keyFile, final.keyPem);
    daemon.signal('SIGHUP');
    // Settled: every reload the primary started (one "reload" line per SIGHUP it handled) has
    // been confirmed by the workers and reported, and nothing more has come for 2 s (longer
    // than the primary waits before it compares the workers with its own store).
    let settledFor = 0;
    for (let waited = 0; settledFor < 2000 && waited < 30_000; waited += 100) {
      await new Promise((r) => setTimeout(r, 100));
      const pending = since('reload') - daemon.logs.slice(before).filter((l) => l.event === 'certificates_reloaded' && l.trigger === 'SIGHUP').length;
      settledFor = pending === 0 && since('reload') > 1 ? settledFor + 100 : 0;
    }
    expect(settledFor).toBeGreaterThanOrEqual(2000);
    expect(since('reload')).toBeGreaterThan(20);
    expect(await serials(port, 8)).toEqual(Array(8).fill(serialOf(final.serial)));
    expect(daemon.logs.slice(before).filter((l) => l.event === 'worker_certificate_mismatch')).toEqual([]);
  });

  const connectForTickets = (servername: string | undefined, session?: Buffer): Promise<{ reused: boolean; tickets: Buffer[] }> =>
    requestWithSession({ port, hostHeader: NAME, ...(servername ? { servername } : {}), ...(session ? { session } : {}) });

  for (const servername of [NAME, undefined]) {
    it(`resumes a TLS session on any worker, and every resumption brings a fresh ticket (OpenSSL clients use a ticket once): ${servername ? 'with SNI' : 'without SNI'}`, async () => {
      const first = await connectForTickets(servername);
      expect(first.tickets.length).toBeGreaterThan(0);
      // The same ticket on every worker (round-robin alternates them).
      const sameTicket: boolean[] = [];
      for (let i = 0; i < 4; i++) sameTicket.push((await connectForTickets(servername, first.tickets.at(-1))).reused);
      expect(sameTicket).toEqual(Array(4).fill(true));
      // Each connection offers the ticket the previous (resumed) one received, as OpenSSL does.
      const chain: { reused: boolean; newTickets: number }[] = [];
      let ticket = first.tickets.at(-1);
      for (let i = 0; i < 6; i++) {
        const next = await connectForTickets(servername, ticket);
        chain.push({ reused: next.reused, newTickets: next.tickets.length });
        ticket = next.tickets.at(-1);
      }
      expect(chain).toEqual(Array(6).fill({ reused: true, newTickets: 1 }));
    });
  }

  it("keeps the config text and ticket keys out of the workers' environment (/proc/<pid>/environ lasts the process's life)", () => {
    const configText = readFileSync(configFile, 'utf8');
    for (const pid of childPids(daemon.child.pid!)) {
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
      expect(environ).toContain('FEDTLS_WORKER_CONFIG_FILE=');
      expect(environ).not.toContain(configText.slice(0, 40));
      expect(environ).not.toMatch(/[0-9a-f]{64}/); // no key material in hex
    }
  });

  it('says once at start how sessions resume', () => {
    expect(daemon.logs.filter((l) => l.event === 'tls_session_tickets')).toEqual([expect.objectContaining({ mode: 'fedtls', rotation_s: 3600, lifetime_s: 3600 })]);
  });

  it('every worker answers plain HTTP on the TLS port with a plain-HTTP 400 (round-robin reaches both)', async () => {
    const plain = (): Promise<string> => new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => socket.write(`GET /plain HTTP/1.1\r\nHost: ${NAME}\r\n\r\n`));
      let text = '';
      socket.on('data', (d: Buffer) => { text += d.toString('latin1'); });
      socket.on('error', reject);
      socket.on('close', () => resolve(text));
    });
    for (let i = 0; i < 4; i++) {
      const answer = await plain();
      expect(answer).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
      expect(answer).toContain('plain HTTP was sent to the HTTPS port; use https://');
    }
    expect((await rawTlsRequest({ port, servername: NAME, request: `GET /after-plain HTTP/1.1\r\nHost: ${NAME}\r\nConnection: close\r\n\r\n` })).status).toBe(200);
  });

  it('replaces a worker that dies, and the new one serves the current certificate', async () => {
    const serving = serialOf((await handshake({ port, servername: NAME })).serial);
    const [victim] = childPids(daemon.child.pid!);
    const before = daemon.logs.length;
    process.kill(victim!, 'SIGKILL');
    await daemon.waitForLog((l) => daemon.logs.indexOf(l) >= before && l.event === 'worker_exited', 20_000, 'worker_exited');
    await daemon.waitForLog((l) => daemon.logs.indexOf(l) >= before && l.event === 'worker_restarted', 20_000, 'worker_restarted');
    expect(childPids(daemon.child.pid!).filter((p) => p !== victim)).toHaveLength(2);
    expect(await serials(port, 6)).toEqual(Array(6).fill(serving));
  });

  it('a worker restarted while the certificate files are missing is reported as serving nothing; with the files back, a SIGHUP fixes it', async () => {
    const pemCert = readFileSync(certFile);
    const pemKey = readFileSync(keyFile);
    const before = daemon.logs.length;
    rmSync(certFile);
    process.kill(childPids(daemon.child.pid!)[0]!, 'SIGKILL');
    await daemon.waitForLog((l) => daemon.logs.indexOf(l) >= before && l.event === 'worker_restarted', 20_000, 'worker_restarted');
    const mismatch = await daemon.waitForLog((l) => daemon.logs.indexOf(l) >= before && l.event === 'worker_certificate_mismatch', 20_000, 'worker_certificate_mismatch');
    expect(mismatch).toMatchObject({ level: 40, trigger: 'worker restart', worker_serial: null });
    writeFileSync(certFile, pemCert);
    writeFileSync(keyFile, pemKey);
    const sighup = daemon.logs.length;
    daemon.signal('SIGHUP');
    await daemon.waitForLog((l) => daemon.logs.indexOf(l) >= sighup && l.event === 'certificates_reloaded', 20_000, 'certificates_reloaded');
    const serving = serialOf(new X509Certificate(pemCert).serialNumber);
    expect(await serials(port, 6)).toEqual(Array(6).fill(serving));
  });

  it('a worker that dies while it restarts is started again (with a growing delay), and gets the ticket keys too', async () => {
    const ticket = (await connectForTickets(NAME)).tickets.at(-1);
    const initial = childPids(daemon.child.pid!);
    const before = daemon.logs.length;
    process.kill(initial[0]!, 'SIGKILL');
    // Kill the replacement as soon as it appears (a worker takes far longer than 5 ms to start).
    let replacement: number | undefined;
    for (const deadline = Date.now() + 20_000; replacement === undefined && Date.now() < deadline;) {
      replacement = childPids(daemon.child.pid!).find((p) => !initial.includes(p));
      if (replacement === undefined) await new Promise((r) => setTimeout(r, 5));
    }
    expect(replacement).toBeDefined();
    process.kill(replacement!, 'SIGKILL');
    const failed = await daemon.waitForLog((l) => daemon.logs.indexOf(l) >= before && l.event === 'worker_start_failed', 20_000, 'worker_start_failed');
    expect(failed).toMatchObject({ level: 50, retry_in_s: 2, serving_workers: 1 });
    await daemon.waitForLog((l) => daemon.logs.indexOf(l) >= before && l.event === 'worker_restarted', 20_000, 'worker_restarted');
    expect(childPids(daemon.child.pid!).filter((p) => p !== initial[0] && p !== replacement)).toHaveLength(2);
    // Both workers (the survivor and the third try) resume a ticket issued before.
    const resumed: boolean[] = [];
    for (let i = 0; i < 4; i++) resumed.push((await connectForTickets(NAME, ticket)).reused);
    expect(resumed).toEqual(Array(4).fill(true));
  });
});

describe('TLS worker processes: ticket key rotation', () => {
  let backend: Backend;
  let daemon: RunningDaemon;

  afterAll(async () => {
    await daemon?.stop();
    await backend?.close();
  });

  it('every worker takes the primary\'s new keys at each rotation: an old ticket stops resuming everywhere, a new one resumes everywhere', async () => {
    backend = await startBackend();
    const written = await writeManualDaemonConfig(tempDir(), NAME, backend.url, { workers: 2 });
    daemon = await startDaemon(written.configFile, { env: { FEDTLS_TEST_TICKET_KEY_ROTATION_MS: '1500' } });
    const port = boundPort(daemon, 'federation');
    const connect = async (session?: Buffer): Promise<{ reused: boolean; ticket: Buffer | undefined }> => {
      const { reused, tickets } = await requestWithSession({ port, hostHeader: NAME, servername: NAME, ...(session ? { session } : {}) });
      return { reused, ticket: tickets.at(-1) };
    };
    const resumedOnBoth = async (ticket: Buffer | undefined): Promise<boolean[]> => {
      const seen: boolean[] = [];
      for (let i = 0; i < 4; i++) seen.push((await connect(ticket)).reused); // round-robin: both workers, twice
      return seen;
    };
    const old = (await connect()).ticket;
    await new Promise((r) => setTimeout(r, 3400)); // two rotations: the key that made `old` is gone
    expect(await resumedOnBoth(old)).toEqual([false, false, false, false]);
    const fresh = (await connect()).ticket;
    expect(await resumedOnBoth(fresh)).toEqual([true, true, true, true]);
  });
});
