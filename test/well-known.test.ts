// Serving the Matrix discovery files (D1, D2, D4): fedtls answers /.well-known/matrix/server
// and /client itself, on the federation listener and on the extra HTTPS listener, with JSON,
// 200, no redirect, CORS on every response of the client path; everything else on those
// listeners is proxied (or answered 404 with https_other_paths: not_found). Requests for the
// delegated host name reach the homeserver with their Host header unchanged.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createAuthority, issueLeaf, type Authority } from './helpers/certs.js';
import { startBackend, type Backend } from './helpers/backend.js';
import { runCli, startDaemon, tempDir, writeConfig, boundPort, type RunningDaemon } from './helpers/daemon.js';
import { freePort } from './helpers/pebble.js';
import { rawTlsRequest, type RawExchange } from './helpers/tls-client.js';

const SERVER_NAME = 'example.com';
const DELEGATED = 'matrix.example.net';
const M_SERVER = `${DELEGATED}:443`;
const CLIENT = { 'm.homeserver': { base_url: `https://${DELEGATED}` }, 'm.identity_server': { base_url: 'https://id.example.com' } };

describe('well-known files served by fedtls', () => {
  let authority: Authority;
  let backend: Backend;
  let proxying: RunningDaemon;
  let strict: RunningDaemon;

  async function startWith(dir: string, wellKnown: Record<string, unknown>): Promise<RunningDaemon> {
    const leaf = issueLeaf(authority, { names: [SERVER_NAME, DELEGATED] });
    writeFileSync(path.join(dir, 'fullchain.pem'), leaf.fullChainPem);
    writeFileSync(path.join(dir, 'privkey.pem'), leaf.keyPem);
    const config = writeConfig(dir, {
      server_name: SERVER_NAME, backend: backend.url,
      listen: { http: ["127.0.0.1:0"], federation: ["127.0.0.1:0"], https: ["127.0.0.1:0"] },
      state_dir: path.join(dir, 'state'),
      acme: { enabled: false },
      tls: { certificate_path: 'fullchain.pem', private_key_path: 'privkey.pem' },
      well_known: wellKnown,
    });
    return startDaemon(config);
  }

  const send = (daemon: RunningDaemon, role: string, request: string, servername = SERVER_NAME): Promise<RawExchange> =>
    rawTlsRequest({ port: boundPort(daemon, role), servername, ca: authority.rootCert, request });

  beforeAll(async () => {
    authority = createAuthority('WellKnown');
    backend = await startBackend();
    proxying = await startWith(tempDir(), { server: M_SERVER, client: CLIENT });
    strict = await startWith(tempDir(), { server: M_SERVER, client: CLIENT, https_other_paths: 'not_found' });
  });

  afterAll(async () => {
    await proxying?.stop();
    await strict?.stop();
    await backend?.close();
  });

  it('D1: GET /.well-known/matrix/server is 200 application/json with m.server, never a redirect, on both TLS listeners', async () => {
    const before = backend.requests.length;
    for (const daemon of [proxying, strict]) {
      for (const role of ['federation', 'https']) {
        for (const target of ['/.well-known/matrix/server', '/.well-known/matrix/server?ts=1']) {
          const reply = await send(daemon, role, `GET ${target} HTTP/1.1\r\nHost: ${SERVER_NAME}\r\nConnection: close\r\n\r\n`);
          expect(reply.status, `${role} ${target}`).toBe(200);
          expect(reply.headers['content-type']).toBe('application/json');
          expect(reply.headers.location).toBeUndefined();
          expect(reply.headers['cache-control']).toMatch(/max-age=\d+/);
          expect(JSON.parse(reply.body)).toEqual({ 'm.server': M_SERVER });
        }
      }
    }
    const head = await send(proxying, 'https', `HEAD /.well-known/matrix/server HTTP/1.1\r\nHost: ${SERVER_NAME}\r\nConnection: close\r\n\r\n`);
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expect(backend.requests.length).toBe(before);
  });

  it('D2: every response on /.well-known/matrix/client carries Access-Control-Allow-Origin: * (GET, HEAD, OPTIONS, errors)', async () => {
    const origin = 'Origin: https://app.element.io\r\n';
    for (const role of ['federation', 'https']) {
      const get = await send(proxying, role, `GET /.well-known/matrix/client HTTP/1.1\r\nHost: ${SERVER_NAME}\r\n${origin}Connection: close\r\n\r\n`);
      expect(get.status).toBe(200);
      expect(get.headers['content-type']).toBe('application/json');
      expect(get.headers['access-control-allow-origin']).toBe('*');
      expect(JSON.parse(get.body)).toEqual(CLIENT);

      const preflight = await send(proxying, role, `OPTIONS /.well-known/matrix/client HTTP/1.1\r\nHost: ${SERVER_NAME}\r\n${origin}Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: x-requested-with\r\nConnection: close\r\n\r\n`);
      expect(preflight.status).toBe(204);
      expect(preflight.headers['access-control-allow-origin']).toBe('*');
      expect(preflight.headers['access-control-allow-methods']).toContain('GET');
      expect(preflight.headers['access-control-allow-headers']?.toLowerCase()).toContain('x-requested-with');

      const head = await send(proxying, role, `HEAD /.well-known/matrix/client HTTP/1.1\r\nHost: ${SERVER_NAME}\r\n${origin}Connection: close\r\n\r\n`);
      expect(head.status).toBe(200);
      expect(head.headers['access-control-allow-origin']).toBe('*');

      const post = await send(proxying, role, `POST /.well-known/matrix/client HTTP/1.1\r\nHost: ${SERVER_NAME}\r\n${origin}Content-Length: 2\r\nConnection: close\r\n\r\n{}`);
      expect(post.status).toBe(405);
      expect(post.headers['content-type']).toBe('application/json');
      expect(post.headers['access-control-allow-origin']).toBe('*');
      expect(post.headers.allow).toContain('GET');
      // The file is cacheable for an hour; an error is not kept at all.
      expect(get.headers['cache-control']).toBe('public, max-age=3600');
      expect(head.headers['cache-control']).toBe('public, max-age=3600');
      expect(preflight.headers['cache-control']).toBe('public, max-age=3600');
      expect(post.headers['cache-control']).toBe('no-store');
      expect(JSON.parse(post.body).errcode).toBe('M_UNRECOGNIZED');
    }
    // With https_other_paths: not_found, an unknown discovery file is a JSON 404 that a browser can still read.
    const unknown = await send(strict, 'https', `GET /.well-known/matrix/nonsense HTTP/1.1\r\nHost: ${SERVER_NAME}\r\n${origin}Connection: close\r\n\r\n`);
    expect(unknown.status).toBe(404);
    expect(unknown.headers['content-type']).toBe('application/json');
    expect(unknown.headers['access-control-allow-origin']).toBe('*');
  });

  it('a "#" fragment on a discovery path is refused with 400 JSON (CORS kept), never proxied, on every listener', async () => {
    const before = backend.requests.length;
    for (const daemon of [proxying, strict]) {
      for (const role of ['federation', 'https']) {
        for (const target of ['/.well-known/matrix/client#x', '/.well-known/matrix/server#', '/.well-known/matrix/client?a=1#x']) {
          const reply = await send(daemon, role, `GET ${target} HTTP/1.1\r\nHost: ${SERVER_NAME}\r\nConnection: close\r\n\r\n`);
          expect(reply.status, `${role} ${target}`).toBe(400);
          expect(reply.headers['content-type']).toBe('application/json');
          expect(reply.headers['access-control-allow-origin']).toBe('*');
          expect(reply.headers['cache-control']).toBe('no-store');
          expect(JSON.parse(reply.body).error).toMatch(/fragment .* is never sent in an HTTP request; request \/\.well-known\/matrix\/(client|server)$/);
        }
      }
    }
    expect(backend.requests.length).toBe(before);
  });

  it('D4: m.server is exactly the configured host:port, and requests for the delegated host are proxied with Host unchanged', async () => {
    const reply = await send(proxying, 'federation', `GET /.well-known/matrix/server HTTP/1.1\r\nHost: ${SERVER_NAME}\r\nConnection: close\r\n\r\n`);
    expect(reply.body).toBe(JSON.stringify({ 'm.server': M_SERVER }));
    for (const role of ['federation', 'https']) {
      for (const host of [`${DELEGATED}:443`, DELEGATED]) {
        const target = `/_matrix/federation/v1/version?via=${role}`;
        const proxied = await send(proxying, role, `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`, DELEGATED);
        expect(proxied.status, `${role} Host: ${host}`).toBe(200);
        const seen = backend.requests.at(-1)!;
        expect(seen.requestLine).toBe(`GET ${target} HTTP/1.1`);
        expect(seen.headers.host).toBe(host);
      }
    }
  });

  it('https_other_paths: not_found answers 404 on the HTTPS listener, while the federation listener still proxies', async () => {
    const before = backend.requests.length;
    const refused = await send(strict, 'https', `GET /_matrix/client/versions HTTP/1.1\r\nHost: ${SERVER_NAME}\r\nConnection: close\r\n\r\n`);
    expect(refused.status).toBe(404);
    expect(JSON.parse(refused.body).errcode).toBe('M_NOT_FOUND');
    expect(backend.requests.length).toBe(before);
    const proxied = await send(strict, 'federation', `GET /_matrix/federation/v1/version HTTP/1.1\r\nHost: ${SERVER_NAME}\r\nConnection: close\r\n\r\n`);
    expect(proxied.status).toBe(200);
    expect(backend.requests.length).toBe(before + 1);
  });

  it('a well_known.server with a scheme is refused at startup with the reason', async () => {
    const dir = tempDir();
    const config = writeConfig(dir, { server_name: SERVER_NAME, state_dir: path.join(dir, 'state'), well_known: { server: 'https://matrix.example.net' } });
    const run = runCli(['check-config', '--config', config]);
    expect(await run.exited).toBe(1);
    expect(run.stderr()).toMatch(/well_known\.server: "https:\/\/matrix\.example\.net" must be host\[:port\] with no scheme/);
  });
});
