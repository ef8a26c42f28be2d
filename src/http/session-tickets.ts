// TLS session tickets. Owns: the keys that encrypt this daemon's session tickets, how long a
// ticket resumes, a fresh ticket after every resumed handshake, and ending a handshake whose
// ClientHello offers more tickets than any client does.
// Keys: random, made in memory by the process that owns the daemon (the single process, or
// the primary with TLS workers), never written anywhere. A new key encrypts tickets every
// hour; the previous hour's key still decrypts; older keys are overwritten and dropped, so a
// key stolen later cannot open tickets (TLS 1.2 session secrets) more than two hours old. The
// primary hands its keys to each TLS worker over the cluster channel (never the environment,
// which /proc/<pid>/environ keeps for the process's life) at start and at each rotation, so a
// session resumes on whichever worker a reconnection reaches, with or without SNI.
// Why a callback: Node's own ticket handling issues no new ticket when a TLS 1.3 session
// resumes, and OpenSSL-based clients (Synapse's Twisted, curl, wrk) offer a ticket once, so
// every other reconnection was a full handshake. Answering "renew" from the ticket-key callback
// makes OpenSSL send a new ticket each time, as nginx, Caddy and HAProxy do. The callback is a
// Node internal (SecureContext's enableTicketKeyCallback); where it is missing, Node's default
// tickets stay in place and `ticketKeyCallbackAvailable()` says so.

import { randomBytes, randomFillSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import tls, { type SecureContext } from 'node:tls';

/** A new key encrypts tickets every hour; tickets made with the previous hour's key still resume. */
export const TICKET_KEY_ROTATION_MS = 60 * 60 * 1000;

/** For tests only: a shorter rotation interval in milliseconds (not an admin setting). */
export const TICKET_KEY_ROTATION_ENV = 'FEDTLS_TEST_TICKET_KEY_ROTATION_MS';

/** How long a session resumes (OpenSSL's default is 2 hours), also sent to clients as the ticket lifetime. */
export const SESSION_LIFETIME_SECONDS = 60 * 60;

/**
 * More tickets than any client offers in one ClientHello (real ones offer one). OpenSSL asks
 * the callback once per offered ticket, each a call into JavaScript, so a hello with thousands
 * of junk tickets would cost several full handshakes; past this many, the handshake is ended.
 */
export const MAX_TICKETS_PER_HELLO = 8;

/**
 * Tickets are counted per ClientHello: the count restarts when the TLS listener hands a new
 * connection's ClientHello to OpenSSL (`clientHelloArrives`, just before OpenSSL reads it), when
 * a ticket is issued (a handshake got through), and after a pause this long between lookups
 * (OpenSSL goes through one hello's tickets microseconds apart). Bytes that reach OpenSSL
 * straight from the socket (a second ClientHello after a HelloRetryRequest, the rest of a hello
 * over 64 KB) are counted on top of what came before, so they are capped too.
 */
const LOOKUP_PAUSE_MS = 1;

// What OpenSSL's ticket-key callback returns (RFC 5077 style callback, via Node).
const TICKET_UNKNOWN = 0;
const TICKET_OK = 1;
const TICKET_OK_RENEW = 2;

const NAME_BYTES = 16;
const HMAC_KEY_BYTES = 32;
const AES_KEY_BYTES = 16;
const KEY_BYTES = NAME_BYTES + HMAC_KEY_BYTES + AES_KEY_BYTES;

interface TicketKey {
  material: Buffer; // name | hmac key | aes key; overwritten when dropped
  name: Buffer; // sent in the clear inside the ticket
  hmacKey: Buffer;
  aesKey: Buffer;
}

// Anything but an array makes Node fail the handshake (an internal_error alert, checked on Node 20, 22 and 24).
type TicketKeyAnswer = [number, Buffer, Buffer] | [number, Buffer, Buffer, Buffer, Buffer] | undefined;
const END_HANDSHAKE = undefined;
const UNUSED_HMAC_KEY = Buffer.alloc(HMAC_KEY_BYTES);
const UNUSED_AES_KEY = Buffer.alloc(AES_KEY_BYTES);

interface NativeContext {
  enableTicketKeyCallback?: () => void;
  onticketkeycallback?: (name: Buffer, iv: Buffer, encrypt: boolean) => TicketKeyAnswer;
  setSessionTimeout?: (seconds: number) => void;
}

function nativeOf(context: SecureContext): NativeContext | undefined {
  return (context as unknown as { context?: NativeContext }).context;
}

/** Whether this Node lets fedtls choose the ticket keys (otherwise each process uses Node's own). */
export function ticketKeyCallbackAvailable(): boolean {
  return typeof nativeOf(tls.createSecureContext())?.enableTicketKeyCallback === 'function';
}

function keyFrom(material: Buffer): TicketKey {
  return {
    material,
    name: material.subarray(0, NAME_BYTES),
    hmacKey: material.subarray(NAME_BYTES, NAME_BYTES + HMAC_KEY_BYTES),
    aesKey: material.subarray(NAME_BYTES + HMAC_KEY_BYTES, KEY_BYTES),
  };
}

/** The keys as the primary sends them to a worker: hex, newest first. */
export type ExportedTicketKeys = string[];

export class SessionTicketKeys {
  /** Newest first: [0] encrypts, every one decrypts. At most the current and the previous key. */
  private keys: TicketKey[] = [];
  private readonly armed = new WeakSet<object>();
  /** Tickets looked up since the count last restarted (see LOOKUP_PAUSE_MS). */
  private lookupsThisHello = 0;
  private lastLookupAt = 0;

  /** Keys of their own (the single process or the primary), starting with one fresh key. */
  static generate(): SessionTicketKeys {
    const keys = new SessionTicketKeys();
    keys.rotate();
    return keys;
  }

  /** A worker's copy of the primary's keys; null when `exported` is not a valid set. */
  static fromExported(exported: unknown): SessionTicketKeys | null {
    const keys = new SessionTicketKeys();
    return keys.replace(exported) ? keys : null;
  }

  /** A new random key encrypts from now on; the one before it still decrypts; older ones are wiped. */
  rotate(): void {
    this.keep([keyFrom(randomBytes(KEY_BYTES)), ...this.keys.slice(0, 1)]);
  }

  /** Takes the primary's keys (a worker, at start and at each rotation). False, changing nothing, if they are malformed. */
  replace(exported: unknown): boolean {
    if (!Array.isArray(exported) || exported.length === 0 || exported.length > 2) return false;
    if (!exported.every((hex) => typeof hex === 'string' && hex.length === KEY_BYTES * 2 && /^[0-9a-f]+$/.test(hex))) return false;
    this.keep((exported as string[]).map((hex) => keyFrom(Buffer.from(hex, 'hex'))));
    return true;
  }

  /** The keys for a worker (over the cluster channel only). */
  export(): ExportedTicketKeys {
    return this.keys.map((key) => key.material.toString('hex'));
  }

  /** Rotates every `intervalMs`, calling `onRotate` after each; returns the function that stops it. */
  startRotation(onRotate: () => void = () => undefined, intervalMs = TICKET_KEY_ROTATION_MS): () => void {
    const timer = setInterval(() => {
      this.rotate();
      onRotate();
    }, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  private keep(next: TicketKey[]): void {
    for (const old of this.keys) if (!next.includes(old)) randomFillSync(old.material);
    this.keys = next;
  }

  /**
   * Makes handshakes that start with `context` use these keys and the session lifetime, with a
   * new ticket after each resumption. False when this Node lacks the callback (its own tickets
   * then apply).
   */
  arm(context: SecureContext): boolean {
    const native = nativeOf(context);
    if (!native || typeof native.enableTicketKeyCallback !== 'function') return false;
    if (this.armed.has(native)) return true;
    native.setSessionTimeout?.(SESSION_LIFETIME_SECONDS);
    native.onticketkeycallback = (name, _iv, encrypt) => this.answer(name, encrypt);
    native.enableTicketKeyCallback();
    this.armed.add(native);
    return true;
  }

  /** A new connection's ClientHello goes to OpenSSL now: its tickets are counted from zero. */
  clientHelloArrives(): void {
    this.lookupsThisHello = 0;
  }

  private answer(name: Buffer, encrypt: boolean): TicketKeyAnswer {
    if (encrypt) {
      this.lookupsThisHello = 0;
      const key = this.keys[0]!;
      return [TICKET_OK, key.hmacKey, key.aesKey, key.name, randomBytes(16)];
    }
    const now = performance.now();
    this.lookupsThisHello = now - this.lastLookupAt < LOOKUP_PAUSE_MS ? this.lookupsThisHello + 1 : 1;
    this.lastLookupAt = now;
    if (this.lookupsThisHello > MAX_TICKETS_PER_HELLO) return END_HANDSHAKE;
    const key = this.keys.find((candidate) => candidate.name.equals(name));
    if (key) return [TICKET_OK_RENEW, key.hmacKey, key.aesKey];
    // Node reads both keys whatever the answer (a missing one aborts the process): give unused ones.
    return [TICKET_UNKNOWN, UNUSED_HMAC_KEY, UNUSED_AES_KEY];
  }
}
