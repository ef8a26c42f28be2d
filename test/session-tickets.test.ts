// Session ticket keys (src/http/session-tickets.ts) on a real TLS server and client: a ticket
// resumes while its key is current or one rotation old, every resumption brings a new ticket,
// another daemon's (another secret's) tickets do not resume, and the secret handed to a
// worker leaves its environment once read.

import { afterEach, describe, expect, it } from 'vitest';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { createAuthority, issueLeaf } from './helpers/certs.js';
import { newTicketSecret, SessionTicketKeys, takeTicketSecret, TICKET_KEY_ROTATION_MS, TICKET_SECRET_ENV } from '../src/http/session-tickets.js';

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

describe('session tickets', () => {
  it('resumes with a current or one-rotation-old key, renews the ticket each time, and forgets older keys', async () => {
    let now = 10 * TICKET_KEY_ROTATION_MS + 5;
    const keys = new SessionTicketKeys(newTicketSecret(), () => now);
    const port = await serverWith(keys);
    const first = await connect(port);
    expect(first.reused).toBe(false);
    const ticket = first.tickets.at(-1)!;

    const again = await connect(port, ticket);
    expect(again).toMatchObject({ reused: true });
    expect(again.tickets.length).toBeGreaterThan(0);

    now += TICKET_KEY_ROTATION_MS; // the key that made `ticket` is now the previous one
    expect((await connect(port, ticket)).reused).toBe(true);

    now += TICKET_KEY_ROTATION_MS; // two rotations later: a full handshake
    expect((await connect(port, ticket)).reused).toBe(false);
  });

  it("does not resume another daemon's ticket (another secret)", async () => {
    const portA = await serverWith(new SessionTicketKeys(newTicketSecret()));
    const portB = await serverWith(new SessionTicketKeys(newTicketSecret()));
    const fromA = await connect(portA);
    expect((await connect(portB, fromA.tickets.at(-1))).reused).toBe(false);
    expect((await connect(portA, fromA.tickets.at(-1))).reused).toBe(true);
  });

  it('two processes with one secret resume each other\'s tickets (what the TLS workers share)', async () => {
    const secret = newTicketSecret();
    const portA = await serverWith(new SessionTicketKeys(secret));
    const portB = await serverWith(new SessionTicketKeys(Buffer.from(secret)));
    const fromA = await connect(portA);
    expect((await connect(portB, fromA.tickets.at(-1))).reused).toBe(true);
  });

  it('takes the secret out of the environment once read and ignores a malformed one', () => {
    const secret = newTicketSecret();
    const env: NodeJS.ProcessEnv = { [TICKET_SECRET_ENV]: secret.toString('hex'), OTHER: 'x' };
    expect(takeTicketSecret(env)?.equals(secret)).toBe(true);
    expect(env).toEqual({ OTHER: 'x' });
    expect(takeTicketSecret({ [TICKET_SECRET_ENV]: 'not hex' })).toBeNull();
    expect(takeTicketSecret({})).toBeNull();
  });
});
