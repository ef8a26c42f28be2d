// TLS session tickets. Owns: the ticket keys of every TLS listener of this daemon (one secret,
// made by the process that starts the daemon and handed to its TLS workers, so a peer resumes
// on whichever worker it reaches), their hourly rotation, and a fresh ticket after every
// resumed handshake.
// Why: Node's own ticket handling issues no new ticket when a TLS 1.3 session resumes, and
// OpenSSL-based clients (Synapse's Twisted, curl, wrk) do not offer a ticket twice, so every
// other reconnection was a full handshake (certificate, signature, more CPU on both ends).
// Answering "renew" from the ticket-key callback makes OpenSSL send a new ticket each time,
// as nginx, Caddy and HAProxy do. The callback is a Node internal (SecureContext's
// enableTicketKeyCallback); where it is missing, Node's default tickets stay in place.

import { hkdfSync, randomBytes } from 'node:crypto';
import type { SecureContext } from 'node:tls';

/** The environment variable carrying the ticket secret from the primary to its TLS workers. */
export const TICKET_SECRET_ENV = 'FEDTLS_TICKET_SECRET';

/** A key encrypts new tickets for an hour; tickets made with the previous hour's key still resume. */
export const TICKET_KEY_ROTATION_MS = 60 * 60 * 1000;

// What OpenSSL's ticket-key callback returns (RFC 5077 style callback, via Node).
const TICKET_UNKNOWN = 0;
const TICKET_OK = 1;
const TICKET_OK_RENEW = 2;

interface TicketKey {
  name: Buffer; // 16 bytes, sent in the clear inside the ticket
  hmacKey: Buffer; // 32 bytes
  aesKey: Buffer; // 16 bytes
}

type TicketKeyAnswer = [number, Buffer, Buffer] | [number, Buffer, Buffer, Buffer, Buffer];
const UNUSED_HMAC_KEY = Buffer.alloc(32);
const UNUSED_AES_KEY = Buffer.alloc(16);

interface NativeContextWithTicketCallback {
  enableTicketKeyCallback?: () => void;
  onticketkeycallback?: (name: Buffer, iv: Buffer, encrypt: boolean) => TicketKeyAnswer;
}

/** A new ticket secret (the process that starts the daemon makes one per start). */
export function newTicketSecret(): Buffer {
  return randomBytes(32);
}

/**
 * The secret the primary handed to this TLS worker, removed from the environment once read
 * (nothing this process starts needs it); null when there is none.
 */
export function takeTicketSecret(env: NodeJS.ProcessEnv = process.env): Buffer | null {
  const given = env[TICKET_SECRET_ENV];
  delete env[TICKET_SECRET_ENV];
  return given && /^[0-9a-f]{64}$/.test(given) ? Buffer.from(given, 'hex') : null;
}

export class SessionTicketKeys {
  private readonly keys = new Map<number, TicketKey>();
  private readonly armed = new WeakSet<object>();

  constructor(private readonly secret: Buffer, private readonly now: () => number = Date.now) {}

  /**
   * Makes handshakes that start with `context` use these keys, with a new ticket after each
   * resumption. Returns false when this Node lacks the callback (its own tickets then apply).
   */
  arm(context: SecureContext): boolean {
    const native = (context as unknown as { context?: NativeContextWithTicketCallback }).context;
    if (!native || typeof native.enableTicketKeyCallback !== 'function') return false;
    if (this.armed.has(native)) return true;
    native.onticketkeycallback = (name, _iv, encrypt) => this.answer(name, encrypt);
    native.enableTicketKeyCallback();
    this.armed.add(native);
    return true;
  }

  private answer(name: Buffer, encrypt: boolean): TicketKeyAnswer {
    const epoch = Math.floor(this.now() / TICKET_KEY_ROTATION_MS);
    if (encrypt) {
      const key = this.keyFor(epoch);
      return [TICKET_OK, key.hmacKey, key.aesKey, key.name, randomBytes(16)];
    }
    for (const candidate of [epoch, epoch - 1]) {
      const key = this.keyFor(candidate);
      if (key.name.equals(name)) return [TICKET_OK_RENEW, key.hmacKey, key.aesKey];
    }
    // Node reads both keys whatever the answer (a missing one aborts the process): give unused ones.
    return [TICKET_UNKNOWN, UNUSED_HMAC_KEY, UNUSED_AES_KEY];
  }

  private keyFor(epoch: number): TicketKey {
    let key = this.keys.get(epoch);
    if (!key) {
      const material = Buffer.from(hkdfSync('sha256', this.secret, Buffer.alloc(0), `fedtls session ticket key ${epoch}`, 64));
      key = { hmacKey: material.subarray(0, 32), aesKey: material.subarray(32, 48), name: material.subarray(48, 64) };
      for (const old of this.keys.keys()) if (old < epoch - 1) this.keys.delete(old);
      this.keys.set(epoch, key);
    }
    return key;
  }
}
