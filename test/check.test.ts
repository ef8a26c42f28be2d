// `fedtls check` against a complete local federation setup on loopback: a DNS server serving
// A, SRV and CNAME records, fedtls with a certificate from a real ACME CA (Pebble) serving the
// well-known file on its HTTPS listener and proxying to a stand-in homeserver, plus stand-in
// web servers and homeservers that get one thing wrong each. Ports 443 and 8448 are replaced
// by --well-known-port / --fallback-port (the test-only options).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startTestPebble, freePort, type PebbleFixture } from './helpers/pebble.js';
import { startBackend, type Backend } from './helpers/backend.js';
import { runCli, startDaemon, tempDir, writeConfig, boundPort, type RunningDaemon } from './helpers/daemon.js';
import { createAuthority, issueLeaf, type Authority, type LeafOptions } from './helpers/certs.js';
import { startDnsServer, type TestDnsServer } from './helpers/dns-server.js';
import { homeserverResponder, startHttpsSite, type Handler, type HttpsSite } from './helpers/homeserver.js';

const GOOD = 'good.fedtls.test';
const GOOD_DELEGATE = 'matrix.good.fedtls.test';

interface Finding { check: string; status: string; summary: string; fix?: string; target?: string }
interface JsonReport { server_name: string; ok: boolean; findings: Finding[] }

describe('fedtls check', () => {
  let pebble: PebbleFixture;
  let backend: Backend;
  let daemon: RunningDaemon;
  let dns: TestDnsServer;
  let authority: Authority;
  let caFile: string;
  let configFile: string;
  let closedPort: number;
  const sites: HttpsSite[] = [];

  /** Runs the CLI with --json (and, with `text`, once more for the readable report); returns exit code and reports. */
  async function check(args: string[], options: { text?: boolean } = {}): Promise<{ code: number | null; text: string; json: JsonReport }> {
    const common = ['--resolver', dns.address, '--ca', caFile, '--timeout', '20'];
    const jsonRun = runCli(['check', ...args, ...common, '--json']);
    const textRun = options.text ? runCli(['check', ...args, ...common]) : null;
    const [code, textCode] = await Promise.all([jsonRun.exited, textRun?.exited]);
    if (textRun) expect(textCode, textRun.stderr()).toBe(code);
    return { code, text: textRun ? textRun.stdout() + textRun.stderr() : '', json: JSON.parse(jsonRun.stdout()) as JsonReport };
  }
  const failures = (report: JsonReport): Finding[] => report.findings.filter((f) => f.status === 'fail');

  /** An HTTPS stand-in with an openssl certificate for `names`; its handler may depend on the port it got. */
  async function site(names: string[], handlerFor: (port: number) => Handler, leafOptions: Partial<LeafOptions> = {}, chain: 'full' | 'leaf' = 'full'): Promise<number> {
    const leaf = issueLeaf(authority, { names, ...leafOptions });
    let handler: Handler = () => undefined;
    const started = await startHttpsSite({ chainPem: chain === 'full' ? leaf.fullChainPem : leaf.certPem, keyPem: leaf.keyPem, handler: (req, res) => handler(req, res) });
    handler = handlerFor(started.port);
    sites.push(started);
    return started.port;
  }

  beforeAll(async () => {
    [pebble, backend, dns] = await Promise.all([startTestPebble(), startBackend(), startDnsServer()]);
    backend.respond = homeserverResponder(GOOD);
    authority = createAuthority('Check');
    closedPort = await freePort();
    const dir = tempDir();
    const federationPort = await freePort();
    configFile = writeConfig(dir, {
      server_name: GOOD,
      backend: backend.url,
      listen: { http: [`127.0.0.1:${pebble.httpPort}`], federation: [`127.0.0.1:${federationPort}`], https: [`127.0.0.1:${await freePort()}`] },
      state_dir: path.join(dir, 'state'),
      acme: { url: pebble.directoryUrl, ca_bundle: pebble.caBundlePath, domains: [GOOD, GOOD_DELEGATE] },
      well_known: { server: GOOD_DELEGATE },
    });
    daemon = await startDaemon(configFile);
    await daemon.waitForLog((l) => l.event === 'acme_certificate_issued', 40_000, 'certificate issued');
    caFile = path.join(dir, 'roots.pem');
    writeFileSync(caFile, (await pebble.issuingRootPem()) + authority.rootCert);
    dns.records.push(
      { name: GOOD, type: 'A', value: '127.0.0.1' },
      { name: GOOD_DELEGATE, type: 'A', value: '127.0.0.1' },
      { name: `_matrix-fed._tcp.${GOOD_DELEGATE}`, type: 'SRV', value: { priority: 10, weight: 5, port: boundPort(daemon, 'federation'), target: GOOD_DELEGATE } },
    );
  });

  afterAll(async () => {
    await daemon?.stop();
    await Promise.all(sites.map((s) => s.close()));
    await backend?.close();
    await dns?.close();
    await pebble?.stop();
  });

  it('a healthy setup: well-known → SRV → fedtls with a Pebble certificate → homeserver; exit 0', async () => {
    const { code, text, json } = await check([GOOD, '--well-known-port', String(boundPort(daemon, 'https'))], { text: true });
    // eslint-disable-next-line no-console
    console.log(`fedtls check report, healthy setup:\n${text}`);
    expect(code, text).toBe(0);
    expect(json.ok).toBe(true);
    expect(failures(json)).toEqual([]);
    expect(text).toContain(`delegates to "${GOOD_DELEGATE}"`);
    expect(text).toMatch(/cache: Cache-Control: public, max-age=3600: peers keep it for 60 min/);
    expect(text).toContain(`_matrix-fed._tcp.${GOOD_DELEGATE} → ${GOOD_DELEGATE}:${boundPort(daemon, 'federation')}`);
    const byCheck = Object.fromEntries(json.findings.filter((f) => f.target).map((f) => [f.check, f]));
    expect(byCheck.tls?.status).toBe('ok');
    expect(byCheck.tls?.summary).toMatch(/^TLSv1\.[23], chain verified/);
    expect(byCheck.certificate?.summary).toMatch(new RegExp(`valid for ${GOOD_DELEGATE} .*days left`));
    expect(byCheck.version?.summary).toBe('StandIn 1.0.0');
    expect(byCheck.keys?.summary).toMatch(new RegExp(`server_name ${GOOD}, key ed25519:standin, signature valid`));
    expect(byCheck.tls?.target).toContain(`SNI ${GOOD_DELEGATE}, Host: ${GOOD_DELEGATE}`);
  });

  it('without a name, checks the configured server_name, and says when peers do not see the configured delegation', async () => {
    const { code, json } = await check(['--config', configFile, '--well-known-port', String(boundPort(daemon, 'https'))]);
    expect(code).toBe(0);
    expect(json.server_name).toBe(GOOD);
    expect(json.findings.filter((f) => f.status === 'warn')).toEqual([]);
    // Port "443" of the server name is not fedtls (here: nothing listens): the configured file is never seen.
    const unseen = await check(['--config', configFile, '--well-known-port', String(closedPort), '--fallback-port', String(closedPort)]);
    const warning = unseen.json.findings.find((f) => f.check === 'well_known' && f.status === 'warn')!;
    expect(warning.summary).toBe(`fedtls is configured to serve {"m.server": "${GOOD_DELEGATE}"} (well_known.server), but peers see no delegation at https://${GOOD}/`);
    expect(warning.fix).toMatch(/listen\.https/);
  });

  it('a well-known with a scheme in m.server fails with the value to write instead', async () => {
    const name = 'scheme.fedtls.test';
    dns.records.push({ name, type: 'A', value: '127.0.0.1' });
    const port = await site([name], () => (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ 'm.server': `https://${GOOD_DELEGATE}` }));
    });
    const { code, text, json } = await check([name, '--well-known-port', String(port), '--fallback-port', String(closedPort)], { text: true });
    // eslint-disable-next-line no-console
    console.log(`fedtls check report, broken setup:\n${text}`);
    expect(code).toBe(1);
    const wellKnown = json.findings.find((f) => f.check === 'well_known')!;
    expect(wellKnown.status).toBe('fail');
    expect(wellKnown.summary).toContain(`"https://${GOOD_DELEGATE}" has a scheme (https://)`);
    expect(wellKnown.fix).toBe(`serve {"m.server": "${GOOD_DELEGATE}"} (no https://, no path)`);
    // Peers then fall back to the server name on the fallback port: nothing there.
    expect(json.findings.some((f) => f.check === 'tls' && f.status === 'fail' && /cannot connect/.test(f.summary))).toBe(true);
  });

  it('a redirect loop on the well-known is detected and named', async () => {
    const name = 'loop.fedtls.test';
    dns.records.push({ name, type: 'A', value: '127.0.0.1' });
    const port = await site([name], () => (req, res) => {
      const next = req.url === '/.well-known/matrix/server' ? '/.well-known/matrix/server.json' : '/.well-known/matrix/server';
      res.writeHead(301, { Location: next });
      res.end();
    });
    const { code, json } = await check([name, '--well-known-port', String(port), '--fallback-port', String(closedPort)]);
    expect(code).toBe(1);
    const wellKnown = json.findings.find((f) => f.check === 'well_known')!;
    expect(wellKnown.status).toBe('fail');
    expect(wellKnown.summary).toBe(`redirect loop: https://${name}:${port}/.well-known/matrix/server → https://${name}:${port}/.well-known/matrix/server.json → https://${name}:${port}/.well-known/matrix/server`);
    expect(wellKnown.fix).toMatch(/no redirect/);
  });

  it('a certificate for the wrong name fails at the certificate step, with the names it has', async () => {
    const name = 'wrong.fedtls.test';
    dns.records.push({ name, type: 'A', value: '127.0.0.1' });
    const port = await site(['other.fedtls.test'], (p) => homeserverResponder(`${name}:${p}`));
    const { code, json } = await check([`${name}:${port}`]);
    expect(code).toBe(1);
    expect(failures(json).map((f) => f.check)).toEqual(['certificate']);
    const certificate = failures(json).find((f) => f.check === 'certificate')!;
    expect(certificate.summary).toBe(`not valid for ${name}: the certificate is for other.fedtls.test`);
    expect(certificate.fix).toContain(`add it to acme.domains`);
    // The homeserver behind it is fine, and the report still says so.
    expect(json.findings.find((f) => f.check === 'keys')?.status).toBe('ok');
  });

  it('an expired certificate fails with when it expired and how to renew', async () => {
    const name = 'expired.fedtls.test';
    dns.records.push({ name, type: 'A', value: '127.0.0.1' });
    const port = await site([name], (p) => homeserverResponder(`${name}:${p}`), { startOffsetDays: -100, days: 90 });
    const { code, json } = await check([`${name}:${port}`]);
    expect(code).toBe(1);
    expect(failures(json).map((f) => f.check)).toEqual(['certificate']);
    const certificate = failures(json)[0]!;
    expect(certificate.summary).toMatch(/^expired 10 d ago \(valid \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d\)$/);
    expect(certificate.fix).toMatch(/renew the certificate/);
  });

  it('a leaf served without its intermediate fails the chain check and points at fullchain.pem', async () => {
    const name = 'nochain.fedtls.test';
    dns.records.push({ name, type: 'A', value: '127.0.0.1' });
    const port = await site([name], (p) => homeserverResponder(`${name}:${p}`), {}, 'leaf');
    const { code, json } = await check([`${name}:${port}`]);
    expect(code).toBe(1);
    expect(failures(json).map((f) => f.check)).toEqual(['tls']);
    expect(failures(json)[0]!.summary).toContain('without the intermediate certificate');
    expect(failures(json)[0]!.fix).toContain('fullchain.pem');
  });

  it('an SRV record pointing at a CNAME is flagged, and federation still works through it', async () => {
    const name = 'alias.fedtls.test';
    const port = await site([name], () => homeserverResponder(name));
    dns.records.push(
      { name: `_matrix-fed._tcp.${name}`, type: 'SRV', value: { priority: 0, weight: 0, port, target: `hs.${name}` } },
      { name: `hs.${name}`, type: 'CNAME', value: `box.${name}` },
      { name: `box.${name}`, type: 'A', value: '127.0.0.1' },
    );
    const { code, text, json } = await check([name, '--well-known-port', String(closedPort)], { text: true });
    expect(code, text).toBe(0);
    const flagged = json.findings.find((f) => f.check === 'srv' && f.status === 'warn')!;
    expect(flagged.summary).toBe(`the SRV target hs.${name} is a CNAME (→ box.${name})`);
    expect(flagged.fix).toBe(`point _matrix-fed._tcp.${name} at box.${name} directly, or give hs.${name} its own A/AAAA records`);
    expect(text).toMatch(/Result: federation with alias\.fedtls\.test would work \(1 warning\)\./);
  });

  it('the deprecated _matrix._tcp SRV record still works, with a warning to publish _matrix-fed._tcp', async () => {
    const name = 'legacy.fedtls.test';
    const port = await site([name], () => homeserverResponder(name));
    dns.records.push(
      { name: `_matrix._tcp.${name}`, type: 'SRV', value: { priority: 0, weight: 0, port, target: `box.${name}` } },
      { name: `box.${name}`, type: 'A', value: '127.0.0.1' },
    );
    const { code, json } = await check([name, '--well-known-port', String(closedPort)]);
    expect(code).toBe(0);
    const srv = json.findings.filter((f) => f.check === 'srv');
    expect(srv.map((f) => f.status)).toEqual(['info', 'warn']);
    expect(srv[1]!.fix).toBe(`publish the same record as _matrix-fed._tcp.${name}`);
    expect(json.findings.find((f) => f.check === 'certificate')?.summary).toMatch(new RegExp(`^valid for ${name} `));
  });

  it('an IP literal server name: no well-known, no SRV, no SNI, and the certificate must hold the IP address', async () => {
    const port = await site(['127.0.0.1'], (p) => homeserverResponder(`127.0.0.1:${p}`));
    const { code, json } = await check([`127.0.0.1:${port}`]);
    expect(code).toBe(0);
    expect(json.findings.some((f) => f.check === 'well_known' || f.check === 'srv')).toBe(false);
    const certificate = json.findings.find((f) => f.check === 'certificate')!;
    expect(certificate.summary).toMatch(/^valid for 127\.0\.0\.1 /);
    expect(certificate.target).toContain(`SNI none, Host: 127.0.0.1:${port}`);
  });

  it('a delegation file behind a certificate peers refuse is named as such', async () => {
    const name = 'badtls.fedtls.test';
    dns.records.push({ name, type: 'A', value: '127.0.0.1' });
    const port = await site([name], () => (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ 'm.server': `${GOOD_DELEGATE}:443` }));
    }, { startOffsetDays: -100, days: 90 });
    const { code, json } = await check([name, '--well-known-port', String(port), '--fallback-port', String(closedPort)]);
    expect(code).toBe(1);
    const wellKnown = json.findings.find((f) => f.check === 'well_known')!;
    expect(wellKnown.status).toBe('fail');
    expect(wellKnown.summary).toBe(`the delegation file at https://${name}:${port}/.well-known/matrix/server is there, but peers cannot read it: the certificate has expired`);
  });

  it('the homeserver behind fedtls is down: the version step fails and names the backend setting', async () => {
    await backend.close();
    const { code, text, json } = await check([GOOD, '--well-known-port', String(boundPort(daemon, 'https'))], { text: true });
    // eslint-disable-next-line no-console
    console.log(`fedtls check report, homeserver down behind fedtls:\n${text}`);
    expect(code).toBe(1);
    expect(failures(json).map((f) => f.check)).toEqual(['version', 'keys']);
    const version = failures(json)[0]!;
    expect(version.summary).toMatch(/answered 502: M_UNKNOWN The homeserver is unreachable: the proxy on this port cannot get an answer from the homeserver/);
    expect(version.fix).toContain('`backend`');
  });

});

// Usage errors need no federation setup: they are refused before anything is looked up.
describe('fedtls check: usage errors', () => {
  it('bad options are refused with what to write instead (exit 2)', async () => {
    for (const [args, message] of [
      [['x.test', '--resolver', 'dns.example'], /--resolver "dns.example" is not IP:PORT/],
      [['x.test', '--fallback-port', '99999'], /--fallback-port "99999" is not a port number/],
      [['x.test', '--ca', '/nonexistent/roots.pem'], /--ca \/nonexistent\/roots.pem: cannot read it \(ENOENT\)/],
      [['--config', '/nonexistent/fedtls.yaml'], /no SERVER_NAME given/],
    ] as const) {
      const run = runCli(['check', ...args]);
      expect(await run.exited).toBe(2);
      expect(run.stderr()).toMatch(message);
    }
  });

  it('a server name that is a URL or a Matrix ID is a usage error (exit 2) that gives the name to pass instead', async () => {
    const runs = await Promise.all(([
      ['https://x', /^fedtls check: "https:\/\/x" is not a server name .*; give "x": fedtls check x\n$/],
      ['https://Matrix.Example.org:8448/_matrix/federation/v1/version', /give "matrix\.example\.org:8448": fedtls check matrix\.example\.org:8448/],
      ['https://[2001:db8::1]:8448/', /give "\[2001:db8::1\]:8448"/],
      ['@alice:example.org', /give "example\.org": fedtls check example\.org/],
      ['#room:example.org:8448', /give "example\.org:8448"/],
      ['example.org/', /give "example\.org"/],
      ['exa mple.org', /"exa mple\.org" is not a server name .*e\.g\. fedtls check example\.org/],
      ['example.org:99999', /"example\.org:99999" is not a server name/],
    ] as const).map(async ([name, message]) => {
      const run = runCli(['check', name, '--timeout', '1']);
      return { name, message, code: await run.exited, stderr: run.stderr(), stdout: run.stdout() };
    }));
    for (const { name, message, code, stderr, stdout } of runs) {
      expect(code, name).toBe(2);
      expect(stderr, name).toMatch(message);
      expect(stdout, name).toBe(''); // refused before any check ran
    }
  });
});
