// What the CA's directory offers beyond what acme-client uses: ACME Renewal Information
// (RFC 9773, `renewalInfo`) and certificate profiles (`meta.profiles`). Owns reading the
// directory, computing a certificate's ARI CertID, asking renewalInfo for its suggested
// window, and checking `acme.profile` against what the CA offers. All HTTP goes through
// acme-client's configured HTTP client (same CA roots, timeouts, recorded problems).

import { X509Certificate } from 'node:crypto';
import acme from 'acme-client';
import forge from 'node-forge';
import { parseRetryAfter } from './ca-problems.js';

export interface DirectoryInfo {
  url: string;
  /** ARI endpoint, when the CA supports it. */
  renewalInfo: string | null;
  /** Profile name → description, when the CA offers profiles; null when it does not. */
  profiles: Record<string, string> | null;
}

async function getJson(url: string): Promise<{ status: number; data: unknown; headers: Record<string, unknown> }> {
  const response = await acme.axios.request({ url, method: 'get', validateStatus: null, headers: { Accept: 'application/json' } });
  return { status: response.status, data: response.data as unknown, headers: response.headers as Record<string, unknown> };
}

export async function readDirectory(url: string): Promise<DirectoryInfo> {
  const { status, data } = await getJson(url);
  if (status !== 200 || typeof data !== 'object' || data === null) {
    throw new Error(`the ACME directory ${url} answered HTTP ${status}${typeof data === 'object' ? '' : ' without JSON'}; check acme.url`);
  }
  const dir = data as { renewalInfo?: unknown; meta?: { profiles?: unknown } };
  const profiles = dir.meta?.profiles;
  return {
    url,
    renewalInfo: typeof dir.renewalInfo === 'string' ? dir.renewalInfo : null,
    profiles: typeof profiles === 'object' && profiles !== null ? Object.fromEntries(Object.entries(profiles).map(([k, v]) => [k, String(v)])) : null,
  };
}

export class UnknownProfileError extends Error {
  constructor(profile: string, directory: DirectoryInfo) {
    const offered = Object.entries(directory.profiles ?? {}).map(([name, about]) => `${name} (${about})`).join(', ');
    super(`acme.profile "${profile}" is not offered by ${directory.url}; it offers: ${offered}`);
    this.name = 'UnknownProfileError';
  }
}

/** The `profile` field for new orders: the configured one if the CA offers profiles, else none. */
export function orderProfile(profile: string | null, directory: DirectoryInfo): string | null {
  if (profile === null || directory.profiles === null) return null;
  if (!(profile in directory.profiles)) throw new UnknownProfileError(profile, directory);
  return profile;
}

function base64url(bytes: Buffer): string {
  return bytes.toString('base64url');
}

/** The keyIdentifier of the Authority Key Identifier extension (OID 2.5.29.35), or null. */
function authorityKeyIdentifier(der: Buffer): Buffer | null {
  const cert = forge.asn1.fromDer(forge.util.createBuffer(der.toString('binary')));
  const tbs = (cert.value as forge.asn1.Asn1[])[0]!;
  const explicitExtensions = (tbs.value as forge.asn1.Asn1[]).find((node) => node.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && node.type === 3);
  if (!explicitExtensions) return null;
  const extensions = (explicitExtensions.value as forge.asn1.Asn1[])[0]!.value as forge.asn1.Asn1[];
  for (const extension of extensions) {
    const parts = extension.value as forge.asn1.Asn1[];
    if (forge.asn1.derToOid(parts[0]!.value as string) !== '2.5.29.35') continue;
    const octets = parts[parts.length - 1]!.value as string;
    const aki = forge.asn1.fromDer(forge.util.createBuffer(octets));
    const keyId = (aki.value as forge.asn1.Asn1[]).find((node) => node.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && node.type === 0);
    return keyId ? Buffer.from(keyId.value as string, 'binary') : null;
  }
  return null;
}

/** RFC 9773 CertID: base64url(AKI keyIdentifier) "." base64url(serial number DER content octets). */
export function ariCertId(certificatePem: string): string {
  const cert = new X509Certificate(certificatePem);
  const aki = authorityKeyIdentifier(cert.raw);
  if (!aki) throw new Error('the certificate has no Authority Key Identifier, so it has no ARI CertID');
  let hex = cert.serialNumber.toLowerCase();
  if (hex.length % 2 === 1) hex = `0${hex}`;
  let serial = Buffer.from(hex, 'hex');
  if (serial[0]! & 0x80) serial = Buffer.concat([Buffer.from([0]), serial]); // DER INTEGER stays positive
  return `${base64url(aki)}.${base64url(serial)}`;
}

export interface RenewalInfo {
  start: Date;
  end: Date;
  /** Retry-After of the answer (ms), if given. */
  retryAfterMs: number | null;
  explanationUrl: string | null;
}

/** GET <renewalInfo>/<certID>. Throws with a clear message when the answer is unusable. */
export async function fetchRenewalInfo(renewalInfoUrl: string, certId: string): Promise<RenewalInfo> {
  const url = `${renewalInfoUrl.replace(/\/+$/, '')}/${certId}`;
  const { status, data, headers } = await getJson(url);
  if (status !== 200) throw new Error(`renewalInfo ${url} answered HTTP ${status}`);
  const window = (data as { suggestedWindow?: { start?: unknown; end?: unknown } } | null)?.suggestedWindow;
  const start = new Date(String(window?.start));
  const end = new Date(String(window?.end));
  if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime()) || end < start) {
    throw new Error(`renewalInfo ${url} sent no valid suggestedWindow`);
  }
  const explanation = (data as { explanationURL?: unknown }).explanationURL;
  return { start, end, retryAfterMs: parseRetryAfter(headers['retry-after']), explanationUrl: typeof explanation === 'string' ? explanation : null };
}
