// The proxy's request and header rules over real TLS to a recording backend that sees the
// raw bytes: request-targets byte for byte (P1), forwarded headers (P7), HTTP/2 clients (P8),
// hop-by-hop and repeated headers both ways, target forms, HEAD/204/304, blocked paths, and
// every kind of malformed or ambiguous request refused with Matrix JSON and never forwarded.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { Responder } from './helpers/backend.js';
import { httpsRequest, processStats, PROXY_TEST_NAME, startProxyFixture, type ProxyFixture } from './helpers/proxy-fixture.js';

/** Responses no proxy may pass on as they are, written raw by the backend. */
const RAW_RESPONSES: Record<string, string> = {
  'length-and-chunked': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'two-lengths': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
  'bad-header': 'HTTP/1.1 200 OK\r\nX Bad: 1\r\nContent-Length: 2\r\n\r\nok',
  'not-http': 'SSH-2.0-OpenSSH_9.2\r\n',
};

const responder: Responder = (req, res) => {
  const url = req.url ?? '';
  req.resume();
  if (url.startsWith('/raw-response/')) {
    const name = url.slice('/raw-response/'.length);
    if (name === 'early-hints') {
      req.socket.end('HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-After-Hints: 1\r\n\r\nok');
      return;
    }
    req.socket.end(RAW_RESPONSES[name]);
    return;
  }
  req.on('end', () => {
    if (url.startsWith('/cookies')) {
      res.writeHead(200, [['Set-Cookie', 'a=1; Path=/'], ['Set-Cookie', 'b=2; Path=/'], ['X-Repeat', 'one'], ['X-Repeat', 'two'],
        ['Connection', 'X-Backend-Private'], ['X-Backend-Private', 'secret'], ['Keep-Alive', 'timeout=5'], ['Content-Length', '2']]);
      res.end('ok');
    } else if (url.startsWith('/no-content')) {
      res.writeHead(204, { 'X-Kind': 'no-content' });
      res.end();
    } else if (url.startsWith('/not-modified')) {
      res.writeHead(304, { ETag: '"v1"' });
      res.end();
    } else {
      const body = JSON.stringify({ target: url, method: req.method });
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    }
  });
};

/** The backend's raw bytes contain exactly this request line. */
function backendSawRequestLine(fixture: ProxyFixture, method: string, target: string): boolean {
  return fixture.backend.rawReceived().includes(Buffer.from(`${method} ${target} HTTP/1.1\r\n`, 'latin1'));
}

function request(target: string, headers = `Host: ${PROXY_TEST_NAME}\r\n`, method = 'GET'): string {
  return `${method} ${target} HTTP/1.1\r\n${headers}Connection: close\r\n\r\n`;
}

/** The raw header block the backend received for the request whose target starts with `prefix`. */
function backendRawHeaders(fixture: ProxyFixture, prefix: string): string[] {
  const record = fixture.backend.requests.find((r) => r.target.startsWith(prefix));
  if (!record) throw new Error(`the backend did not receive ${prefix}`);
  return record.rawHeaders;
}

function headerValues(raw: string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) values.push(raw[i + 1]!);
  return values;
}

describe('proxy: requests and headers', () => {
  let fixture: ProxyFixture;

  beforeAll(async () => {
    fixture = await startProxyFixture();
    fixture.backend.respond = responder;
  });

  afterAll(async () => {
    await fixture?.close();
  });

  it('P1: the backend receives every request-target byte for byte', async () => {
    const targets = [
      // The field case.
      '/_matrix/federation/v1/event/%24abc%2Fdef',
      '/_matrix/client/v3/directory/room/%23a%3Aex.org',
      '/_matrix/client/v3/room_keys/keys/!r%3Aex/ab%2Bc%2Fd?version=1',
      // The same kind: merged slashes, dot segments, hex case, quotes, encoded UTF-8, odd queries.
      '//_matrix//federation/v1/query/directory?room_alias=%23a%3Ab',
      '/_matrix/federation/v1/./state/../state_ids/!a%3Ab?event_id=%24x',
      '/_matrix/federation/v1/user/devices/%40Al%2fice%3AEx.org',
      "/_matrix/client/v3/rooms/!r%3Aex/send/m.room.message/it's?x='q'&y=\"dq\"",
      '/_matrix/media/v3/download/ex.org/caf%C3%A9%e2%82%AC?name=%E2%82%ac%20x+y',
      '/_matrix/client/v3/search?next_batch=a%2B%2b%25%2525&&=&a==b;c',
      '/_matrix/key/v2/server/',
      '/',
    ];
    for (const target of targets) {
      const exchange = await fixture.raw(request(target));
      expect(exchange.status, target).toBe(200);
      expect(JSON.parse(exchange.body.split('\r\n').filter((l) => l.startsWith('{')).join('') || exchange.body).target, target).toBe(target);
      expect(backendSawRequestLine(fixture, 'GET', target), target).toBe(true);
    }
    // The recording backend's parser agrees (no decoding on its side either).
    expect(fixture.backend.requests.map((r) => r.target)).toEqual(expect.arrayContaining(targets));
  });

  it('P1: an absolute-form target is forwarded as its origin-form bytes, with Host from the target', async () => {
    const exchange = await fixture.raw(request('https://example.org:8448/_matrix/federation/v1/event/%24a%2F//b?x=%2f', 'Host: ignored.example\r\n'));
    expect(exchange.status).toBe(200);
    expect(backendSawRequestLine(fixture, 'GET', '/_matrix/federation/v1/event/%24a%2F//b?x=%2f')).toBe(true);
    expect(headerValues(backendRawHeaders(fixture, '/_matrix/federation/v1/event/%24a%2F//b'), 'host')).toEqual(['example.org:8448']);
  });

  it('P1: raw non-ASCII or spaces in the target are refused (400 JSON), never altered and forwarded', async () => {
    const before = fixture.backend.requests.length;
    for (const target of ['/_matrix/caf\u00c3\u00a9', '/_matrix/a b', '/_matrix/tab\there']) {
      const exchange = await fixture.raw(Buffer.from(request(target), 'latin1'));
      expect(exchange.status, target).toBe(400);
      expect(exchange.headers['content-type']).toBe('application/json');
      expect(JSON.parse(exchange.body).errcode).toBe('M_UNRECOGNIZED');
    }
    expect(fixture.backend.requests.length).toBe(before);
  });

  it('P7: X-Forwarded-For is the real peer only, X-Forwarded-Proto is https, Host is as sent', async () => {
    const exchange = await fixture.raw(request('/p7/forwarded', 'X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: http\r\nHost: example.org:8448\r\n' +
      'X-Real-IP: 5.6.7.8\r\nForwarded: for=9.9.9.9;proto=http\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-For: 10.0.0.1\r\n'));
    expect(exchange.status).toBe(200);
    const raw = backendRawHeaders(fixture, '/p7/forwarded');
    expect(headerValues(raw, 'x-forwarded-for')).toEqual(['127.0.0.1']);
    expect(headerValues(raw, 'x-forwarded-proto')).toEqual(['https']);
    expect(headerValues(raw, 'host')).toEqual(['example.org:8448']);
    expect(headerValues(raw, 'x-real-ip')).toEqual([]);
    expect(headerValues(raw, 'forwarded')).toEqual([]);
    expect(headerValues(raw, 'x-forwarded-host')).toEqual([]);
    expect(raw.indexOf('Host')).toBeGreaterThanOrEqual(0); // the case as sent
  });

  it('drops hop-by-hop and Connection-listed headers both ways; keeps repeated headers, their order and case', async () => {
    const exchange = await fixture.raw(`GET /cookies HTTP/1.1\r\nHost: ${PROXY_TEST_NAME}\r\nX-Dup: 1\r\nx-dup: 2\r\nCookie: a=1\r\nCookie: b=2\r\n` +
      'Connection: close, X-Client-Private\r\nX-Client-Private: s\r\nKeep-Alive: timeout=3\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\n\r\n');
    expect(exchange.status).toBe(200);
    const raw = backendRawHeaders(fixture, '/cookies');
    const names = raw.filter((_, i) => i % 2 === 0);
    expect(names.filter((n) => /dup|cookie/i.test(n))).toEqual(['X-Dup', 'x-dup', 'Cookie', 'Cookie']);
    expect(headerValues(raw, 'cookie')).toEqual(['a=1', 'b=2']);
    for (const gone of ['x-client-private', 'keep-alive', 'te', 'upgrade', 'proxy-connection', 'proxy-authorization']) {
      expect(headerValues(raw, gone), gone).toEqual([]);
    }
    const response = exchange.response.split('\r\n\r\n')[0]!;
    expect(response.match(/^Set-Cookie: .*$/gim)).toEqual(['Set-Cookie: a=1; Path=/', 'Set-Cookie: b=2; Path=/']);
    expect(response.match(/^X-Repeat: .*$/gim)).toEqual(['X-Repeat: one', 'X-Repeat: two']);
    expect(response).not.toMatch(/X-Backend-Private|Keep-Alive/i);
    expect(exchange.body).toBe('ok');
  });

  it('passes HEAD, 204 and 304 through without inventing bodies; chunked and fixed-length bodies both arrive', async () => {
    const head = await fixture.raw(request('/head-check', undefined, 'HEAD'));
    expect(head.status).toBe(200);
    expect(head.headers['content-length']).toBe(String(Buffer.byteLength(JSON.stringify({ target: '/head-check', method: 'HEAD' }))));
    expect(head.body).toBe('');
    const noContent = await fixture.raw(request('/no-content'));
    expect(noContent.status).toBe(204);
    expect(noContent.body).toBe('');
    expect(noContent.headers['transfer-encoding']).toBeUndefined();
    const notModified = await fixture.raw(request('/not-modified'));
    expect(notModified.status).toBe(304);
    expect(notModified.body).toBe('');
    expect(notModified.headers.etag).toBe('"v1"');

    const chunked = await fixture.raw(`PUT /body/chunked HTTP/1.1\r\nHost: ${PROXY_TEST_NAME}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n`);
    const fixed = await fixture.raw(`PUT /body/fixed HTTP/1.1\r\nHost: ${PROXY_TEST_NAME}\r\nContent-Length: 7\r\nConnection: close\r\n\r\nabcdefg`);
    expect([chunked.status, fixed.status]).toEqual([200, 200]);
    expect(fixture.backend.requests.find((r) => r.target === '/body/chunked')!.bodyBytes).toBe(7);
    expect(fixture.backend.requests.find((r) => r.target === '/body/fixed')!.bodyBytes).toBe(7);
  });

  it('refuses malformed and ambiguous requests with Matrix JSON and never forwards them', async () => {
    const host = `Host: ${PROXY_TEST_NAME}\r\n`;
    const cases: [string, string, number][] = [
      ['two Content-Length', `POST /refuse/1 HTTP/1.1\r\n${host}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`, 400],
      ['same Content-Length twice', `POST /refuse/2 HTTP/1.1\r\n${host}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc`, 400],
      ['Content-Length list', `POST /refuse/3 HTTP/1.1\r\n${host}Content-Length: 3, 3\r\n\r\nabc`, 400],
      ['Content-Length + Transfer-Encoding', `POST /refuse/4 HTTP/1.1\r\n${host}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, 400],
      ['negative Content-Length', `POST /refuse/5 HTTP/1.1\r\n${host}Content-Length: -1\r\n\r\n`, 400],
      ['Transfer-Encoding gzip, chunked', `POST /refuse/6 HTTP/1.1\r\n${host}Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, 501],
      ['Transfer-Encoding identity', `POST /refuse/7 HTTP/1.1\r\n${host}Transfer-Encoding: identity\r\n\r\nabc`, 501],
      ['obs-fold', `GET /refuse/8 HTTP/1.1\r\n${host}X-A: a\r\n  folded\r\n\r\n`, 400],
      ['space in a header name', `GET /refuse/9 HTTP/1.1\r\n${host}X A: a\r\n\r\n`, 400],
      ['space before the colon', `GET /refuse/10 HTTP/1.1\r\n${host}X-A : a\r\n\r\n`, 400],
      ['control character in a value', `GET /refuse/11 HTTP/1.1\r\n${host}X-A: a\u0001b\r\n\r\n`, 400],
      ['NUL in a value', `GET /refuse/12 HTTP/1.1\r\n${host}X-A: a\u0000b\r\n\r\n`, 400],
      ['bare LF line endings', `GET /refuse/13 HTTP/1.1\n${host.trim()}\n\n`, 400],
      ['two Host headers', `GET /refuse/14 HTTP/1.1\r\n${host}Host: other.example\r\n\r\n`, 400],
      ['no Host in HTTP/1.1', 'GET /refuse/15 HTTP/1.1\r\n\r\n', 400],
      ['bad chunk size', `POST /refuse/16 HTTP/1.1\r\n${host}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`, 400],
      ['bad HTTP version', `GET /refuse/17 HTTP/9.9\r\n${host}\r\n`, 400],
      ['authority-form for GET', `GET example.org:443 HTTP/1.1\r\n${host}\r\n`, 400],
      ['userinfo in an absolute target', `GET https://user@example.org/refuse/19 HTTP/1.1\r\n${host}\r\n`, 400],
      ['CONNECT', `CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n`, 405],
      ['unknown Expect', `PUT /refuse/21 HTTP/1.1\r\n${host}Expect: something\r\nContent-Length: 1\r\n\r\nx`, 417],
      ['HTTP/2 preface without ALPN', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 505],
      ['headers over the size limit', `GET /refuse/23 HTTP/1.1\r\n${host}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431],
    ];
    const before = fixture.backend.requests.length;
    for (const [what, bytes, status] of cases) {
      const exchange = await fixture.raw(Buffer.from(bytes, 'latin1'));
      expect(exchange.status, what).toBe(status);
      expect(exchange.headers['content-type'], what).toBe('application/json');
      const body = JSON.parse(exchange.body) as { errcode: string; error: string };
      expect(body.errcode, what).toMatch(/^M_[A-Z_]+$/);
      expect(body.error.length, what).toBeGreaterThan(5);
    }
    expect(fixture.backend.requests.length).toBe(before);
    expect(fixture.backend.rawReceived().includes(Buffer.from('/refuse/'))).toBe(false);
  });

  it('bytes after a request that closes the connection are ignored: the backend\'s answer reaches the client, then the connection closes', async () => {
    // HTTP/1.0 without Content-Length: the request has no body (RFC 9112 §6.3), "hello" is extra bytes.
    const http10 = await fixture.raw(`POST /after-close/http10 HTTP/1.0\r\nHost: ${PROXY_TEST_NAME}\r\n\r\nhello`);
    expect(http10.status).toBe(200);
    expect(JSON.parse(http10.body)).toEqual({ target: '/after-close/http10', method: 'POST' });
    const seen = fixture.backend.requests.filter((r) => r.target === '/after-close/http10');
    expect(seen).toHaveLength(1);
    expect(seen[0]!.bodyBytes).toBe(0);

    const smuggle = `GET /after-close/smuggled HTTP/1.1\r\nHost: ${PROXY_TEST_NAME}\r\n\r\n`;
    const close = await fixture.raw(`PUT /after-close/put HTTP/1.1\r\nHost: ${PROXY_TEST_NAME}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}${smuggle}`);
    expect(close.status).toBe(200);
    expect(close.headers.connection).toBe('close');
    expect(JSON.parse(close.body)).toEqual({ target: '/after-close/put', method: 'PUT' });
    expect(fixture.backend.requests.some((r) => r.target === '/after-close/smuggled')).toBe(false);

    // Garbage pipelined behind a keep-alive request: the first answer whole, then the 400 for what followed.
    const pipelined = await fixture.raw(`GET /after-close/keep-alive HTTP/1.1\r\nHost: ${PROXY_TEST_NAME}\r\n\r\nXYZ\u0001 / HTTP/1.1\r\n\r\n`);
    expect(pipelined.status).toBe(200);
    const [first, second] = pipelined.response.split(/(?=HTTP\/1\.1 )/);
    expect(first).toContain('{"target":"/after-close/keep-alive","method":"GET"}');
    expect(second).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(second).toMatch(/\r\nContent-Type: application\/json\r\n/);
    expect(second).toContain('"errcode":"M_UNRECOGNIZED"');
    expect(fixture.daemon.logs.filter((l) => l.event === 'request_refused' && l.code === 'HPE_CLOSED_CONNECTION' && l.ignored === true)).toHaveLength(2);
  });

  it('malformed request lines get an answer that says what is wrong: no leading "/", a space, a URL too long', async () => {
    const host = `Host: ${PROXY_TEST_NAME}\r\n`;
    const answer = async (bytes: string): Promise<{ status: number; errcode: string; error: string }> => {
      const exchange = await fixture.raw(Buffer.from(bytes, 'latin1'));
      expect(exchange.headers['content-type'], bytes.slice(0, 40)).toBe('application/json');
      return { status: exchange.status, ...(JSON.parse(exchange.body) as { errcode: string; error: string }) };
    };
    const noSlash = await answer(`GET _synapse/admin HTTP/1.1\r\n${host}\r\n`);
    expect(noSlash).toMatchObject({ status: 400, errcode: 'M_UNRECOGNIZED' });
    expect(noSlash.error).toBe('Malformed HTTP request: the request-target must start with "/" (or be an absolute URL such as https://host/path, or "*" for OPTIONS)');
    expect((await answer(`GET example.org:443 HTTP/1.1\r\n${host}\r\n`)).error).toMatch(/must start with "\/"/);
    expect((await answer(`GET ftp://example.org/x HTTP/1.1\r\n${host}\r\n`)).error).toMatch(/must start with "\/"/);
    expect((await answer(`GET /a b HTTP/1.1\r\n${host}\r\n`)).error).toBe('Malformed HTTP request: the request-target contains a space; percent-encode it as %20');
    expect((await answer(`GET /caf\u00c3\u00a9 HTTP/1.1\r\n${host}\r\n`)).error).toMatch(/characters that must be percent-encoded/);

    // The request line alone is over the limit, and the parser stopped where the URL ends: 414.
    const longUrl = await answer(`GET /_matrix/${'a'.repeat(20_000)} HTTP/1.1\r\n${host}\r\n`);
    expect(longUrl).toMatchObject({ status: 414, errcode: 'M_TOO_LARGE' });
    expect(longUrl.error).toMatch(/^The URL is too long/);
    // 70 KB: Node's parser gives up in the middle of the URL and cannot say which line it was:
    // 431, naming the URL; and the answer arrives even though the client was still sending.
    const hugeUrl = await answer(`GET /_matrix/${'a'.repeat(70_000)} HTTP/1.1\r\n${host}\r\n`);
    expect(hugeUrl).toMatchObject({ status: 431, errcode: 'M_TOO_LARGE' });
    expect(hugeUrl.error).toMatch(/request line \(with the URL\) and the headers together must stay under 16 KB/);
    const hugeHeader = await answer(`GET /x HTTP/1.1\r\n${host}X-Big: ${'a'.repeat(70_000)}\r\n\r\n`);
    expect(hugeHeader.status).toBe(431);
    expect(fixture.backend.rawReceived().includes(Buffer.from('aaaaaaaaaa'))).toBe(false);
  });

  it('header and method errors say what to change: a folded header, a space before the colon, a lower-case method', async () => {
    const host = `Host: ${PROXY_TEST_NAME}\r\n`;
    const error = async (bytes: string): Promise<string> => {
      const exchange = await fixture.raw(Buffer.from(bytes, 'latin1'));
      expect(exchange.status, bytes.slice(0, 40)).toBe(400);
      expect(exchange.headers['content-type']).toBe('application/json');
      return (JSON.parse(exchange.body) as { error: string }).error;
    };
    expect(await error(`GET /msg/1 HTTP/1.1\r\n${host}X-Folded: a\r\n  b\r\n\r\n`))
      .toBe('Malformed HTTP request: folded header lines (obs-fold) are not allowed (the X-Folded header continues on the next line); put each header\'s value on one line');
    expect(await error(`GET /msg/2 HTTP/1.1\r\nHost : ${PROXY_TEST_NAME}\r\n\r\n`))
      .toBe('Malformed HTTP request: the header name "Host" is followed by a space or an invalid character before the colon; write "Name: value" with no space before the ":"');
    expect(await error(`GET /msg/3 HTTP/1.1\r\n${host}X A: b\r\n\r\n`)).toMatch(/the header name "X" is followed by a space/);
    expect(await error(`get /msg/4 HTTP/1.1\r\n${host}\r\n`)).toBe('Malformed HTTP request: methods are case-sensitive and upper case: send "GET", not "get"');
    expect(await error(`Put /msg/5 HTTP/1.1\r\n${host}Content-Length: 0\r\n\r\n`)).toMatch(/send "PUT", not "Put"/);
    expect(await error(`FETCH /msg/6 HTTP/1.1\r\n${host}\r\n`)).toMatch(/^Malformed HTTP request: "FETCH" is not an HTTP method/);
    // Still what llhttp says when there is nothing better to add.
    expect(await error(`GET /msg/7 HTTP/1.1\r\n${host}X-A: a\u0001b\r\n\r\n`)).toBe('Malformed HTTP request: Invalid header value char');
    expect(fixture.backend.rawReceived().includes(Buffer.from('/msg/'))).toBe(false);
  });

  it('plain HTTP sent to the TLS port gets a plain-HTTP 400 saying to use https:// (not an empty reply); TLS goes on', async () => {
    // A raw socket, the method's first byte alone in the first segment.
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(fixture.port, '127.0.0.1', () => {
        socket.setNoDelay(true);
        socket.write('G');
        setTimeout(() => socket.write(`ET /plain-http/raw HTTP/1.1\r\nHost: ${PROXY_TEST_NAME}:${fixture.port}\r\n\r\n`), 50);
      });
      let text = '';
      socket.on('data', (d: Buffer) => { text += d.toString('latin1'); });
      socket.on('error', reject);
      socket.on('close', () => resolve(text));
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(raw).toMatch(/\r\nContent-Type: application\/json\r\n/);
    expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4))).toEqual({ errcode: 'M_UNRECOGNIZED', error: 'plain HTTP was sent to the HTTPS port; use https://' });

    // What an admin types.
    const curl = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile('curl', ['-sS', '-w', '\n%{http_code}', `http://127.0.0.1:${fixture.port}/plain-http/curl`],
        (error, out) => resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout: out }));
    });
    expect(curl.code).toBe(0);
    const [body, status] = curl.stdout.split('\n');
    expect(status).toBe('400');
    expect(JSON.parse(body!).error).toMatch(/use https:\/\//);

    // Binary garbage that is neither TLS nor HTTP still just fails the handshake.
    const garbage = await new Promise<string>((resolve) => {
      const socket = net.connect(fixture.port, '127.0.0.1', () => socket.write(Buffer.from([0x00, 0x01, 0x02, 0xff, 0x00, 0x01, 0x02, 0xff])));
      let text = '';
      socket.on('data', (d: Buffer) => { text += d.toString('latin1'); });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(text));
    });
    expect(garbage).not.toMatch(/^HTTP/);
    expect(fixture.backend.requests.some((r) => r.target.startsWith('/plain-http/'))).toBe(false);
    expect((await httpsRequest(fixture, { path: '/after-plain-http' })).status).toBe(200);
    expect(fixture.daemon.logs.filter((l) => l.event === 'request_refused' && l.code === 'PLAIN_HTTP')).toHaveLength(2);
  });

  it('survives garbage: random bytes and cut-off requests never crash the daemon or reach the backend unframed', async () => {
    const valid = `PUT /garbage/target?x=%2F HTTP/1.1\r\nHost: ${PROXY_TEST_NAME}\r\nContent-Length: 10\r\nX-A: b\r\n\r\n0123456789`;
    let seed = 0x5eed;
    const random = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff; };
    const inputs: Buffer[] = [];
    for (let i = 0; i < 40; i += 1) inputs.push(Buffer.from(Array.from({ length: 1 + Math.floor(random() * 300) }, () => Math.floor(random() * 256))));
    for (let i = 0; i < 40; i += 1) {
      const bytes = Buffer.from(valid, 'latin1');
      const mutated = Buffer.from(bytes.subarray(0, Math.floor(random() * bytes.length)));
      if (mutated.length > 0) mutated[Math.floor(random() * mutated.length)] = Math.floor(random() * 256);
      inputs.push(mutated);
    }
    await Promise.all(inputs.map((input) => fixture.raw(input, 8000).catch(() => null)));
    expect(fixture.daemon.child.exitCode).toBeNull();
    expect(fixture.daemon.logs.filter((l) => (l.level ?? 0) >= 50)).toEqual([]);
    expect(fixture.daemon.stderr()).toBe('');
    for (const r of fixture.backend.requests.filter((x) => x.target.startsWith('/garbage'))) expect(r.bodyBytes).toBeLessThanOrEqual(10);
    expect((await httpsRequest(fixture, { path: '/after-garbage' })).status).toBe(200);
  });

  it('never passes on an ambiguous or broken backend response: 502 JSON instead; 1xx hints are not leaked', async () => {
    for (const name of Object.keys(RAW_RESPONSES)) {
      const exchange = await fixture.raw(request(`/raw-response/${name}`));
      expect(exchange.status, name).toBe(502);
      expect(exchange.headers['content-type'], name).toBe('application/json');
      expect(JSON.parse(exchange.body).errcode, name).toBe('M_UNKNOWN');
    }
    const hinted = await fixture.raw(request('/raw-response/early-hints'));
    expect(hinted.status).toBe(200);
    expect(hinted.headers['x-after-hints']).toBe('1');
    expect(hinted.body).toBe('ok');
    expect(hinted.response).not.toMatch(/103/);
  });

  it('blocks /_synapse/admin however the path is spelled (404 JSON); forwards what is merely similar', async () => {
    const blocked = ['/_synapse/admin', '/_synapse/admin/v1/users', '/_synapse/%61dmin/v1/users', '//_synapse//admin/v1/users',
      '/_matrix/../_synapse/admin/v1/users', '/_synapse/./admin/', '/_SYNAPSE/Admin/v1', '/_synapse%2Fadmin/v1', '/_synapse/admin;x/v1', '/_synapse/admin?x=1'];
    for (const target of blocked) {
      const exchange = await fixture.raw(request(target));
      expect(exchange.status, target).toBe(404);
      expect(JSON.parse(exchange.body).errcode, target).toBe('M_NOT_FOUND');
    }
    expect(fixture.backend.requests.some((r) => /synapse/i.test(r.target))).toBe(false);
    const similar = await fixture.raw(request('/_synapse/administrator-notes'));
    expect(similar.status).toBe(200);
    expect(backendSawRequestLine(fixture, 'GET', '/_synapse/administrator-notes')).toBe(true);
  });

  it('a "#" fragment in the target is refused (400 JSON), so no blocked path can be reached with one; never forwarded', async () => {
    const targets = ['/_synapse/admin#x', '/_synapse#/admin/v1/users', '/frag#/../_synapse/admin/v1/users', '/_matrix/client/v3/rooms/frag#b?x=1',
      '/_matrix/client/v3/rooms/frag?q=a#b', 'https://example.org/_synapse/admin#x', '#'];
    for (const target of targets) {
      const exchange = await fixture.raw(request(target));
      expect(exchange.status, target).toBe(400);
      expect(exchange.headers['content-type'], target).toBe('application/json');
      const body = JSON.parse(exchange.body) as { errcode: string; error: string };
      expect(body.errcode, target).toBe('M_UNRECOGNIZED');
      // A lone "#" is refused by Node's parser already, with the same words.
      expect(body.error, target).toMatch(/^(Bad request-target|Malformed HTTP request): the request-target contains "#": a URL fragment is never sent in an HTTP request; leave it out \(or percent-encode a literal "#" as %23\)$/);
    }
    expect(fixture.backend.rawReceived().includes(Buffer.from('#'))).toBe(false);
    // Nor with the fragment cut off.
    const stripped = new Set(['/_synapse/admin', '/_synapse', '/frag', '/_matrix/client/v3/rooms/frag']);
    expect(fixture.backend.requests.filter((r) => stripped.has(r.target.split('?')[0]!))).toEqual([]);
    // %23 is an ordinary escaped byte and passes untouched.
    expect((await fixture.raw(request('/_matrix/client/v3/directory/room/%23frag%3Aex'))).status).toBe(200);
    expect(backendSawRequestLine(fixture, 'GET', '/_matrix/client/v3/directory/room/%23frag%3Aex')).toBe(true);
  });

  it('an empty Host, or one with userinfo or a space, is refused with 400 JSON naming the Host header (RFC 9112 §3.2); never forwarded', async () => {
    const cases: [string, string, RegExp][] = [
      ['empty', 'GET /bad-host/1 HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n', /^the Host header is empty/],
      ['empty, HTTP/1.0', 'GET /bad-host/2 HTTP/1.0\r\nHost: \r\n\r\n', /^the Host header is empty/],
      ['userinfo', 'GET /bad-host/3 HTTP/1.1\r\nHost: a@b\r\nConnection: close\r\n\r\n', /^the Host header "a@b" has userinfo/],
      ['userinfo with a port', `GET /bad-host/4 HTTP/1.1\r\nHost: evil@${PROXY_TEST_NAME}:8448\r\nConnection: close\r\n\r\n`, /has userinfo/],
      ['a space', 'GET /bad-host/5 HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n', /^the Host header "a b" is not a valid host\[:port\]/],
      ['a path', 'GET /bad-host/6 HTTP/1.1\r\nHost: a/b\r\nConnection: close\r\n\r\n', /is not a valid host\[:port\]/],
      ['absolute form, bad Host beside it', 'GET https://example.org/bad-host/7 HTTP/1.1\r\nHost: a@b\r\nConnection: close\r\n\r\n', /has userinfo/],
    ];
    for (const [what, bytes, message] of cases) {
      const exchange = await fixture.raw(bytes);
      expect(exchange.status, what).toBe(400);
      expect(exchange.headers['content-type'], what).toBe('application/json');
      const body = JSON.parse(exchange.body) as { errcode: string; error: string };
      expect(body.errcode, what).toBe('M_UNRECOGNIZED');
      expect(body.error, what).toMatch(message);
    }
    expect(fixture.backend.rawReceived().includes(Buffer.from('/bad-host/'))).toBe(false);
    // What is valid still passes: a port, an IP literal, an IPv6 literal.
    for (const host of [`${PROXY_TEST_NAME}:8448`, '127.0.0.1:8448', '[::1]:8448', '[::1]']) {
      expect((await fixture.raw(request('/good-host', `Host: ${host}\r\n`))).status, host).toBe(200);
    }
  });

  it('OPTIONS * and HTTP/1.0 without Host are forwarded (Host from the TLS name)', async () => {
    const star = await fixture.raw(request('*', undefined, 'OPTIONS'));
    expect(star.status).toBe(200);
    expect(backendSawRequestLine(fixture, 'OPTIONS', '*')).toBe(true);
    const old = await fixture.raw('GET /http10 HTTP/1.0\r\n\r\n');
    expect(old.status).toBe(200);
    expect(headerValues(backendRawHeaders(fixture, '/http10'), 'host')).toEqual([PROXY_TEST_NAME]);
  });

  it('P8: curl --http2 gets a correct answer (ALPN settles on http/1.1)', async () => {
    const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile('curl', ['--http2', '-sS', '--cacert', fixture.caFile, '--resolve', `${PROXY_TEST_NAME}:${fixture.port}:127.0.0.1`,
        '-w', '\n%{http_version} %{http_code}', `https://${PROXY_TEST_NAME}:${fixture.port}/_matrix/federation/v1/version`],
      (error, out, err) => resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout: out, stderr: err }));
    });
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const [body, status] = stdout.split('\n');
    expect(status).toBe('1.1 200');
    expect(JSON.parse(body!).target).toBe('/_matrix/federation/v1/version');
    expect(backendSawRequestLine(fixture, 'GET', '/_matrix/federation/v1/version')).toBe(true);
  });

  it('P8: a client that offers only h2 is refused cleanly at the TLS layer, and the daemon keeps serving', async () => {
    const alpn = await new Promise<string>((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port: fixture.port, servername: PROXY_TEST_NAME, ca: fixture.ca, ALPNProtocols: ['h2'] }, () => {
        resolve(`negotiated:${String(socket.alpnProtocol)}`);
        socket.destroy();
      });
      socket.on('error', (error: NodeJS.ErrnoException) => resolve(`error:${error.code ?? error.message}`));
    });
    // Either the handshake is refused (no_application_protocol) or completes without h2.
    expect(alpn).toMatch(/^(error:ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL|negotiated:false)$/);
    const session = http2.connect(`https://127.0.0.1:${fixture.port}`, { servername: PROXY_TEST_NAME, ca: fixture.ca });
    const h2Error = await new Promise<string>((resolve) => {
      session.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
      session.on('connect', () => resolve('connected'));
    });
    session.destroy();
    expect(h2Error).not.toBe('connected');
    const after = await httpsRequest(fixture, { path: '/after-h2' });
    expect(after.status).toBe(200);
    expect(processStats(fixture.pid).openFds).toBeGreaterThan(0); // still running
  });
});

describe('proxy: behind a trusted proxy', () => {
  let fixture: ProxyFixture;

  beforeAll(async () => {
    fixture = await startProxyFixture({ proxy: { trusted_proxies: ['127.0.0.0/8'] } });
  });

  afterAll(async () => {
    await fixture?.close();
  });

  it('P7: keeps the chain a trusted proxy sends and appends the peer; still one header each', async () => {
    const exchange = await fixture.raw(request('/p7/trusted', `Host: example.org:8448\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 198.51.100.2\r\nX-Forwarded-Proto: https\r\nX-Real-IP: 1.1.1.1\r\n`));
    expect(exchange.status).toBe(200);
    const raw = backendRawHeaders(fixture, '/p7/trusted');
    expect(headerValues(raw, 'x-forwarded-for')).toEqual(['203.0.113.7, 198.51.100.2, 127.0.0.1']);
    expect(headerValues(raw, 'x-forwarded-proto')).toEqual(['https']);
    expect(headerValues(raw, 'x-real-ip')).toEqual([]);
  });
});
