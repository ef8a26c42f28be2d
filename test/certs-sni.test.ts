// Several names on one listener (T6): the default pair for handshakes without SNI or with an
// unknown name or an IP literal; its own pair for server_name, for a delegated name, and for
// names under a wildcard. One broken source at start does not stop the others. Also
// `fedtls certificates`, answered live by the daemon, and from the files once it is gone.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes, X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createAuthority, issueLeaf, type Authority, type Leaf } from './helpers/certs.js';
import { replaceFile, serialOf, servedChain, startCertDaemon, type CertDaemon } from './helpers/cert-daemon.js';
import { runCli } from './helpers/daemon.js';
import { handshake } from './helpers/tls-client.js';

const SERVER_NAME = 'sni.fedtls.test';
const DELEGATED = 'matrix.sni-delegated.test';
const WILDCARD = '*.wild.fedtls.test';
const BROKEN = 'broken.sni.fedtls.test';

/**
 * A TLS 1.3 ClientHello (x25519, TLS_AES_128_GCM_SHA256) offering `tickets` pre_shared_key
 * identities of 32 random bytes each, with a binder each (one in all past 64 tickets, so the
 * extension stays within its 64 KB); SNI `servername` if given; without a key share (which
 * makes the server ask again: HelloRetryRequest) when `keyShare` is false; `padCipherSuites`
 * unknown cipher suites more.
 */
function clientHelloOffering(tickets: number, options: { servername?: string; keyShare?: boolean; random?: Buffer; sessionId?: Buffer; padCipherSuites?: number } = {}): Buffer {
  const { servername, keyShare = true, random = randomBytes(32), sessionId = Buffer.alloc(0), padCipherSuites = 0 } = options;
  const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
  const vector16 = (...parts: Buffer[]): Buffer => { const body = Buffer.concat(parts); return Buffer.concat([u16(body.length), body]); };
  const extension = (type: number, ...body: Buffer[]): Buffer => Buffer.concat([u16(type), vector16(...body)]);
  const identities = Array.from({ length: tickets }, () => Buffer.concat([vector16(randomBytes(32)), Buffer.alloc(4)]));
  const binders = Array.from({ length: tickets > 64 ? 1 : tickets }, () => Buffer.concat([Buffer.from([32]), randomBytes(32)]));
  const extensions = Buffer.concat([
    ...(servername ? [extension(0x0000, vector16(Buffer.from([0]), vector16(Buffer.from(servername))))] : []),
    extension(0x000a, vector16(u16(0x001d))), // supported_groups: x25519
    extension(0x000d, vector16(u16(0x0403), u16(0x0804), u16(0x0401))), // signature_algorithms
    extension(0x002b, Buffer.from([2, 0x03, 0x04])), // supported_versions: TLS 1.3
    extension(0x0033, keyShare ? vector16(u16(0x001d), vector16(randomBytes(32))) : vector16()), // key_share
    extension(0x002d, Buffer.from([1, 1])), // psk_key_exchange_modes: psk_dhe_ke
    ...(tickets > 0 ? [extension(0x0029, vector16(...identities), vector16(...binders))] : []), // pre_shared_key (last)
  ]);
  const body = Buffer.concat([u16(0x0303), random, Buffer.from([sessionId.length]), sessionId, vector16(u16(0x1301), Buffer.alloc(padCipherSuites * 2, 0xfe)), Buffer.from([1, 0]), vector16(extensions)]);
  const handshake = Buffer.concat([Buffer.from([1, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
  const records: Buffer[] = [];
  for (let at = 0; at < handshake.length; at += 16384) {
    const fragment = handshake.subarray(at, at + 16384);
    records.push(Buffer.from([0x16, 0x03, 0x01]), u16(fragment.length), fragment);
  }
  return Buffer.concat(records);
}

interface ReportRow { name: string; source: string; status: string; serial: string | null; issuer: string | null; not_after: string | null; days_left: number | null; certificate_path: string; private_key_path: string; problem: { file: string; reason: string } | null; covered: boolean }

describe('T6: SNI picks the certificate; the default serves the rest', () => {
  let authority: Authority;
  let running: CertDaemon;
  let main: Leaf;
  let delegated: Leaf;
  let wildcard: Leaf;
  let mainCert: string;
  const files: Record<string, string> = {};

  const bySni = async (servername?: string): Promise<string> => serialOf((await handshake({ port: running.port, ...(servername !== undefined ? { servername } : {}) })).serial);
  const certificates = async (json = true): Promise<{ code: number | null; out: string; err: string }> => {
    const cli = runCli(['certificates', '--config', running.configFile, ...(json ? ['--json'] : [])]);
    const code = await cli.exited;
    return { code, out: cli.stdout(), err: cli.stderr() };
  };

  beforeAll(async () => {
    authority = createAuthority();
    main = issueLeaf(authority, { names: [SERVER_NAME] });
    delegated = issueLeaf(authority, { names: [DELEGATED], keyType: 'rsa' });
    wildcard = issueLeaf(authority, { names: [WILDCARD] });
    running = await startCertDaemon({
      serverName: SERVER_NAME, sources: 4, workers: 1, // the single-process path (the other certificate tests run two workers)
      config: (dir) => {
        const write = (name: string, leaf: Leaf | null): { certificate_path: string; private_key_path: string } => {
          files[`${name}.crt`] = path.join(dir, `${name}.crt`);
          files[`${name}.key`] = path.join(dir, `${name}.key`);
          writeFileSync(files[`${name}.crt`]!, leaf ? leaf.fullChainPem : '-----BEGIN CERTIFICATE-----\nMIIB\n');
          writeFileSync(files[`${name}.key`]!, leaf ? leaf.keyPem : '', { mode: 0o600 });
          return { certificate_path: files[`${name}.crt`]!, private_key_path: files[`${name}.key`]! };
        };
        const flat = write('main', main);
        mainCert = flat.certificate_path;
        return {
          tls_certificate_path: flat.certificate_path, tls_private_key_path: flat.private_key_path,
          tls: {
            certificates: [
              { ...write('delegated', delegated), names: [DELEGATED] },
              { ...write('wildcard', wildcard), names: [WILDCARD] },
              { ...write('broken', null), names: [BROKEN] },
            ],
          },
        };
      },
    });
  });

  afterAll(async () => {
    await running?.close();
  });

  it('T6: one broken source at start is refused in its own line; the others serve', () => {
    const refused = running.daemon.logs.filter((l) => l.event === 'certificate_refused');
    expect(refused).toHaveLength(1);
    expect(refused[0]!.file).toBe(files['broken.crt']);
    expect(String(refused[0]!.msg)).toMatch(/truncated.*no certificate from this source is served/);
    expect(running.daemon.logs.filter((l) => l.event === 'certificate_added')).toHaveLength(3);
  });

  it('T6: no SNI, an IP literal, and an unknown name get the default (server_name) certificate', async () => {
    expect(await bySni()).toBe(serialOf(main.serial));
    expect(await bySni('unknown.example.net')).toBe(serialOf(main.serial));
    expect(await bySni(BROKEN)).toBe(serialOf(main.serial)); // its own pair did not load
    // openssl sends the IP literal as SNI exactly as given (Node's client would not).
    for (const ip of ['127.0.0.1', '::1']) {
      const wire = await servedChain({ port: running.port, servername: ip });
      expect(serialOf(new X509Certificate(wire.pems[0]!).serialNumber)).toBe(serialOf(main.serial));
    }
    const noSni = await servedChain({ port: running.port });
    expect(serialOf(new X509Certificate(noSni.pems[0]!).serialNumber)).toBe(serialOf(main.serial));
  });

  it('T6: server_name, the delegated name (its own RSA certificate) and names under the wildcard get their own', async () => {
    expect(await bySni(SERVER_NAME)).toBe(serialOf(main.serial));
    expect(await bySni(DELEGATED)).toBe(serialOf(delegated.serial));
    expect(await bySni(DELEGATED.toUpperCase())).toBe(serialOf(delegated.serial));
    expect(await bySni(`${DELEGATED}.`)).toBe(serialOf(delegated.serial));
    expect(await bySni('a.wild.fedtls.test')).toBe(serialOf(wildcard.serial));
    expect(await bySni('b.a.wild.fedtls.test')).toBe(serialOf(main.serial)); // a wildcard covers one label only
    for (const [name, leaf] of [[SERVER_NAME, main], [DELEGATED, delegated]] as const) {
      const peer = await handshake({ port: running.port, servername: name, ca: authority.rootCert });
      expect(peer.authorized).toBe(true);
      expect(serialOf(peer.serial)).toBe(serialOf(leaf.serial));
    }
  });

  it('T6: a ClientHello that arrives in pieces still gets the certificate for its name (and none without SNI)', async () => {
    const inPieces = (servername: string | undefined): Promise<string> => new Promise((resolve, reject) => {
      const raw = net.connect(running.port, '127.0.0.1');
      let first = true;
      // A stream between the TLS client and the TCP socket that splits the ClientHello in three.
      const splitter = new Duplex({
        read() {},
        write(chunk: Buffer, _encoding, callback) {
          if (!first) return raw.write(chunk, () => callback());
          first = false;
          raw.write(chunk.subarray(0, 3));
          setTimeout(() => raw.write(chunk.subarray(3, 120)), 30);
          setTimeout(() => raw.write(chunk.subarray(120), () => callback()), 60);
        },
        final(callback) { raw.end(); callback(); },
        destroy(error, callback) { raw.destroy(); callback(error); },
      });
      raw.on('data', (data: Buffer) => splitter.push(data));
      raw.on('end', () => splitter.push(null));
      raw.on('error', reject);
      const socket = tls.connect({ socket: splitter, ...(servername ? { servername } : {}), rejectUnauthorized: false }, () => {
        if (first) reject(new Error('the ClientHello did not go through the splitting stream'));
        resolve(serialOf(socket.getPeerCertificate().serialNumber));
        socket.end();
      });
      socket.on('error', reject);
    });
    expect(await inPieces(DELEGATED)).toBe(serialOf(delegated.serial));
    expect(await inPieces(undefined)).toBe(serialOf(main.serial));
  });

  it('a connection that never sends a ClientHello, or sends plain HTTP, does not disturb the listener', async () => {
    const plain = await new Promise<string>((resolve) => {
      const socket = net.connect(running.port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      let got = '';
      socket.on('data', (d: Buffer) => { got += d.toString('latin1'); });
      socket.on('close', () => resolve(got));
      socket.on('error', () => undefined);
    });
    expect(plain).not.toContain('200 OK');
    const silent = net.connect(running.port, '127.0.0.1');
    silent.on('error', () => undefined);
    expect(await bySni(DELEGATED)).toBe(serialOf(delegated.serial));
    silent.destroy();
  });

  it('a ClientHello offering more session tickets than any client does ends the handshake, also after a HelloRetryRequest and past 64 KB; up to 8 unknown tickets get a full handshake', async () => {
    // The first 7 bytes the server sends back for hand-made TLS 1.3 ClientHellos, as hex. Each
    // hello is a list of pieces written 30 ms apart; the second hello goes out in answer to a
    // HelloRetryRequest.
    const HELLO_RETRY_RANDOM = 'cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c';
    const answerTo = (...hellos: Buffer[][]): Promise<string> => new Promise((resolve, reject) => {
      const writeInPieces = (pieces: Buffer[]): void => {
        pieces.forEach((piece, index) => setTimeout(() => { if (!socket.destroyed) socket.write(piece); }, index * 30));
      };
      const socket = net.connect(running.port, '127.0.0.1', () => writeInPieces(hellos.shift()!));
      let got = Buffer.alloc(0);
      socket.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        if (hellos.length > 0 && got.length >= 43 && got.subarray(11, 43).toString('hex') === HELLO_RETRY_RANDOM) {
          got = Buffer.alloc(0);
          writeInPieces(hellos.shift()!);
        }
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(got.subarray(0, 7).toString('hex')));
      setTimeout(() => { socket.destroy(); reject(new Error('no answer and no close in 5 s')); }, 5000).unref();
      setTimeout(() => socket.end(), 800).unref();
    });
    const serverHello = /^160303[0-9a-f]{4}02/;
    const internalErrorAlert = '15030300020250';
    expect(await answerTo([clientHelloOffering(1)])).toMatch(serverHello);
    expect(await answerTo([clientHelloOffering(8, { servername: SERVER_NAME })])).toMatch(serverHello);
    expect(await answerTo([clientHelloOffering(9)])).toBe(internalErrorAlert);
    expect(await answerTo([clientHelloOffering(500, { servername: SERVER_NAME })])).toBe(internalErrorAlert);
    // A first hello without a key share gets a HelloRetryRequest; the second one carries the
    // tickets and reaches the TLS layer straight from the socket.
    const first = { keyShare: false, random: randomBytes(32), sessionId: randomBytes(32) };
    expect(await answerTo([clientHelloOffering(0, first)], [clientHelloOffering(1, { ...first, keyShare: true })])).toMatch(serverHello);
    expect(await answerTo([clientHelloOffering(0, first)], [clientHelloOffering(1500, { ...first, keyShare: true })])).toBe(internalErrorAlert);
    // Past 64 KB the listener no longer reads the hello for its name; in one piece or in two.
    const huge = clientHelloOffering(1650, { padCipherSuites: 3000 });
    expect(huge.length).toBeGreaterThan(64 * 1024);
    expect(await answerTo([huge])).toBe(internalErrorAlert);
    expect(await answerTo([huge.subarray(0, 65_600), huge.subarray(65_600)])).toBe(internalErrorAlert);
    expect(await bySni(SERVER_NAME)).toBe(serialOf(main.serial));
  });

  it('T6: after a swap of the delegated pair, the first handshake for it gets the new one and the others are kept', async () => {
    const next = issueLeaf(authority, { names: [DELEGATED] });
    replaceFile(files['delegated.crt']!, next.fullChainPem);
    replaceFile(files['delegated.key']!, next.keyPem);
    const outcomes = await running.reload();
    expect(outcomes.map((l) => l.event).sort()).toEqual(['certificate_kept', 'certificate_kept', 'certificate_refused', 'certificate_replaced']);
    expect(await bySni(DELEGATED)).toBe(serialOf(next.serial));
    expect(await bySni()).toBe(serialOf(main.serial));
    delegated = next;
  });

  it('fedtls certificates --json: each name with source, serial, issuer, not-after, days left and files, from the live daemon', async () => {
    const { code, out } = await certificates();
    expect(code).toBe(1); // one source is refused
    const report = JSON.parse(out) as { origin: string; certificates: ReportRow[] };
    expect(report.origin).toBe('daemon');
    const row = (name: string): ReportRow => report.certificates.find((r) => r.name === name)!;
    expect(row(DELEGATED)).toMatchObject({ source: 'file', status: 'serving', covered: true, certificate_path: files['delegated.crt'], private_key_path: files['delegated.key'] });
    expect(serialOf(row(DELEGATED).serial!)).toBe(serialOf(delegated.serial));
    expect(row(DELEGATED).issuer).toMatch(/Test Intermediate CA/);
    expect(row(DELEGATED).days_left).toBeGreaterThanOrEqual(87);
    expect(row(DELEGATED).days_left).toBeLessThanOrEqual(89);
    expect(serialOf(row(SERVER_NAME).serial!)).toBe(serialOf(main.serial));
    expect(row(WILDCARD).status).toBe('serving');
    expect(row(BROKEN)).toMatchObject({ status: 'refused', serial: null });
    expect(row(BROKEN).problem?.reason).toMatch(/truncated/);
  });

  it('fedtls certificates (table) reports what the daemon serves, not what is on disk since its last reload', async () => {
    const unloaded = issueLeaf(authority, { names: [SERVER_NAME] });
    replaceFile(mainCert, unloaded.fullChainPem);
    replaceFile(files['main.key']!, unloaded.keyPem);
    const { out } = await certificates(false);
    const lines = out.split('\n');
    expect(lines[0]).toMatch(/^NAME\s+SOURCE\s+STATUS\s+SERIAL\s+ISSUER\s+NOT AFTER\s+DAYS LEFT\s+FILES$/);
    const mainLine = lines.find((l) => l.startsWith(`${SERVER_NAME} `))!;
    expect(mainLine).toMatch(new RegExp(`^${SERVER_NAME}\\s+file\\s+serving\\s+0*${serialOf(main.serial)}\\s+Test Intermediate CA\\s+\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ\\s+8\\d\\s+${mainCert}`));
    expect(out).toMatch(new RegExp(`problem \\(file:3:.*${files['broken.crt']}: the file is truncated`));
    expect(out).toContain('As served by the running daemon.');
    const [outcome] = (await running.reload()).filter((l) => l.certificate === mainCert);
    expect(outcome!.event).toBe('certificate_replaced');
    main = unloaded;
  });

  it('fedtls certificates without a running daemon reads the configured files and says so', async () => {
    await running.daemon.stop();
    const { code, out, err } = await certificates();
    expect(code).toBe(1);
    expect(err).toMatch(/is fedtls running\?.*\nReading the configured files instead/);
    const report = JSON.parse(out) as { origin: string; certificates: ReportRow[] };
    expect(report.origin).toBe('files');
    expect(serialOf(report.certificates.find((r) => r.name === SERVER_NAME)!.serial!)).toBe(serialOf(main.serial));
    expect(report.certificates.find((r) => r.name === BROKEN)!.status).toBe('refused');
  });
});
