// Session ticket keys (src/http/session-tickets.ts) on a real TLS server and client: a ticket
// resumes while its key is current or one rotation old, every resumption brings a new ticket,
// another daemon's tickets do not resume, a worker's copy of the keys (as sent over the cluster
// channel) resumes the primary's tickets, malformed keys are refused, and clients are told the
// session lifetime.

import { afterEach, describe, expect, it } from 'vitest';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import forge from 'node-forge';
import { createAuthority, issueLeaf } from './helpers/certs.js';
import { SESSION_LIFETIME_SECONDS, SessionTicketKeys } from '../src/http/session-tickets.js';

const authority = createAuthority('Tickets Test CA');
const leaf = issueLeaf(authority, { names: ['tickets.fedtls.test'] });
const servers: tls.Server[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

async function serverWith(keys: SessionTicketKeys): Promise<number> {
  const server = tls.createServer({ cert: leaf.certPem, key: leaf.keyPem }, (socket) => socket.end('ok'));
  keys.arm((server as unknown as { _sharedCreds: tls.SecureContext })._sharedCreds);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function connect(port: number, session?: Buffer): Promise<{ reused: boolean; tickets: Buffer[] }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'tickets.fedtls.test', rejectUnauthorized: false, ...(session ? { session } : {}) });
    const tickets: Buffer[] = [];
    let reused = false;
    socket.on('session', (ticket: Buffer) => { tickets.push(ticket); });
    socket.on('secureConnect', () => { reused = socket.isSessionReused(); });
    socket.on('data', () => undefined);
    socket.on('close', () => resolve({ reused, tickets }));
    socket.on('error', reject);
  });
}

/**
 * The ticket lifetime the server announced: field [9] (tlsext_tick_lifetime_hint) of OpenSSL's
 * SSL_SESSION encoding, which Node 22+ wraps in a header of its own (the DER SEQUENCE starts at
 * `30 82 <length> 02 01 01`).
 */
function ticketLifetimeOf(session: Buffer): number {
  let start = 0;
  while (!(session[start] === 0x30 && session[start + 1] === 0x82 && session.subarray(start + 4, start + 7).equals(Buffer.from([2, 1, 1])))) {
    start += 1;
    if (start >= session.length) throw new Error('no SSL_SESSION in the session buffer');
  }
  const fields = forge.asn1.fromDer(forge.util.createBuffer(session.subarray(start).toString('binary')), { parseAllBytes: false }).value as forge.asn1.Asn1[];
  const timeout = fields.find((field) => field.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && field.type === 9)!;
  const integer = (timeout.value as forge.asn1.Asn1[])[0]!.value as string;
  return [...integer].reduce((n, c) => n * 256 + c.charCodeAt(0), 0);
}

describe('session tickets', () => {
  it('resumes with the current or the previous key, renews the ticket each time, and forgets older keys', async () => {
    const keys = SessionTicketKeys.generate();
    const port = await serverWith(keys);
    const first = await connect(port);
    expect(first.reused).toBe(false);
    const ticket = first.tickets.at(-1)!;

    const again = await connect(port, ticket);
    expect(again).toMatchObject({ reused: true });
    expect(again.tickets.length).toBeGreaterThan(0);

    keys.rotate(); // the key that made `ticket` is now the previous one
    expect((await connect(port, ticket)).reused).toBe(true);

    keys.rotate(); // two rotations later: a full handshake
    expect((await connect(port, ticket)).reused).toBe(false);
  });

  it('keeps at most two keys and overwrites the one it drops', () => {
    const keys = SessionTicketKeys.generate();
    const [first] = keys.export();
    const firstInMemory = (keys as unknown as { keys: { material: Buffer }[] }).keys[0]!.material;
    keys.rotate();
    expect(keys.export()).toHaveLength(2);
    expect(keys.export()[1]).toBe(first);
    keys.rotate();
    expect(keys.export()).toHaveLength(2);
    expect(keys.export()).not.toContain(first);
    expect(firstInMemory.toString('hex')).not.toBe(first); // the buffer OpenSSL was given is overwritten
  });

  it("does not resume another daemon's ticket (other keys)", async () => {
    const portA = await serverWith(SessionTicketKeys.generate());
    const portB = await serverWith(SessionTicketKeys.generate());
    const fromA = await connect(portA);
    expect((await connect(portB, fromA.tickets.at(-1))).reused).toBe(false);
    expect((await connect(portA, fromA.tickets.at(-1))).reused).toBe(true);
  });

  it("a worker's copy of the primary's keys resumes its tickets, before and after a rotation; malformed keys are refused", async () => {
    const primary = SessionTicketKeys.generate();
    const worker = SessionTicketKeys.fromExported(primary.export())!;
    const portA = await serverWith(SessionTicketKeys.fromExported(primary.export())!);
    const portB = await serverWith(worker);
    const fromA = await connect(portA);
    expect((await connect(portB, fromA.tickets.at(-1))).reused).toBe(true);
    primary.rotate();
    expect(worker.replace(primary.export())).toBe(true);
    expect((await connect(portB, fromA.tickets.at(-1))).reused).toBe(true); // still the previous key

    for (const bad of [undefined, 'ab', [], ['zz'.repeat(64)], ['ab'], ['00'.repeat(64), '00'.repeat(64), '00'.repeat(64)], [42]]) {
      expect(SessionTicketKeys.fromExported(bad)).toBeNull();
      expect(worker.replace(bad)).toBe(false);
    }
    expect((await connect(portB, fromA.tickets.at(-1))).reused).toBe(true); // nothing changed by refused keys
  });

  it(`tells clients a session lasts ${SESSION_LIFETIME_SECONDS} s (not OpenSSL's default 7200 s), on a fresh and on a resumed session`, async () => {
    const port = await serverWith(SessionTicketKeys.generate());
    const first = await connect(port);
    expect(ticketLifetimeOf(first.tickets.at(-1)!)).toBe(SESSION_LIFETIME_SECONDS);
    const resumed = await connect(port, first.tickets.at(-1));
    expect(resumed.reused).toBe(true);
    expect(ticketLifetimeOf(resumed.tickets.at(-1)!)).toBe(SESSION_LIFETIME_SECONDS);
  });
});
