// Runs Let's Encrypt's test CA (Debian's `pebble` and `pebble-challtestsrv`) on loopback, for
// `fedtls demo` and for the tests. pebble-challtestsrv is the DNS server Pebble asks: it
// answers every A query with 127.0.0.1, so any name validates against our port-80 listener.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { freePort } from './ports.js';
import { createSelfSigned } from './self-signed.js';

export interface PebbleOptions {
  workDir: string;
  /** The port Pebble sends HTTP-01 validation requests to (fedtls's challenge port). */
  httpPort: number;
  /** Validity of issued certificates in seconds (Pebble's certificateValidityPeriod). */
  certificateValiditySeconds?: number;
  /** Percentage of nonces Pebble rejects with badNonce; Pebble's default (5) when unset. */
  nonceRejectPercent?: number;
  /** Extra environment for pebble (e.g. PEBBLE_AUTHZREUSE). */
  env?: Record<string, string>;
  /** External Account Binding keys (kid → base64url HMAC key); when set, Pebble requires EAB. */
  eabKeys?: Record<string, string>;
}

export interface PebbleInstance {
  directoryUrl: string;
  managementUrl: string;
  /** PEM file of Pebble's own HTTPS certificate: give it to fedtls as acme.ca_bundle. */
  caBundlePath: string;
  caBundlePem: string;
  /** Pebble's own HTTPS certificate and key files (for a stand-in that must look like Pebble). */
  tlsCertificatePath: string;
  tlsKeyPath: string;
  /** pebble-challtestsrv's management API (e.g. POST /add-a to point a name elsewhere). */
  challtestManagementUrl: string;
  /** The root that signs issued certificates (changes every Pebble start). */
  issuingRootPem(): Promise<string>;
  /**
   * Stops Pebble and starts it again on the same ports, with the same config and TLS
   * certificate: like a CA that lost its database (Pebble keeps no state: every account,
   * order and authorization is forgotten). DNS (challtestsrv) keeps running.
   */
  restart(): Promise<void>;
  output(): string;
  stop(): Promise<void>;
}

export class PebbleMissingError extends Error {
  constructor() {
    super('Pebble (the ACME test CA) is not installed; install it with: sudo apt-get install -y pebble');
  }
}

export function pebbleInstalled(): boolean {
  return ['pebble', 'pebble-challtestsrv'].every((cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0);
}

function fetchText(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => { socket.destroy(); resolve(true); });
    socket.on('error', () => resolve(false));
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve();
      return;
    }
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 3000).unref();
  });
}

export async function startPebble(options: PebbleOptions): Promise<PebbleInstance> {
  if (!pebbleInstalled()) throw new PebbleMissingError();
  const [acmePort, managementPort, dnsPort, challtestManagementPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const tlsPair = createSelfSigned({ names: ['localhost', 'pebble.local'], ips: ['127.0.0.1'] });
  const certPath = path.join(options.workDir, 'pebble-tls.pem');
  const keyPath = path.join(options.workDir, 'pebble-tls.key');
  writeFileSync(certPath, tlsPair.certPem);
  writeFileSync(keyPath, tlsPair.keyPem, { mode: 0o600 });
  const configPath = path.join(options.workDir, 'pebble-config.json');
  writeFileSync(configPath, JSON.stringify({
    pebble: {
      listenAddress: `127.0.0.1:${acmePort}`,
      managementListenAddress: `127.0.0.1:${managementPort}`,
      certificate: certPath,
      privateKey: keyPath,
      httpPort: options.httpPort,
      tlsPort: await freePort(),
      ocspResponderURL: '',
      externalAccountBindingRequired: options.eabKeys !== undefined,
      ...(options.eabKeys ? { externalAccountMACKeys: options.eabKeys } : {}),
      ...(options.certificateValiditySeconds ? { certificateValidityPeriod: options.certificateValiditySeconds } : {}),
    },
  }, null, 2));

  let output = '';
  const collect = (prefix: string) => (chunk: Buffer): void => {
    output += chunk.toString().split('\n').filter(Boolean).map((line) => `${prefix} ${line}\n`).join('');
    if (output.length > 200_000) output = output.slice(-100_000);
  };
  const dns = spawn('pebble-challtestsrv', [
    '-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '',
    '-management', `127.0.0.1:${challtestManagementPort}`, '-defaultIPv4', '127.0.0.1', '-defaultIPv6', '',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  dns.stdout!.on('data', collect('[challtestsrv]'));
  dns.stderr!.on('data', collect('[challtestsrv]'));
  const spawnPebble = (): ChildProcess => {
    const child = spawn('pebble', ['-config', configPath, '-dnsserver', `127.0.0.1:${dnsPort}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        PEBBLE_VA_NOSLEEP: '1',
        ...(options.nonceRejectPercent !== undefined ? { PEBBLE_WFE_NONCEREJECT: String(options.nonceRejectPercent) } : {}),
        ...(options.env ?? {}),
      },
    });
    child.stdout!.on('data', collect('[pebble]'));
    child.stderr!.on('data', collect('[pebble]'));
    return child;
  };
  let pebble = spawnPebble();

  const stop = async (): Promise<void> => {
    await Promise.all([stopChild(pebble), stopChild(dns)]);
  };
  const directoryUrl = `https://127.0.0.1:${acmePort}/dir`;
  const managementUrl = `https://127.0.0.1:${managementPort}`;
  const waitUntilUp = async (): Promise<void> => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (pebble.exitCode !== null || dns.exitCode !== null) {
        await stop();
        throw new Error(`${pebble.exitCode !== null ? 'pebble' : 'pebble-challtestsrv'} exited at start:\n${output}`);
      }
      try {
        const res = await fetchText(directoryUrl, tlsPair.certPem);
        if (res.status === 200 && await portOpen(challtestManagementPort)) return;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`pebble did not answer on ${directoryUrl} within 15 s:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await waitUntilUp();
  return {
    directoryUrl,
    managementUrl,
    caBundlePath: certPath,
    caBundlePem: tlsPair.certPem,
    tlsCertificatePath: certPath,
    tlsKeyPath: keyPath,
    challtestManagementUrl: `http://127.0.0.1:${challtestManagementPort}`,
    issuingRootPem: async () => {
      const res = await fetchText(`${managementUrl}/roots/0`, tlsPair.certPem);
      if (res.status !== 200) throw new Error(`pebble /roots/0 answered ${res.status}`);
      return res.body;
    },
    output: () => output,
    stop,
    restart: async () => {
      await stopChild(pebble);
      pebble = spawnPebble();
      await waitUntilUp();
    },
  };
}
