// The running daemon: builds every part from the Config and owns their lifecycle.
// Start order: certificate store (from files) → listeners bound → ACME manager in the
// background. Signals: SIGHUP re-reads every certificate file and swaps valid pairs in (not
// the config: a changed config file gets one warning that it needs a restart);
// SIGTERM/SIGINT stop accepting, let in-flight requests finish (bounded), then exit.

import http from 'node:http';
import yaml from 'js-yaml';
import type { Server, Socket } from 'node:net';
import type { Config, ListenAddress } from './config/types.js';
import { ConfigError, loadConfig, readConfigText } from './config/load.js';
import type { Logger } from './ops/log.js';
import { CertificateStore, type CertificateSource, type ReloadOutcome } from './certs/store.js';
import { ExpiryWatch } from './certs/expiry-watch.js';
import { nameMatches } from './certs/pem.js';
import { ReplacementRefusedError, type PeerName } from './certs/replacement.js';
import { ChallengeTable } from './acme/challenges.js';
import { AcmeManager, acmeCertificateSource } from './acme/manager.js';
import { unwritableDirectory } from './certs/files.js';
import { createChallengeHandler } from './http/challenge-listener.js';
import { markClosedByFedtls } from './http/closed-by-fedtls.js';
import { createProxyHandler, type ProxyHandler } from './http/proxy.js';
import { createTlsServer } from './http/tls-listener.js';
import { SESSION_LIFETIME_SECONDS, SessionTicketKeys, TICKET_KEY_ROTATION_ENV, TICKET_KEY_ROTATION_MS, ticketKeyCallbackAvailable } from './http/session-tickets.js';
import { createNotFoundHandler, createWellKnownHandler } from './http/well-known.js';
import { bindListener } from './http/listen.js';
import { WorkerPool } from './workers/pool.js';
import { ControlServer } from './ops/control-server.js';
import { registerAcmeCommands } from './acme/control-commands.js';
import { registerCertificateCommands } from './certs/control-commands.js';
import { DaemonMetrics, createMetricsHandler, type TrafficCounters } from './ops/metrics.js';
import { buildStatusReport } from './ops/status.js';

/** state_dir cannot be created or written: the message says how to fix it. */
export class StateDirError extends Error {
  override name = 'StateDirError';
}

export interface BoundListener {
  role: 'http' | 'federation' | 'https' | 'metrics';
  configured: string;
  address: string;
  server: Server;
}

/** The certificate sources this config asks for: the ACME pair (if enabled) and every hand-managed pair. */
export function certificateSources(config: Config): CertificateSource[] {
  const sources: CertificateSource[] = [];
  if (config.acme.enabled) sources.push(acmeCertificateSource(config));
  config.tls.certificates.forEach((pair, index) => {
    sources.push({ id: `file:${index}:${pair.certificatePath}`, kind: 'file', certificatePath: pair.certificatePath, privateKeyPath: pair.privateKeyPath, names: pair.names });
  });
  return sources;
}

/** The names peers are told to connect to, which a reload must never take away (certs/replacement.ts). */
export function peerNames(config: Config): PeerName[] {
  const names: PeerName[] = [];
  if (config.serverHost) names.push({ name: config.serverHost, why: 'server_name' });
  const delegated = config.wellKnown.serverHost;
  if (delegated && delegated !== config.serverHost) names.push({ name: delegated, why: 'the host /.well-known/matrix/server delegates to' });
  return names;
}

/** One log line per source per load: kept / replaced (old and new serial, expiry) / refused (why, which file). */
export function logReloadOutcome(log: Logger, outcome: ReloadOutcome, trigger: string): void {
  const files = { certificate: outcome.source.certificatePath, private_key_file: outcome.source.privateKeyPath };
  switch (outcome.status) {
    case 'added':
    case 'replaced':
    case 'unchanged': {
      const leaf = outcome.pair.leaf;
      const event = outcome.status === 'unchanged' ? 'certificate_kept' : `certificate_${outcome.status}`;
      const fields = { event, trigger, source: outcome.source.id, names: leaf.names, serial: leaf.serial, not_after: leaf.notAfter.toISOString(), ...files };
      if (outcome.status === 'replaced') {
        const old = outcome.previous.leaf;
        log.info({ ...fields, previous_serial: old.serial, previous_not_after: old.notAfter.toISOString() },
          `certificate replaced for ${leaf.names.join(', ')}: serial ${old.serial} (expires ${old.notAfter.toISOString()}) → ${leaf.serial} (expires ${leaf.notAfter.toISOString()})`);
      } else if (outcome.status === 'unchanged') {
        const verb = outcome.filesChanged ? 'kept: same certificate, files rewritten; serving' : 'kept (files unchanged); serving';
        log.info({ ...fields, files_changed: outcome.filesChanged }, `certificate ${verb} ${leaf.names.join(', ')} (serial ${leaf.serial}, expires ${leaf.notAfter.toISOString()})`);
      } else {
        log.info(fields, `certificate serving ${leaf.names.join(', ')} (serial ${leaf.serial}, expires ${leaf.notAfter.toISOString()})`);
      }
      // Warnings are those of this read of the files, every time: fixed ones stop, new ones show.
      const warnings = [...outcome.pair.warnings, ...(outcome.status === 'replaced' ? outcome.replacementWarnings : [])];
      for (const warning of warnings) {
        log.warn({ event: 'certificate_warning', source: outcome.source.id, ...files }, `${outcome.source.certificatePath}: ${warning}`);
      }
      if (outcome.uncoveredNames.length > 0) {
        log.warn({ event: 'certificate_names_uncovered', source: outcome.source.id, uncovered: outcome.uncoveredNames, names: leaf.names, ...files },
          `${outcome.source.certificatePath} is configured for ${outcome.uncoveredNames.join(', ')} but the certificate only holds ${leaf.names.join(', ') || 'no DNS names'}; peers connecting to those names will refuse it`);
      }
      return;
    }
    case 'refused': {
      const kept = outcome.kept ? `; still serving the previous certificate (serial ${outcome.kept.leaf.serial})` : '; no certificate from this source is served';
      const namesLost = outcome.error instanceof ReplacementRefusedError ? { names_lost: outcome.error.namesLost } : {};
      log.error({ event: 'certificate_refused', trigger, source: outcome.source.id, reason: outcome.error.reason, file: outcome.error.file, kept_serial: outcome.kept?.leaf.serial ?? null, ...namesLost, ...files },
        `refused to load ${outcome.error.file}: ${outcome.error.reason}${kept}`);
      return;
    }
    case 'missing':
      log.info({ event: 'certificate_missing', trigger, source: outcome.source.id, ...files }, 'no certificate obtained yet for this source; ACME will obtain one');
  }
}

/** A reload's workers are checked against this process's store only if no newer reload came within this time. */
const WORKER_CHECK_SETTLE_MS = 1000;

/**
 * 'single': everything in this process (workers: 1). 'primary': ACME, the challenge
 * listener and the control socket here, TLS listeners in worker processes. 'worker': only
 * the TLS listeners, reloading certificate files when the primary says so.
 */
export type DaemonRole = 'single' | 'primary' | 'worker';

export class Daemon {
  readonly store: CertificateStore;
  readonly challenges = new ChallengeTable();
  readonly acme: AcmeManager | null;
  readonly expiryWatch: ExpiryWatch;
  readonly listeners: BoundListener[] = [];
  /** The control socket; other parts add commands with `control.register(name, handler)` before start(). */
  readonly control: ControlServer;
  private proxy: ProxyHandler | null = null;
  private stopping: Promise<void> | null = null;
  readonly startedAt = new Date();
  readonly metrics = new DaemonMetrics();
  /** Resolves when the last reload is served everywhere (with TLS workers: by every worker); systemd hears READY=1 then. */
  reloadSettled: Promise<void> = Promise.resolve();
  /** Every client connection of every listener, so a drain that runs out of time can end them all (even mid-handshake). */
  private readonly clientSockets = new Set<Socket>();

  /** Every listener of this daemon in bind order, including those in TLS workers (for status). */
  private readonly announcedListeners: { role: string; address: string }[] = [];
  /** The TLS worker processes (role 'primary' only). */
  private readonly pool: WorkerPool | null;
  /** The session ticket keys: this process's own ('single', 'primary': rotated here), or the primary's copy ('worker'). */
  private readonly ticketKeys: SessionTicketKeys;
  private stopTicketKeyRotation: () => void = () => undefined;

  constructor(
    readonly config: Config,
    readonly log: Logger,
    readonly role: DaemonRole = config.workers > 1 ? 'primary' : 'single',
    ticketKeys: SessionTicketKeys = SessionTicketKeys.generate(),
  ) {
    this.store = new CertificateStore(config.tls.defaultName, { peerNames: peerNames(config) });
    this.expiryWatch = new ExpiryWatch({ store: this.store, log });
    this.ticketKeys = ticketKeys;
    this.pool = role === 'primary'
      ? new WorkerPool({
        config, log, ticketKeys,
        onListening: (listener, address) => this.logListening(listener, address),
        // The new worker read the certificate files when it started, and they may have been
        // missing or half-written then: a reload everywhere, then the usual check that every
        // worker serves what this process does (worker_certificate_mismatch if not).
        onWorkerRestarted: () => { if (!this.stopping) this.reloadCertificates('worker restart'); },
      })
      : null;
    this.acme = config.acme.enabled && role !== 'worker'
      ? new AcmeManager({ config, store: this.store, challenges: this.challenges, log, onIssued: () => this.pool?.reload('acme').then(() => undefined) })
      : null;
    this.control = new ControlServer(config.controlSocket, log);
    registerAcmeCommands(this.control, this.acme);
    registerCertificateCommands(this.control, this.store, config.serverHost);
    this.control.register('status', () => buildStatusReport({
      serverName: config.serverName, startedAt: this.startedAt, listeners: this.announcedListeners,
      store: this.store, acme: this.acme, backend: config.proxy.backend,
    }));
  }

  /** Requests this process is forwarding now (not those of its TLS workers). */
  get inFlight(): number {
    return this.proxy?.counters.inFlight ?? 0;
  }

  /** The metrics scrape: counters kept by DaemonMetrics plus what the store and ACME know now. */
  async renderMetrics(): Promise<string> {
    const workers = (await this.pool?.metrics() ?? []) as TrafficCounters[];
    const certificates = this.store.list().flatMap(({ source, pair }) =>
      (source.names.length > 0 ? source.names : pair.leaf.names).map((name) => ({ name, source: source.id, notAfter: pair.leaf.notAfter })));
    return this.metrics.render({ certificates, renewals: this.acme?.getStatus().orders ?? null, startedAt: this.startedAt }, workers);
  }

  /**
   * Re-reads every certificate file. Called at start and on SIGHUP. With TLS workers, the
   * outcome is logged once every worker serves it too, so "certificate_replaced" means the
   * next handshake, whichever worker takes it, shows the new certificate.
   */
  reloadCertificates(trigger: string): ReloadOutcome[] {
    const outcomes = this.store.reloadAll(certificateSources(this.config));
    // Workers stay silent: the primary read the same files and tells the story once.
    if (this.role === 'worker') return outcomes;
    const report = (): void => {
      for (const outcome of outcomes) logReloadOutcome(this.log, outcome, trigger);
      this.warnIfServerNameUncovered();
      const counts = { added: 0, replaced: 0, unchanged: 0, refused: 0, missing: 0 };
      for (const outcome of outcomes) counts[outcome.status] += 1;
      this.log.info({ event: 'certificates_reloaded', trigger, added: counts.added, replaced: counts.replaced, kept: counts.unchanged, refused: counts.refused, missing: counts.missing },
        `certificate reload (${trigger}) done: ${counts.added + counts.replaced} loaded, ${counts.unchanged} kept, ${counts.refused} refused${counts.missing ? `, ${counts.missing} not obtained yet` : ''}`);
    };
    // Every reload reaches the workers, not only those that changed something here: a worker
    // that refused a pair mid-swap (files changed between its read and ours) catches up.
    if (this.pool) {
      const pool = this.pool;
      const served = pool.reload(trigger);
      const reload = pool.reloadCount;
      this.reloadSettled = served.then((answers) => {
        report();
        // Compared once no other reload followed for a moment: during back-to-back reloads
        // (a script replacing files and sending SIGHUP in a loop) the answers to an older
        // reload, or files that changed between this process's read and a worker's, say
        // nothing about where things end up; the newest reload's check does.
        const check = setTimeout(() => {
          if (pool.reloadCount === reload && !this.stopping) this.checkWorkers(answers, trigger);
        }, WORKER_CHECK_SETTLE_MS);
        check.unref();
      });
    } else {
      report();
      this.reloadSettled = Promise.resolve();
    }
    return outcomes;
  }

  /** After the newest reload settled: warn about any worker that serves something else than this process's store. */
  private checkWorkers(served: Map<number, Record<string, string | null>>, trigger: string): void {
    for (const [worker, serials] of served) {
      for (const entry of this.store.list()) {
        const serial = serials[entry.source.id] ?? null;
        if (serial !== entry.pair.leaf.serial) {
          this.log.warn({ event: 'worker_certificate_mismatch', worker, trigger, source: entry.source.id, serial: entry.pair.leaf.serial, worker_serial: serial },
            `TLS worker ${worker} serves serial ${serial ?? 'none'} for ${entry.source.id}, expected ${entry.pair.leaf.serial}, a second after the last reload (the files changed between fedtls's read and the worker's? send SIGHUP once more)`);
        }
      }
    }
  }

  private logListening(role: string, address: string): void {
    this.announcedListeners.push({ role, address });
    this.log.info({ event: 'listening', listener: role, address }, `${role} listener on ${address}`);
  }

  /** Peers connect to server_name: the certificate served for it must hold that name. */
  private warnIfServerNameUncovered(): void {
    const host = this.config.serverHost;
    const served = this.store.pairFor(host) ?? this.store.defaultPair();
    if (!served || served.leaf.names.some((pattern) => nameMatches(pattern, host))) return;
    this.log.warn({ event: 'server_name_uncovered', server_name: host, names: served.leaf.names, certificate: served.certificatePath },
      `no certificate holds server_name ${host}: handshakes for it get ${served.certificatePath} (${served.leaf.names.join(', ') || 'no DNS names'}), which federating servers will refuse. Add ${host} to a certificate, or list the pair for it under tls.certificates`);
  }

  private async bindAll(role: BoundListener['role'], addresses: ListenAddress[], createServer: () => Server, configKey: string): Promise<void> {
    for (const address of addresses) {
      const server = createServer();
      if (role !== 'metrics') this.metrics.observeListener(role, server);
      server.on('connection', (socket: Socket) => {
        this.clientSockets.add(socket);
        socket.once('close', () => this.clientSockets.delete(socket));
      });
      const bound = await bindListener(server, address, addresses, role, configKey, this.log);
      this.listeners.push({ role, configured: address.text, address: bound, server });
      if (this.role !== 'worker') this.logListening(role, bound);
    }
  }

  async start(): Promise<void> {
    const { config, log, role } = this;
    this.reloadCertificates('start');
    if (role !== 'worker') this.expiryWatch.start();
    await this.acme?.preflight();

    const redirectHosts = new Set([config.serverHost, ...config.acme.domains, ...config.tls.certificates.flatMap((c) => c.names), ...(config.wellKnown.server ? [config.wellKnown.server.replace(/:\d+$/, '')] : [])].map((n) => n.toLowerCase()));
    const challengeHandler = createChallengeHandler({ challenges: this.challenges, redirectToHttps: config.http.redirectToHttps, redirectHosts, log });
    this.proxy = role === 'primary' ? null : createProxyHandler({ config: config.proxy, log, onBackendResponse: (seconds) => this.metrics.observeBackendLatency(seconds) });
    const proxy = this.proxy;
    try {
      if (role !== 'worker') {
        const problem = unwritableDirectory(config.stateDir, config.stateDir, `. Or create it by hand: install -d -m 0700 -o <fedtls user> ${config.stateDir} (systemd's StateDirectory= does this for the unit)`);
        if (problem) throw new StateDirError(`state_dir: ${problem}`);
      }
      // The control socket first: a second fedtls with the same state_dir is told plainly that
      // one is already running, instead of failing later on a busy port.
      if (role !== 'worker') await this.control.start();
      if (role !== 'worker') {
        await this.bindAll('http', config.listen.http, () => {
          const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 30_000 }, challengeHandler);
          server.keepAliveTimeout = 5000;
          return server;
        }, 'listen.http');
      }
      if (proxy) {
        const federationHandler = createWellKnownHandler(config.wellKnown, proxy);
        await this.bindAll('federation', config.listen.federation, () => createTlsServer({ store: this.store, proxyConfig: config.proxy, handler: federationHandler, ticketKeys: this.ticketKeys, log }), 'listen.federation');
        const httpsHandler = createWellKnownHandler(config.wellKnown, config.wellKnown.httpsOtherPaths === 'proxy' ? proxy : createNotFoundHandler());
        await this.bindAll('https', config.listen.https, () => createTlsServer({ store: this.store, proxyConfig: config.proxy, handler: httpsHandler, ticketKeys: this.ticketKeys, log }), 'listen.https');
      }
      if (this.pool) {
        await this.pool.start();
        const tlsAddresses = this.announcedListeners.filter((l) => l.role === 'federation' || l.role === 'https').map((l) => l.address);
        log.info({ event: 'workers_started', workers: this.pool.size, addresses: tlsAddresses }, `${this.pool.size} TLS worker processes serve ${tlsAddresses.join(', ')}`);
      }
      if (role !== 'worker') {
        await this.bindAll('metrics', config.listen.metrics, () => http.createServer(createMetricsHandler(() => this.renderMetrics())), 'listen.metrics');
        for (const address of config.listen.metrics.filter((a) => !/^(127\.|::1$|localhost$)/.test(a.host))) {
          log.warn({ event: 'metrics_not_loopback', address: address.text }, `metrics listener ${address.text} can be reached from other machines (it shows certificate names and traffic); bind it to 127.0.0.1 or firewall it`);
        }
      }
    } catch (error) {
      await (await this.pool?.stop(0))?.exited;
      await this.closeListeners(0);
      await this.control.stop();
      throw error;
    }
    if (role === 'worker') return;

    const rotationMs = Number(process.env[TICKET_KEY_ROTATION_ENV]) || TICKET_KEY_ROTATION_MS;
    this.stopTicketKeyRotation = this.ticketKeys.startRotation(() => this.pool?.sendTicketKeys(), rotationMs);
    this.logSessionTickets();
    if (this.store.defaultPair() === null && config.acme.enabled) {
      log.info({ event: 'waiting_for_certificate', names: config.acme.domains },
        `no certificate yet: fedtls asks ${config.acme.directoryUrl} for one now; the CA will connect to ${config.acme.domains.map((name) => `http://${name}/.well-known/acme-challenge/…`).join(' and ')} (port 80 of this machine, from the internet), then 8448 serves the certificate without a restart`);
    } else if (this.store.defaultPair() === null) {
      const files = config.tls.certificates.map((c) => c.certificatePath).join(', ');
      log.error({ event: 'no_certificate_to_serve', files },
        `nothing to serve: ACME is off (acme.enabled: false) and no configured certificate loaded (${files}); every TLS handshake fails until you fix the files named above and reload (systemctl reload fedtls, or kill -HUP)`);
    }
    this.acme?.start();
    log.info({ event: 'ready', server_name: config.serverName, backend: config.proxy.backend.origin, certificates: this.store.size }, `fedtls is running for ${config.serverName}, forwarding to ${config.proxy.backend.origin}`);
  }

  /** Once at start: how TLS sessions resume, so an admin comparing handshake rates knows. */
  private logSessionTickets(): void {
    const shared = this.pool ? `shared by the ${this.pool.size} TLS workers, ` : '';
    if (ticketKeyCallbackAvailable()) {
      this.log.info({ event: 'tls_session_tickets', mode: 'fedtls', rotation_s: TICKET_KEY_ROTATION_MS / 1000, lifetime_s: SESSION_LIFETIME_SECONDS },
        `TLS session tickets: random keys in memory, ${shared}a new one every ${TICKET_KEY_ROTATION_MS / 3_600_000} h; a session resumes for up to ${SESSION_LIFETIME_SECONDS / 60} minutes, with a new ticket each time`);
    } else {
      this.log.warn({ event: 'tls_session_tickets', mode: 'node' },
        `TLS session tickets: this Node.js lacks the ticket-key hook fedtls uses, so Node's own tickets apply${this.pool ? ' (per worker: a reconnection that reaches another worker does a full handshake)' : ''}, and OpenSSL-based peers resume only every other reconnection`);
    }
  }

  /** One line for systemd's STATUS=: what is served now. */
  summary(): string {
    const names = this.store.list().flatMap((entry) => entry.pair.leaf.names);
    const serving = names.length > 0 ? `serving ${names.join(', ')}` : 'obtaining the first certificate';
    return `${serving}; forwarding to ${this.config.proxy.backend.origin}`;
  }

  /** SIGHUP: re-read certificate files (never dropping what is served when a file is bad). */
  reload(): ReloadOutcome[] {
    this.log.info({ event: 'reload', reason: 'SIGHUP' }, 'reloading certificate files');
    const outcomes = this.reloadCertificates('SIGHUP');
    // After the reload's own lines (with TLS workers: once every worker has it), so "re-read" is true when it is said.
    void this.reloadSettled.catch(() => undefined).then(() => this.warnIfConfigChanged());
    return outcomes;
  }

  /**
   * A reload does not apply config changes. An admin who edited the config and reloaded is
   * told so, once per reload: which top-level keys changed, that it takes a restart, and
   * whether the edited file would load. Comment or layout edits change nothing and say nothing.
   */
  private warnIfConfigChanged(): void {
    const { file, text: started } = this.config;
    if (started === undefined) return;
    let now: string;
    try {
      now = readConfigText(file);
    } catch (error) {
      const reason = error instanceof ConfigError ? error.problems.map((p) => p.message).join('; ') : (error as Error).message;
      this.log.warn({ event: 'config_unreadable', file }, `the config file ${file} cannot be read now (${reason}); fedtls keeps running with the config it started with, but a restart would fail`);
      return;
    }
    if (now === started) return;
    const parse = (text: string): Record<string, unknown> | null => {
      try {
        const value = yaml.load(text);
        return typeof value === 'object' && value !== null && !Array.isArray(value) ? value as Record<string, unknown> : null;
      } catch {
        return null;
      }
    };
    const before = parse(started) ?? {};
    const after = parse(now);
    const changed = after === null ? null : [...new Set([...Object.keys(before), ...Object.keys(after)])].filter((key) => JSON.stringify(before[key]) !== JSON.stringify(after[key]));
    if (changed !== null && changed.length === 0) return;
    let verdict = '';
    try {
      loadConfig(file);
    } catch (error) {
      verdict = error instanceof ConfigError ? ` The edited file would not start: ${error.problems.length} problem${error.problems.length === 1 ? '' : 's'}; see fedtls check-config --config ${file}.` : '';
    }
    this.log.warn({ event: 'config_changed_needs_restart', file, changed_keys: changed ?? undefined },
      `${file} has changed since fedtls started${changed ? ` (${changed.join(', ')})` : ''}, but a reload re-reads certificate files only: config changes take effect on a restart (systemctl restart fedtls; check the file first with fedtls check-config --config ${file}).${verdict} Certificate files were re-read.`);
  }

  private closeListeners(drainMs: number): Promise<void> {
    return new Promise((resolve) => {
      let pending = this.listeners.length;
      if (pending === 0) {
        resolve();
        return;
      }
      const force = setTimeout(() => {
        if (this.clientSockets.size > 0) this.log.warn({ event: 'drain_timeout', connections: this.clientSockets.size, in_flight: this.inFlight }, `shutdown.drain_timeout reached: closing ${this.clientSockets.size} connection(s) still open`);
        for (const socket of this.clientSockets) {
          markClosedByFedtls(socket);
          socket.destroy();
        }
      }, drainMs);
      force.unref();
      for (const { server } of this.listeners) {
        (server as http.Server).closeIdleConnections?.();
        server.close(() => {
          pending -= 1;
          if (pending === 0) {
            clearTimeout(force);
            resolve();
          }
        });
      }
    });
  }

  /** Stops accepting at once, lets in-flight requests finish up to shutdown.drain_timeout, then closes. `quiet`: after a failed start, log nothing. */
  stop(options: { quiet?: boolean } = {}): Promise<void> {
    this.stopping ??= (async () => {
      const drainMs = this.config.shutdown.drainTimeoutMs;
      this.stopTicketKeyRotation();
      // Stop accepting before the first await: a worker answers the primary's stop right after
      // calling stop(), and the primary announces 'stopping' on that answer, so this worker's
      // listeners must already be closed by then.
      const ownListenersClosed = this.closeListeners(drainMs);
      // Workers stop accepting first (then the shared socket is closed), and drain on their own;
      // each tells how many requests it still has in flight.
      const workers = this.pool ? await this.pool.stop(drainMs) : null;
      const announce = this.role !== 'worker' && !options.quiet;
      if (announce) {
        const inFlight = this.inFlight + (workers?.inFlight ?? 0);
        this.log.info({ event: 'stopping', drain_timeout_ms: drainMs, in_flight: inFlight }, `stopping: no new connections; waiting for ${inFlight} request(s) in flight`);
      }
      this.expiryWatch.stop();
      // Idle keep-alive connections would hold close() open: close them as they go idle.
      const idleSweep = setInterval(() => {
        for (const { server } of this.listeners) (server as http.Server).closeIdleConnections?.();
      }, 250);
      const drained = Promise.all([ownListenersClosed, workers?.exited]);
      // An ACME order in progress is not waited for longer than the drain (its files are written atomically).
      const acmeStopped = this.acme ? Promise.race([this.acme.stop(), new Promise<void>((resolve) => setTimeout(resolve, drainMs).unref())]) : undefined;
      // The control socket stays up while requests drain, so `fedtls status` still answers.
      await Promise.all([drained, acmeStopped]);
      await this.control.stop();
      clearInterval(idleSweep);
      this.proxy?.close();
      if (announce) this.log.info({ event: 'stopped' }, 'fedtls stopped');
    })();
    return this.stopping;
  }
}
