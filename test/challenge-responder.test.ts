// The port-80 challenge responder, with byte-exact requests over real sockets: exactly the
// known token gets its key authorization, everything else 404, never a file, never a redirect.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { ChallengeTable } from '../src/acme/challenges.js';
import { createChallengeHandler } from '../src/http/challenge-listener.js';
import { captureLog } from './helpers/acme-harness.js';

const TOKEN = 'evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA';
const KEY_AUTHORIZATION = `${TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI`;

interface Answer { status: number; headers: Record<string, string>; body: string }

function rawRequest(port: number, request: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(request));
    let data = '';
    socket.on('data', (c: Buffer) => { data += c.toString('latin1'); });
    socket.on('error', reject);
    socket.on('close', () => {
      const [head = '', ...rest] = data.split('\r\n\r\n');
      const [statusLine = '', ...lines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) headers[line.slice(0, line.indexOf(':')).toLowerCase()] = line.slice(line.indexOf(':') + 1).trim();
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n') });
    });
  });
}

const get = (port: number, target: string, host = 'hs.fedtls.test'): Promise<Answer> =>
  rawRequest(port, `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);

async function listen(redirectToHttps: boolean, challenges: ChallengeTable, log = captureLog().log): Promise<http.Server> {
  const server = http.createServer(createChallengeHandler({ challenges, redirectToHttps, redirectHosts: new Set(['hs.fedtls.test']), log }));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

describe('challenge responder', () => {
  const challenges = new ChallengeTable();
  let plain: http.Server;
  let redirecting: http.Server;
  const port = (server: http.Server): number => (server.address() as AddressInfo).port;

  beforeAll(async () => {
    challenges.add(TOKEN, KEY_AUTHORIZATION, 'hs.fedtls.test');
    plain = await listen(false, challenges);
    redirecting = await listen(true, challenges);
  });
  afterAll(() => {
    plain.close();
    redirecting.close();
  });

  it('A1: the exact path (also with Host: name:80) answers 200 text/plain with exactly the key authorization', async () => {
    for (const host of ['hs.fedtls.test', 'hs.fedtls.test:80']) {
      const answer = await get(port(plain), `/.well-known/acme-challenge/${TOKEN}`, host);
      expect(answer.status).toBe(200);
      expect(answer.headers['content-type']).toMatch(/^text\/plain/);
      expect(answer.body).toBe(KEY_AUTHORIZATION);
      expect(answer.headers['content-length']).toBe(String(KEY_AUTHORIZATION.length));
    }
  });

  it('A1: trailing slash, unknown token, "..", "%2e%2e" and file paths answer 404 and never a file', async () => {
    const targets = [
      `/.well-known/acme-challenge/${TOKEN}/`,
      '/.well-known/acme-challenge/unknownTokenThatWasNeverAdded',
      '/.well-known/acme-challenge/',
      '/.well-known/acme-challenge/..',
      '/.well-known/acme-challenge/../../../../../../etc/passwd',
      '/.well-known/acme-challenge/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
      '/.well-known/acme-challenge/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd',
      `/.well-known/acme-challenge/${TOKEN}/../${TOKEN}`,
      `/.well-known/acme-challenge/./${TOKEN}`,
      '/.well-known/acme-challenge/..%2f..%2fpackage.json',
    ];
    for (const target of [...targets, '/etc/passwd', '/package.json']) {
      for (const server of target.startsWith('/.well-known/') ? [plain, redirecting] : [plain]) {
        const answer = await get(port(server), target);
        expect({ target, status: answer.status }).toEqual({ target, status: 404 });
        expect(answer.body).not.toContain('root:');
        expect(answer.body).not.toContain('"name"');
        expect(answer.body).not.toContain(KEY_AUTHORIZATION);
      }
    }
  });

  it('A2: with http.redirect_to_https on, the challenge path is still answered directly; other paths redirect', async () => {
    const answer = await get(port(redirecting), `/.well-known/acme-challenge/${TOKEN}`, 'hs.fedtls.test:80');
    expect(answer.status).toBe(200);
    expect(answer.body).toBe(KEY_AUTHORIZATION);
    const unknown = await get(port(redirecting), '/.well-known/acme-challenge/notKnown');
    expect(unknown.status).toBe(404);
    expect(unknown.headers.location).toBeUndefined();
    const other = await get(port(redirecting), '/_matrix/federation/v1/version', 'hs.fedtls.test:80');
    expect(other.status).toBe(301);
    expect(other.headers.location).toBe('https://hs.fedtls.test/_matrix/federation/v1/version');
  });

  it('unknown tokens: 300 probes with no validation pending stay at debug; while one is pending, each is logged at info', async () => {
    const capture = captureLog();
    const own = new ChallengeTable();
    const server = await listen(false, own, capture.log);
    try {
      const unknown = (): Promise<unknown[]> => Promise.all(Array.from({ length: 50 }, (_, i) => get(port(server), `/.well-known/acme-challenge/probe${i}`)));
      for (let round = 0; round < 6; round += 1) await unknown();
      const probes = capture.lines.filter((l) => l.event === 'acme_challenge_unknown');
      expect(probes).toHaveLength(300);
      expect(probes.every((l) => l.level === 20 && l.pending === 0)).toBe(true);
      expect(capture.lines.filter((l) => (l.level ?? 0) >= 30)).toEqual([]);

      own.add(TOKEN, KEY_AUTHORIZATION, 'hs.fedtls.test');
      expect((await get(port(server), '/.well-known/acme-challenge/someoneElsesToken')).status).toBe(404);
      expect((await get(port(server), `/.well-known/acme-challenge/${TOKEN}`)).status).toBe(200);
      const info = capture.lines.filter((l) => l.event === 'acme_challenge_unknown' && l.level === 30);
      expect(info).toHaveLength(1);
      expect(info[0]).toMatchObject({ path: '/.well-known/acme-challenge/someoneElsesToken', pending: 1 });
      expect(String(info[0]!.msg)).toMatch(/while 1 validation\(s\) are pending: if this is the CA, another ACME client is validating this name too/);
    } finally {
      server.close();
    }
  });
});
