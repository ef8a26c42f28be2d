// Loads the YAML config file, applies defaults, validates every key, and returns one typed
// Config. All problems are reported together, each naming the file, the key and the fix;
// warnings (valid, but probably not what the admin meant) travel with the Config for
// check-config to print and run to log.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import yaml from 'js-yaml';
import type { Config, ListenAddress, ManualCertificate } from './types.js';
import { ObjectReader, isPlainObject, type ConfigProblem } from './reader.js';
import { formatDuration, parseDuration, parseSize } from './units.js';
import { certificateNameProblem, parseServerName } from './server-name.js';

export const LETS_ENCRYPT_PRODUCTION = 'https://acme-v02.api.letsencrypt.org/directory';
export const LETS_ENCRYPT_STAGING = 'https://acme-staging-v02.api.letsencrypt.org/directory';
export const ZEROSSL = 'https://acme.zerossl.com/v2/DV90';

/** Short names accepted for `acme.url`. */
export const ACME_DIRECTORY_PRESETS: Record<string, string> = {
  letsencrypt: LETS_ENCRYPT_PRODUCTION,
  'letsencrypt-staging': LETS_ENCRYPT_STAGING,
  zerossl: ZEROSSL,
};

export const DEFAULT_BLOCK_PATHS = ['/_synapse/admin'];

/** Lifetime of Let's Encrypt's certificates without a profile, or with "classic" (90 days). */
const LETS_ENCRYPT_CLASSIC_LIFETIME_MS = 90 * 86_400_000;

/** TimeoutStopSec of systemd/fedtls.service (test/config-checks.test.ts checks that they agree): a drain must end before it. */
export const SYSTEMD_TIMEOUT_STOP_MS = 60_000;

/** How long a federating server waits for an answer (Synapse: 60 s); proxy.response_timeout below it cuts answers peers still wait for. */
const FEDERATION_REQUEST_WAIT_MS = 60_000;

/** CAs whose directory refuses accounts without External Account Binding, with where the admin gets the kid and HMAC key. */
const EAB_REQUIRED: { host: string; ca: string; where: string }[] = [
  { host: 'acme.zerossl.com', ca: 'ZeroSSL', where: 'in the ZeroSSL dashboard (https://app.zerossl.com/developer, "EAB Credentials for ACME Clients", Generate)' },
  { host: 'dv.acme-v02.api.pki.goog', ca: 'Google Trust Services', where: 'with `gcloud publicca external-account-keys create` (the output\'s keyId is the kid, b64MacKey the hmac_key)' },
  { host: 'dv.acme-v02.test-api.pki.goog', ca: 'Google Trust Services (staging)', where: 'with `gcloud publicca external-account-keys create` (the output\'s keyId is the kid, b64MacKey the hmac_key)' },
];

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: ConfigProblem[],
  ) {
    super(
      `${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'} in the config:\n` +
        problems.map((p) => `  - ${p.key ? `${p.key}: ` : ''}${p.message}`).join('\n'),
    );
    this.name = 'ConfigError';
  }
}

/** Keys that other tools use, with what to write instead. */
const FOREIGN_TOP_LEVEL_KEYS: Record<string, string> = {
  acme_url: 'is not a fedtls key; write `acme: { url: ... }`',
  no_tls: 'is a Synapse key; fedtls always serves TLS on listen.federation',
  tls_dh_params_path: 'is a Synapse key that fedtls does not need (it uses ECDHE key exchange only); remove it',
  tls_fingerprints: 'is an obsolete Synapse key (unused since Synapse 1.0); remove it',
  listeners: 'is Synapse\'s; fedtls listens on listen.http (ACME, port 80) and listen.federation (TLS, port 8448)',
  federation_certificate_verification_whitelist: 'is a Synapse key about outgoing connections; fedtls only serves incoming ones; remove it',
  public_baseurl: 'is a Synapse key; for client discovery set well_known.client',
  serve_server_wellknown: 'is Synapse\'s; in fedtls set well_known.server (host[:port])',
};

/** Synapse's keys under `acme:` (0.99–1.36), with what fedtls uses instead. */
const SYNAPSE_ACME_KEYS: Record<string, string> = {
  reprovision_threshold: 'is Synapse\'s name; fedtls calls it acme.renew_before',
  account_key_file: 'fedtls keeps the account key in state_dir; remove this key',
  bind_addresses: 'use listen.http',
  port: 'use listen.http',
  domain: 'is Synapse\'s name; fedtls takes a list: acme.domains: [name, ...] (default: server_name)',
};

/** Whether a certificate name (possibly "*.example.org") covers a host name. */
function coversName(pattern: string, name: string): boolean {
  if (pattern === name) return true;
  const dot = name.indexOf('.');
  return pattern.startsWith('*.') && dot > 0 && name.slice(dot + 1) === pattern.slice(2);
}

/** Splits `host[:port]` / `[v6]:port`; returns null when malformed. */
export function splitHostPort(text: string): { host: string; port: number | null } | null {
  const bracketed = /^\[([0-9a-f:.]+)\](?::(\d+))?$/i.exec(text);
  if (bracketed) return { host: bracketed[1]!, port: bracketed[2] ? Number(bracketed[2]) : null };
  if (isIP(text) === 6) return { host: text, port: null };
  const plain = /^([^:\s/]+)(?::(\d+))?$/.exec(text);
  if (!plain) return null;
  return { host: plain[1]!, port: plain[2] ? Number(plain[2]) : null };
}

/** `bareHost`: the address a bare port number binds (all addresses, or loopback for metrics). */
function parseListenList(reader: ObjectReader, key: string, defaultPort: number | null, bareHost = '::'): ListenAddress[] {
  if (!reader.has(key)) {
    reader.raw(key);
    return defaultPort === null ? [] : [{ host: '::', port: defaultPort, text: `[::]:${defaultPort}`, isDefault: true }];
  }
  const items = reader.stringList(key, [], { numbers: true });
  const addresses: ListenAddress[] = [];
  for (const item of items) {
    const text = item.trim();
    if (/^\d+$/.test(text)) {
      addresses.push({ host: bareHost, port: Number(text), text: bareHost.includes(':') ? `[${bareHost}]:${text}` : `${bareHost}:${text}`, isDefault: false });
      continue;
    }
    const parts = splitHostPort(text.replace(/^\*:/, '[::]:'));
    if (!parts || parts.port === null || parts.port > 65535) {
      reader.problem(key, `"${item}" is not host:port (examples: "0.0.0.0:80", "[::]:8448", "127.0.0.1:8448", or just "8448")`);
      continue;
    }
    if (!isIP(parts.host) && parts.host !== 'localhost') {
      reader.problem(key, `"${item}": listen on an IP address (or "localhost"), not a host name`);
      continue;
    }
    addresses.push({ host: parts.host, port: parts.port, text, isDefault: false });
  }
  return addresses;
}

/** What one listen address occupies: per address family, one address or the wildcard. */
function occupies(address: ListenAddress, ownList: ListenAddress[]): { family: 4 | 6; ip: string | 'any' }[] {
  const host = address.host.toLowerCase();
  if (host === 'localhost') return [{ family: 4, ip: '127.0.0.1' }, { family: 6, ip: '::1' }];
  if (host === '0.0.0.0') return [{ family: 4, ip: 'any' }];
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host);
  if (mapped) return [{ family: 4, ip: mapped[1]! }];
  if (isIP(host) === 4) return [{ family: 4, ip: host }];
  let normal = host;
  try { normal = new URL(`http://[${host}]/`).hostname.slice(1, -1); } catch { /* a zone id ("fe80::1%eth0"): compared as written */ }
  if (normal !== '::') return [{ family: 6, ip: normal }];
  // "[::]" is dual-stack, unless its own list also has 0.0.0.0 on that port (then it binds IPv6 only: see http/listen.ts).
  const ipv6Only = ownList.some((other) => other !== address && other.host === '0.0.0.0' && other.port === address.port);
  return ipv6Only ? [{ family: 6, ip: 'any' }] : [{ family: 6, ip: 'any' }, { family: 4, ip: 'any' }];
}

/**
 * Two listeners cannot bind one address and port (the second would fail at start with "the
 * port is already in use by another program"): the same address twice, or a wildcard
 * ("[::]", "0.0.0.0", a bare port) and an address of its family on the same port, across
 * listen.http/federation/https/metrics and within one list. Port 0 (any free port) never clashes.
 */
function checkListenConflicts(reader: ObjectReader, listen: Record<'http' | 'federation' | 'https' | 'metrics', ListenAddress[]>): void {
  const entries = (Object.keys(listen) as (keyof typeof listen)[]).flatMap((key) => listen[key].map((address) => ({ key, address, spots: occupies(address, listen[key]) })));
  const named = (key: string, address: ListenAddress): string => `listen.${key} ${address.isDefault ? `(default "${address.text}")` : `"${address.text}"`}`;
  entries.forEach((second, j) => {
    if (second.address.port === 0) return;
    const clashWith = (e: (typeof entries)[number]): { family: 4 | 6; ip: string } | undefined => {
      if (e.address.port !== second.address.port) return undefined;
      for (const a of e.spots) {
        const b = second.spots.find((spot) => spot.family === a.family && (a.ip === 'any' || spot.ip === 'any' || a.ip === spot.ip));
        if (b) return { family: a.family, ip: a.ip === 'any' ? b.ip : a.ip };
      }
      return undefined;
    };
    const first = entries.slice(0, j).find((e) => clashWith(e) !== undefined);
    if (!first) return;
    const clash = clashWith(first)!;
    const same = JSON.stringify(first.spots) === JSON.stringify(second.spots);
    const wide = [first, second].find((e) => e.spots.some((a) => a.family === clash.family && a.ip === 'any'));
    const how = same ? (first.key === second.key ? 'is listed twice' : `is the same address as ${named(first.key, first.address)}`)
      : wide ? `overlaps ${named(first.key, first.address)}: "${wide.address.text}" listens on every ${clash.family === 4 ? 'IPv4' : 'IPv6'} address on port ${second.address.port}`
        : `overlaps ${named(first.key, first.address)}: both listen on ${clash.ip} port ${second.address.port}`;
    const fix = first.key === second.key ? `remove one of them from listen.${first.key}` : `give listen.${first.key} and listen.${second.key} different ports, or different specific addresses`;
    reader.problem(second.key, `"${second.address.text}" ${how}; two listeners cannot share an address and port (fedtls would fail at start with "already in use"): ${fix}`);
  });
}

/**
 * acme.renew_before: a duration with a unit. A bare number is refused: Synapse's
 * reprovision_threshold was in days, fedtls's bare durations are in seconds.
 */
function readRenewBefore(reader: ObjectReader): number | null {
  const value = reader.raw('renew_before');
  if (value === undefined || value === null) return null;
  if (typeof value === 'number' || (typeof value === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(value))) {
    const n = String(value).trim();
    reader.problem('renew_before', `${n} has no unit: write "${n}d" for ${n} days (what Synapse's reprovision_threshold meant), or "${n}h", "${n}m", "${n}s"`);
    return null;
  }
  const ms = readDuration(reader, 'renew_before', -1);
  if (ms < 0) return null;
  if (ms < 3_600_000) {
    reader.warn('renew_before', `is ${formatDuration(ms)}, under an hour: only sensible for very short-lived test certificates (such as Pebble's); public CAs issue certificates for days or months (Let's Encrypt: 90 days), so remove it (default: one third of the lifetime) or give days, e.g. "30d"`);
  }
  return ms;
}

/** A directory URL is HTTPS, except on loopback (a local test CA). */
function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return host === 'localhost' || host.endsWith('.localhost') || host === '::1' || /^127\./.test(host);
}

/** The gid that may read secrets in the config: the one fedtls runs as (when not root), else the "fedtls" group if there is one. */
function fedtlsGroupId(): number | null {
  if (typeof process.getgid === 'function' && process.getgid() !== 0) return process.getgid();
  try {
    const line = readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.startsWith('fedtls:'));
    return line ? Number(line.split(':')[2]) : null;
  } catch {
    return null;
  }
}

/** acme.eab.hmac_key is a secret: the file that holds it must not be readable by other users. */
function secretFileWarning(file: string): string | null {
  let mode: number;
  let gid: number;
  try {
    ({ mode, gid } = statSync(file));
  } catch {
    return null;
  }
  const worldReadable = (mode & 0o004) !== 0;
  const groupReadable = (mode & 0o040) !== 0 && gid !== fedtlsGroupId();
  if (!worldReadable && !groupReadable) return null;
  const octal = (mode & 0o777).toString(8).padStart(4, '0');
  return `is a secret, and ${file} can be read by ${worldReadable ? 'every user of this machine' : `the members of its group (gid ${gid})`} (mode ${octal}): ` +
    `chmod 640 ${file} && chown root:fedtls ${file} (so only root and the fedtls user read it; or chmod 600 if the file belongs to the user fedtls runs as)`;
}

function readDuration(reader: ObjectReader, key: string, fallbackMs: number): number {
  const value = reader.raw(key);
  if (value === undefined || value === null) return fallbackMs;
  const ms = typeof value === 'string' || typeof value === 'number' ? parseDuration(value) : null;
  if (ms === null) {
    reader.problem(key, `expected a duration such as "90s", "5m", "30d" (a bare number means seconds), got ${JSON.stringify(value)}`);
    return fallbackMs;
  }
  return ms;
}

function isAddressOrCidr(text: string): boolean {
  const [address = '', bits, extra] = text.split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

function readSize(reader: ObjectReader, key: string, fallback: number): number {
  const value = reader.raw(key);
  if (value === undefined || value === null) return fallback;
  const bytes = typeof value === 'string' || typeof value === 'number' ? parseSize(value) : null;
  if (bytes === null) {
    reader.problem(key, `expected a size such as "50M", "1G" or a number of bytes, got ${JSON.stringify(value)}`);
    return fallback;
  }
  return bytes;
}

function resolvePath(configDir: string, value: string): string {
  return path.resolve(configDir, value);
}

function validateDomainList(reader: ObjectReader, key: string, domains: string[]): void {
  for (const domain of domains) {
    if (domain.startsWith('*.')) {
      reader.problem(key, `"${domain}": wildcard names need the DNS-01 challenge, which fedtls does not do; list each name, or manage a wildcard certificate by hand under tls.certificates`);
    } else if (isIP(domain)) {
      reader.problem(key, `"${domain}": fedtls obtains certificates for DNS names only; use a DNS name as server_name or manage the certificate by hand`);
    } else {
      const problem = certificateNameProblem(domain);
      if (problem) reader.problem(key, `"${domain}" ${problem}`);
    }
  }
}

/** `workers`: "auto" (one per CPU, at most 8) or a whole number 1–64. */
function readWorkers(reader: ObjectReader): number {
  const value = reader.raw('workers');
  if (value === undefined || value === null || value === 'auto') return Math.min(8, Math.max(1, os.availableParallelism()));
  if (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 64) return value;
  reader.problem('workers', `expected "auto" or a whole number from 1 to 64, got ${JSON.stringify(value)}`);
  return 1;
}

/** Builds a Config from already-parsed YAML. `file` is used for messages and relative paths. */
export function buildConfig(raw: unknown, file: string): Config {
  const problems: ConfigProblem[] = [];
  if (!isPlainObject(raw)) {
    throw new ConfigError(file, [{ key: '', message: 'the file must be a YAML mapping of keys (start with "server_name: example.org")' }]);
  }
  const warnings: ConfigProblem[] = [];
  const configDir = path.dirname(file);
  const root = new ObjectReader(raw, '', problems, warnings);

  const serverName = root.requiredString('server_name', 'the Matrix server name of your homeserver (the part after the colon in @user:example.org)').trim().toLowerCase();
  let serverHost = '';
  if (serverName) {
    const parsed = parseServerName(serverName);
    if (!parsed.ok) {
      root.problem('server_name', `"${serverName}" ${parsed.problem}: ${parsed.fix}`);
    } else {
      serverHost = parsed.host;
    }
  }

  const stateDir = resolvePath(configDir, root.string('state_dir', '/var/lib/fedtls'));

  const listenReader = root.object('listen');
  const listen = {
    http: parseListenList(listenReader, 'http', 80),
    federation: parseListenList(listenReader, 'federation', 8448),
    https: parseListenList(listenReader, 'https', null),
    metrics: parseListenList(listenReader, 'metrics', null, '127.0.0.1'),
  };
  checkListenConflicts(listenReader, listen);
  listenReader.finish();

  // Backend: top-level `backend` (documented) with proxy.* tuning beside it.
  const backendText = root.string('backend', 'http://127.0.0.1:8008');
  let backend = new URL('http://127.0.0.1:8008');
  try {
    backend = new URL(backendText);
    if (backend.protocol !== 'http:' && backend.protocol !== 'https:') throw new Error('scheme');
    if (backend.pathname !== '/' || backend.search) {
      root.problem('backend', `"${backendText}": give only scheme, host and port (fedtls forwards the request path unchanged)`);
    }
  } catch {
    root.problem('backend', `"${backendText}" is not an http:// or https:// URL (example: "http://127.0.0.1:8008")`);
  }

  const acmeReader = root.object('acme');
  const acmeUrlText = acmeReader.string('url', LETS_ENCRYPT_PRODUCTION);
  const directoryUrl = ACME_DIRECTORY_PRESETS[acmeUrlText] ?? acmeUrlText;
  let directory: URL | null = null;
  try {
    if (/^https?:\/\/[^\s]+$/.test(directoryUrl)) directory = new URL(directoryUrl);
  } catch { /* reported below */ }
  if (!directory) {
    acmeReader.problem('url', `"${acmeUrlText}" is not a URL of an ACME directory (or one of: ${Object.keys(ACME_DIRECTORY_PRESETS).join(', ')})`);
  } else if (directory.protocol === 'http:' && !isLoopbackHost(directory.hostname)) {
    acmeReader.problem('url', `"${acmeUrlText}": ACME directories are served over HTTPS (RFC 8555), never plain http://; write "https://${directoryUrl.slice('http://'.length)}" (http:// is accepted only on loopback, for a local test CA)`);
  }
  const domains = acmeReader.stringList('domains', serverHost ? [serverHost] : []).map((d) => d.trim().toLowerCase());
  validateDomainList(acmeReader, 'domains', domains);
  const caBundle = acmeReader.string('ca_bundle', null);
  const renewBeforeRaw = readRenewBefore(acmeReader);
  const eabReader = acmeReader.object('eab');
  const eabKid = eabReader.string('kid', null);
  const eabHmac = eabReader.string('hmac_key', null);
  if (eabReader.has('kid') !== eabReader.has('hmac_key')) {
    eabReader.problem(eabReader.has('kid') ? 'hmac_key' : 'kid', 'External Account Binding needs both kid and hmac_key (your CA shows them in its dashboard)');
  }
  eabReader.finish();
  const acmeEnabled = acmeReader.boolean('enabled', true);
  const needsEab = directory ? EAB_REQUIRED.find((ca) => ca.host === directory.hostname.toLowerCase()) : undefined;
  if (acmeEnabled && needsEab && eabKid === null && eabHmac === null) {
    acmeReader.problem('eab', `is required by ${needsEab.ca} (acme.url: ${acmeUrlText}): it refuses to register an ACME account without External Account Binding. Set acme.eab.kid and acme.eab.hmac_key; you get them ${needsEab.where}`);
  }
  const acme = {
    enabled: acmeEnabled,
    directoryUrl,
    email: acmeReader.string('email', null),
    domains,
    caBundlePath: caBundle === null ? null : resolvePath(configDir, caBundle),
    renewBeforeMs: renewBeforeRaw,
    profile: acmeReader.string('profile', null),
    eab: eabKid !== null && eabHmac !== null ? { kid: eabKid, hmacKey: eabHmac } : null,
    deployHook: acmeReader.string('deploy_hook', null),
    keyType: acmeReader.oneOf('key_type', ['ecdsa-p256', 'rsa-2048', 'rsa-4096'] as const, 'ecdsa-p256'),
  };
  if (acme.email !== null && !/^[^@\s]+@[^@\s]+$/.test(acme.email)) {
    acmeReader.problem('email', `"${acme.email}" is not an e-mail address`);
  }
  if (acme.enabled && acme.domains.length === 0 && serverHost) {
    acmeReader.problem('domains', 'is empty; list at least one name, or set acme.enabled: false');
  }
  // Where the lifetime is known in advance (Let's Encrypt's classic 90-day certificates), say
  // now what the ACME manager would say after the first issuance (see acme/timing.ts).
  const letsEncrypt = directory !== null && /^acme(-staging)?-v02\.api\.letsencrypt\.org$/i.test(directory.hostname);
  if (acme.enabled && letsEncrypt && (acme.profile === null || acme.profile === 'classic') && acme.renewBeforeMs !== null && acme.renewBeforeMs > 0.9 * LETS_ENCRYPT_CLASSIC_LIFETIME_MS) {
    acmeReader.warn('renew_before', `is ${formatDuration(acme.renewBeforeMs)}, too long for Let's Encrypt's 90-day certificates: every new certificate would be due at once, so fedtls will ignore it and renew with one third of the lifetime left (30 days before expiry). Use e.g. "30d", or remove it`);
  }
  acmeReader.finish(SYNAPSE_ACME_KEYS);

  // Certificates managed by hand: the Synapse-style flat pair, tls.certificate_path/private_key_path,
  // and tls.certificates (a list).
  const tlsReader = root.object('tls');
  const certificates: ManualCertificate[] = [];
  const addPair = (reader: ObjectReader, certKey: string, keyKey: string, names: string[]): void => {
    const cert = reader.string(certKey, null);
    const key = reader.string(keyKey, null);
    if (cert === null && key === null) return;
    if (cert === null || key === null) {
      reader.problem(cert === null ? certKey : keyKey, `is missing: ${certKey} and ${keyKey} go together`);
      return;
    }
    certificates.push({ certificatePath: resolvePath(configDir, cert), privateKeyPath: resolvePath(configDir, key), names });
  };
  addPair(root, 'tls_certificate_path', 'tls_private_key_path', []);
  addPair(tlsReader, 'certificate_path', 'private_key_path', []);
  const flatKeys = ['tls_certificate_path', 'tls_private_key_path'].filter((key) => root.has(key));
  const nestedKeys = ['certificate_path', 'private_key_path'].filter((key) => tlsReader.has(key));
  if (flatKeys.length > 0 && nestedKeys.length > 0) {
    // Two spellings of one setting: neither is taken over the other, the admin says which.
    root.problem(flatKeys[0]!, `and tls.${nestedKeys[0]} are both set: they are two names for the same certificate pair (the flat tls_* names are Synapse's), and fedtls does not guess which one you mean. Keep one spelling and remove the other (for a second certificate, use tls.certificates)`);
  }
  tlsReader.objectList('certificates', (item) => {
    const names = item.stringList('names', []).map((n) => n.trim().toLowerCase());
    for (const name of names) {
      const problem = certificateNameProblem(name);
      if (problem) item.problem('names', `"${name}" ${problem}`);
    }
    const before = certificates.length;
    addPair(item, 'certificate_path', 'private_key_path', names);
    if (certificates.length === before && !item.problems.some((p) => p.key.startsWith(item.path('')))) {
      item.problem('certificate_path', 'is required (with private_key_path)');
    }
    return null;
  });
  const defaultName = tlsReader.string('default_name', serverHost).toLowerCase();
  // Statically knowable only when every certificate source lists its names (a pair without
  // `names` serves whatever its certificate holds: check-config looks into the files).
  const listedNames = [...(acmeEnabled ? domains : []), ...certificates.flatMap((c) => c.names)];
  if (tlsReader.has('default_name') && defaultName && certificates.every((c) => c.names.length > 0) && !listedNames.some((name) => coversName(name, defaultName))) {
    tlsReader.warn('default_name', `"${defaultName}" is not a name any certificate source serves (${listedNames.join(', ') || 'none'}): clients without SNI or with an unknown name get whichever certificate loads first. Name one of those, or remove tls.default_name (default: server_name)`);
  }
  tlsReader.finish();

  const httpReader = root.object('http');
  const http = { redirectToHttps: httpReader.boolean('redirect_to_https', false) };
  httpReader.finish();

  const proxyReader = root.object('proxy');
  const proxy = {
    backend,
    maxBodySize: readSize(proxyReader, 'max_body_size', 50 * 1024 * 1024),
    connectTimeoutMs: readDuration(proxyReader, 'connect_timeout', 10_000),
    responseTimeoutMs: readDuration(proxyReader, 'response_timeout', 180_000),
    headerTimeoutMs: readDuration(proxyReader, 'header_timeout', 20_000),
    idleTimeoutMs: readDuration(proxyReader, 'idle_timeout', 75_000),
    blockPaths: proxyReader.stringList('block_paths', DEFAULT_BLOCK_PATHS),
    trustedProxies: proxyReader.stringList('trusted_proxies', []),
    maxBackendSockets: proxyReader.integer('max_backend_sockets', 256, 1, 65536),
  };
  for (const blocked of proxy.blockPaths) {
    if (!blocked.startsWith('/')) proxyReader.problem('block_paths', `"${blocked}" must start with "/"`);
  }
  for (const [key, ms] of [['connect_timeout', proxy.connectTimeoutMs], ['response_timeout', proxy.responseTimeoutMs], ['header_timeout', proxy.headerTimeoutMs], ['idle_timeout', proxy.idleTimeoutMs]] as const) {
    if (ms < 100) proxyReader.problem(key, `must be at least 100ms (got ${ms} ms)`);
  }
  if (proxy.responseTimeoutMs >= 100 && proxy.responseTimeoutMs < FEDERATION_REQUEST_WAIT_MS) {
    proxyReader.warn('response_timeout', `is ${formatDuration(proxy.responseTimeoutMs)}: federating servers wait up to 60 s for an answer (and clients long-poll /sync for 30 s and more), so answers the homeserver takes longer for become 504s here while the peer still waits; use at least 60s (default 180s)`);
  }
  for (const entry of proxy.trustedProxies) {
    if (!isAddressOrCidr(entry)) proxyReader.problem('trusted_proxies', `"${entry}" is not an IP address or CIDR range (examples: "10.0.0.5", "10.0.0.0/8", "fd00::/8")`);
  }
  proxyReader.finish();

  const wellKnownReader = root.object('well_known');
  const wkServer = wellKnownReader.string('server', null);
  if (wkServer !== null) {
    const parsed = /^[a-z][a-z0-9+.-]*:\/\/|\//i.test(wkServer) ? null : parseServerName(wkServer);
    if (!parsed) {
      wellKnownReader.problem('server', `"${wkServer}" must be host[:port] with no scheme and no path (example: "matrix.example.org:443"); remote servers reject anything else`);
    } else if (!parsed.ok) {
      wellKnownReader.problem('server', `"${wkServer}" ${parsed.problem}, so remote servers refuse or misread it: ${parsed.fix}`);
    }
  }
  const wkClientRaw = wellKnownReader.raw('client');
  let wkClient: Record<string, unknown> | null = null;
  if (wkClientRaw !== undefined && wkClientRaw !== null) {
    if (!isPlainObject(wkClientRaw)) {
      wellKnownReader.problem('client', 'expected a mapping such as { "m.homeserver": { "base_url": "https://matrix.example.org" } }');
    } else {
      wkClient = wkClientRaw;
      const homeserver = wkClientRaw['m.homeserver'];
      if (!isPlainObject(homeserver) || typeof homeserver['base_url'] !== 'string' || !/^https?:\/\//.test(homeserver['base_url'])) {
        wellKnownReader.problem('client', 'needs "m.homeserver": { "base_url": "https://..." }');
      }
    }
  }
  const wellKnown = {
    server: wkServer,
    serverHost: wkServer ? splitHostPort(wkServer)?.host.toLowerCase() ?? null : null,
    client: wkClient,
    httpsOtherPaths: wellKnownReader.oneOf('https_other_paths', ['proxy', 'not_found'] as const, 'proxy'),
  };
  wellKnownReader.finish();

  const logReader = root.object('log');
  const log = {
    level: logReader.oneOf('level', ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const, 'info'),
    format: logReader.oneOf('format', ['json', 'pretty'] as const, 'json'),
  };
  logReader.finish();

  const shutdownReader = root.object('shutdown');
  const shutdown = { drainTimeoutMs: readDuration(shutdownReader, 'drain_timeout', 30_000) };
  if (shutdown.drainTimeoutMs >= SYSTEMD_TIMEOUT_STOP_MS) {
    shutdownReader.warn('drain_timeout', `is ${formatDuration(shutdown.drainTimeoutMs)}, not below the systemd unit's TimeoutStopSec=${SYSTEMD_TIMEOUT_STOP_MS / 1000}s (systemd/fedtls.service): systemd kills fedtls before the drain ends. Lower it, or raise TimeoutStopSec above it with "systemctl edit fedtls" ([Service] TimeoutStopSec=...); under Docker, give docker stop --time / --stop-timeout more than it`);
  }
  shutdownReader.finish();

  const workers = readWorkers(root);

  const controlSocket = resolvePath(stateDir, root.string('control_socket', path.join(stateDir, 'control.sock')));

  root.finish(FOREIGN_TOP_LEVEL_KEYS);

  if (serverHost && !acme.enabled && certificates.length === 0) {
    problems.push({ key: 'acme.enabled', message: 'is false and no certificate is configured: set acme.enabled: true, or give tls.certificate_path and tls.private_key_path' });
  }
  // acme.domains without server_name is right only for a delegated host (well_known.server,
  // or delegation fedtls does not see); an edited example config that still says example.org is not.
  const delegatedHost = wellKnown.serverHost;
  if (acme.enabled && serverHost && !isIP(serverHost) && domains.length > 0 && !domains.includes(serverHost)
      && !(delegatedHost && domains.includes(delegatedHost)) && !certificates.some((c) => c.names.some((name) => coversName(name, serverHost)))) {
    warnings.push({ key: 'acme.domains', message: `[${domains.join(', ')}] does not include server_name ${serverHost}, and well_known.server does not delegate to any of these names: fedtls would obtain a certificate for names that may not be yours, and peers connecting to ${serverHost} would refuse the handshake. Add ${serverHost} to acme.domains, or remove acme.domains (its default is server_name). Ignore this only if ${serverHost} is delegated to one of these names elsewhere (a .well-known file served by another web server, or SRV records)` });
  }
  if (problems.length > 0) throw new ConfigError(file, problems);

  return {
    file, serverName, serverHost, listen, stateDir, controlSocket, acme,
    tls: { certificates, defaultName }, http, proxy, wellKnown, log, shutdown, workers, warnings,
  };
}

/** Characters that look like a space (or like nothing) but are not one to YAML, by name. */
const INVISIBLE_CHARACTERS: Record<string, string> = {
  '\u00a0': 'a non-breaking space (U+00A0)',
  '\u2007': 'a figure space (U+2007)',
  '\u202f': 'a narrow non-breaking space (U+202F)',
  '\u2000': 'an en quad (U+2000)', '\u2001': 'an em quad (U+2001)', '\u2002': 'an en space (U+2002)', '\u2003': 'an em space (U+2003)',
  '\u2004': 'a three-per-em space (U+2004)', '\u2005': 'a four-per-em space (U+2005)', '\u2006': 'a six-per-em space (U+2006)',
  '\u2008': 'a punctuation space (U+2008)', '\u2009': 'a thin space (U+2009)', '\u200a': 'a hair space (U+200A)',
  '\u200b': 'a zero-width space (U+200B)', '\u200c': 'a zero-width non-joiner (U+200C)', '\u200d': 'a zero-width joiner (U+200D)',
  '\u2060': 'a word joiner (U+2060)', '\ufeff': 'a zero-width no-break space / byte-order mark (U+FEFF)', '\u3000': 'an ideographic space (U+3000)',
};

/** One problem per line holding an invisible character outside a comment: where, which, and after what. */
export function invisibleCharacterProblems(text: string): ConfigProblem[] {
  const pattern = new RegExp(`[${Object.keys(INVISIBLE_CHARACTERS).join('')}]`, 'u');
  const found: ConfigProblem[] = [];
  text.split(/\r?\n/).forEach((line, index) => {
    const match = pattern.exec(line);
    if (!match || (index === 0 && match.index === 0 && match[0] === '\ufeff')) return;
    const comment = /(^|\s)#/.exec(line);
    if (comment && comment.index < match.index) return;
    const before = line.slice(0, match.index).trim();
    const where = before ? ` after "${before.length > 40 ? `…${before.slice(-40)}` : before}"` : ' at the start of the line';
    found.push({ key: '', message: `line ${index + 1}, column ${match.index + 1}: ${INVISIBLE_CHARACTERS[match[0]]}${where}, which looks like a space (or like nothing) but is not one to YAML. Delete it and type an ordinary space (such characters come from copying text out of web pages or word processors, or from AltGr+Space)` });
  });
  return found;
}

/** A failure to read the config file, as one sentence an admin can act on. */
function readFailure(absolute: string, error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case 'ENOENT': return 'no such file (copy config/fedtls.example.yaml there and edit it)';
    case 'EACCES': return 'permission denied (the fedtls user must be able to read it)';
    case 'EISDIR': {
      let yamlFiles: string[] = [];
      try { yamlFiles = readdirSync(absolute).filter((name) => /\.ya?ml$/i.test(name)).sort(); } catch { /* the hint below stands alone */ }
      const example = path.join(absolute, yamlFiles[0] ?? 'fedtls.yaml');
      return `this is a directory, not the config file: pass the YAML file itself, e.g. --config ${example}${yamlFiles.length > 1 ? ` (YAML files there: ${yamlFiles.join(', ')})` : ''}`;
    }
    default: return error.message;
  }
}

/**
 * The config file's text. UTF-8, with or without a byte-order mark; UTF-16 with a byte-order
 * mark (Windows editors' "Unicode") is read as well. UTF-16 without one, or other binary
 * content, is refused saying what it is and how to save it.
 */
export function readConfigText(file: string): string {
  const absolute = path.resolve(file);
  let bytes: Buffer;
  try {
    bytes = readFileSync(absolute);
  } catch (error) {
    throw new ConfigError(absolute, [{ key: '', message: `cannot read the config file: ${readFailure(absolute, error as NodeJS.ErrnoException)}` }]);
  }
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return bytes.subarray(2).toString('utf16le');
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return Buffer.from(bytes.subarray(2, bytes.length - (bytes.length % 2))).swap16().toString('utf16le');
  const text = bytes.toString('utf8');
  const nul = bytes.indexOf(0);
  if (nul !== -1) {
    const zeros = bytes.filter((byte) => byte === 0).length;
    const order = nul % 2 === 0 ? 'UTF-16BE' : 'UTF-16LE';
    const message = zeros >= bytes.length / 3
      ? `the file is UTF-16 (every other byte is zero) without a byte-order mark; save it as UTF-8 (in Notepad: Save as → Encoding: UTF-8; or: iconv -f ${order} -t UTF-8 ${absolute} > fedtls.yaml.utf8 && mv fedtls.yaml.utf8 ${absolute})`
      : `the file contains NUL bytes (the first at byte ${nul}): it is not a text file; give the YAML config file`;
    throw new ConfigError(absolute, [{ key: '', message }]);
  }
  return text.replace(/^\ufeff/, '');
}

/**
 * Reads and validates the config file (or `alreadyRead`, its text as the primary read it, in
 * worker processes). Throws ConfigError (with every problem) or a file error. */
export function loadConfig(file: string, alreadyRead?: string): Config {
  const absolute = path.resolve(file);
  const text = alreadyRead ?? readConfigText(absolute);
  let raw: unknown;
  try {
    raw = yaml.load(text, { filename: absolute });
  } catch (error) {
    const mark = (error as { mark?: { line: number; column: number } }).mark;
    const where = mark ? `line ${mark.line + 1}, column ${mark.column + 1}: ` : '';
    const reason = (error as { reason?: string }).reason ?? (error as Error).message;
    // An invisible character is the likelier cause than what the parser tripped over later: it goes first.
    throw new ConfigError(absolute, [...invisibleCharacterProblems(text), { key: '', message: `${where}not valid YAML: ${reason}` }]);
  }
  let config: Config;
  try {
    config = buildConfig(raw ?? {}, absolute);
  } catch (error) {
    const invisible = error instanceof ConfigError ? invisibleCharacterProblems(text) : [];
    if (invisible.length === 0) throw error;
    // A document that is not a mapping because of such a character: the character is the whole story.
    const notMapping = !isPlainObject(raw) && raw !== undefined && raw !== null;
    throw new ConfigError(absolute, notMapping ? invisible : [...invisible, ...(error as ConfigError).problems]);
  }
  if (config.acme.eab && alreadyRead === undefined) {
    const secret = secretFileWarning(absolute);
    if (secret) config.warnings.push({ key: 'acme.eab.hmac_key', message: secret });
  }
  return { ...config, text };
}
