// `fedtls demo`: the whole job on one machine with no public domain. Starts Pebble (a real
// ACME CA) and its DNS helper on loopback, a small stand-in homeserver, and fedtls on
// unprivileged ports; obtains a certificate over HTTP-01; sends a federation request through
// fedtls with a client that trusts only Pebble's root; says what happens at each step.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../config/load.js';
import { createLogger } from '../ops/log.js';
import { Daemon } from '../daemon.js';
import { freePort } from '../demo/ports.js';
import { startPebble, PebbleMissingError, type PebbleInstance } from '../demo/pebble.js';

const DEMO_NAME = 'matrix.fedtls.test';

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

function startStandInHomeserver(): Promise<{ server: http.Server; url: string; seen: string[] }> {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const body = JSON.stringify(req.url === '/_matrix/federation/v1/version'
      ? { server: { name: 'fedtls-demo-homeserver', version: '0.0.1' } }
      : { errcode: 'M_UNRECOGNIZED', error: 'stand-in homeserver knows only /_matrix/federation/v1/version' });
    res.writeHead(req.url === '/_matrix/federation/v1/version' ? 200 : 404, { 'Content-Type': 'application/json' });
    res.end(body);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      resolve({ server, url: `http://127.0.0.1:${port}`, seen });
    });
  });
}

function federationRequest(port: number, ca: string, requestPath: string): Promise<{ status: number; body: string; serial: string; issuer: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, servername: DEMO_NAME, path: requestPath, ca, headers: { Host: DEMO_NAME }, agent: false }, (res) => {
      const peer = (res.socket as import('node:tls').TLSSocket).getPeerCertificate();
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, serial: peer.serialNumber, issuer: String(peer.issuer?.CN ?? '') }));
    });
    req.on('error', reject);
    req.end();
  });
}

export async function demoCommand(options: { keep: boolean }): Promise<number> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'fedtls-demo-'));
  let pebble: PebbleInstance | null = null;
  let daemon: Daemon | null = null;
  let homeserver: http.Server | null = null;
  try {
    const [httpPort, federationPort] = [await freePort(), await freePort()];
    say('1. Starting Pebble, a local test ACME CA (what Let\'s Encrypt runs in its own tests)…');
    pebble = await startPebble({ workDir, httpPort });
    say(`   Pebble is at ${pebble.directoryUrl}; it will validate names on http://<name>:${httpPort}/ and resolve every name to 127.0.0.1.`);

    say('2. Starting a stand-in homeserver (plays Synapse on 127.0.0.1)…');
    const standIn = await startStandInHomeserver();
    homeserver = standIn.server;
    say(`   It listens on ${standIn.url}.`);

    const configPath = path.join(workDir, 'fedtls.yaml');
    const configText = [
      `server_name: ${DEMO_NAME}`,
      `backend: ${standIn.url}`,
      'listen:',
      `  http: ["127.0.0.1:${httpPort}"]`,
      `  federation: ["127.0.0.1:${federationPort}"]`,
      `state_dir: ${path.join(workDir, 'state')}`,
      'acme:',
      `  url: ${pebble.directoryUrl}`,
      `  ca_bundle: ${pebble.caBundlePath}`,
      'log:',
      '  level: warn',
      '  format: pretty',
      '',
    ].join('\n');
    writeFileSync(configPath, configText);
    say(`3. Starting fedtls with this config (${configPath}):`);
    say(configText.trimEnd().split('\n').map((l) => `     ${l}`).join('\n'));
    // Read back from the file like `fedtls run` does: TLS worker processes start from that text.
    const config = loadConfig(configPath);
    daemon = new Daemon(config, createLogger(config.log));
    await daemon.start();
    say(`   fedtls answers ACME challenges on 127.0.0.1:${httpPort} and serves federation TLS on 127.0.0.1:${federationPort}.`);

    say(`4. fedtls has no certificate yet, so it orders one for ${DEMO_NAME}; waiting for Pebble to validate and issue…`);
    const started = Date.now();
    while (!daemon.store.defaultPair()) {
      if (Date.now() - started > 60_000) throw new Error(`no certificate after 60 s; last ACME error: ${daemon.acme?.getStatus().lastError?.message ?? 'none'}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const leaf = daemon.store.defaultPair()!.leaf;
    say(`   Issued in ${((Date.now() - started) / 1000).toFixed(1)} s: serial ${leaf.serial}, for ${leaf.names.join(', ')}, valid until ${leaf.notAfter.toISOString()}.`);

    say('5. A "remote homeserver" that trusts only Pebble\'s root now calls GET /_matrix/federation/v1/version over TLS…');
    const root = await pebble.issuingRootPem();
    const answer = await federationRequest(federationPort, root, '/_matrix/federation/v1/version');
    say(`   TLS verified (issuer "${answer.issuer}", serial ${answer.serial}); the answer came back through fedtls: HTTP ${answer.status} ${answer.body}`);
    say(`   The stand-in homeserver saw: ${standIn.seen.join(', ')}`);
    if (answer.status !== 200) throw new Error('the request through fedtls did not succeed');

    if (options.keep) {
      say(`\nDemo is running. Try: curl --cacert <(curl -sk ${pebble.managementUrl}/roots/0) --resolve ${DEMO_NAME}:${federationPort}:127.0.0.1 https://${DEMO_NAME}:${federationPort}/_matrix/federation/v1/version`);
      say('Press Ctrl-C to stop.');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
    }
    say('\nDemo finished: fedtls obtained a certificate from a real ACME CA and proxied a federation request with it.');
    return 0;
  } catch (error) {
    if (error instanceof PebbleMissingError) {
      process.stderr.write(`${error.message}\n`);
      return 1;
    }
    process.stderr.write(`demo failed: ${(error as Error).message}\n`);
    if (pebble) process.stderr.write(`--- pebble output ---\n${pebble.output().slice(-4000)}\n`);
    return 1;
  } finally {
    await daemon?.stop().catch(() => undefined);
    homeserver?.close();
    await pebble?.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
}
