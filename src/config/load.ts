// Loads the YAML config file, applies defaults, validates every key, and returns one typed
// Config. All problems are reported together, each naming the file, the key and the fix.

import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import yaml from 'js-yaml';
import type { Config, ListenAddress, ManualCertificate } from './types.js';
import { ObjectReader, isPlainObject, type ConfigProblem } from './reader.js';
import { parseDuration, parseSize } from './units.js';

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

const HOSTNAME_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;

export function isValidHostname(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  return name.replace(/\.$/, '').split('.').every((label) => HOSTNAME_LABEL.test(label));
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
  const items = reader.stringList(key, []);
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
    } else if (!isValidHostname(domain)) {
      reader.problem(key, `"${domain}" is not a valid DNS name`);
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
  const configDir = path.dirname(file);
  const root = new ObjectReader(raw, '', problems);

  const serverName = root.requiredString('server_name', 'the Matrix server name of your homeserver (the part after the colon in @user:example.org)').trim().toLowerCase();
  let serverHost = '';
  if (serverName) {
    const parts = splitHostPort(serverName);
    if (!parts || (!isIP(parts.host) && !isValidHostname(parts.host))) {
      root.problem('server_name', `"${serverName}" is not a host name with an optional port (example: "example.org" or "matrix.example.org:8448")`);
    } else {
      serverHost = parts.host;
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
  if (!/^https?:\/\/[^\s]+$/.test(directoryUrl)) {
    acmeReader.problem('url', `"${acmeUrlText}" is not a URL of an ACME directory (or one of: ${Object.keys(ACME_DIRECTORY_PRESETS).join(', ')})`);
  }
  const domains = acmeReader.stringList('domains', serverHost ? [serverHost] : []).map((d) => d.trim().toLowerCase());
  validateDomainList(acmeReader, 'domains', domains);
  const caBundle = acmeReader.string('ca_bundle', null);
  const renewBeforeRaw = acmeReader.has('renew_before') ? readDuration(acmeReader, 'renew_before', 0) : (acmeReader.raw('renew_before'), null);
  const eabReader = acmeReader.object('eab');
  const eabKid = eabReader.string('kid', null);
  const eabHmac = eabReader.string('hmac_key', null);
  if ((eabKid === null) !== (eabHmac === null)) {
    eabReader.problem(eabKid === null ? 'kid' : 'hmac_key', 'External Account Binding needs both kid and hmac_key (your CA shows them in its dashboard)');
  }
  eabReader.finish();
  const acmeEnabled = acmeReader.boolean('enabled', true);
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
  tlsReader.objectList('certificates', (item) => {
    const names = item.stringList('names', []).map((n) => n.trim().toLowerCase());
    for (const name of names) {
      const bare = name.startsWith('*.') ? name.slice(2) : name;
      if (!isValidHostname(bare)) item.problem('names', `"${name}" is not a valid DNS name`);
    }
    const before = certificates.length;
    addPair(item, 'certificate_path', 'private_key_path', names);
    if (certificates.length === before && !item.problems.some((p) => p.key.startsWith(item.path('')))) {
      item.problem('certificate_path', 'is required (with private_key_path)');
    }
    return null;
  });
  const defaultName = tlsReader.string('default_name', serverHost).toLowerCase();
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
  for (const entry of proxy.trustedProxies) {
    if (!isAddressOrCidr(entry)) proxyReader.problem('trusted_proxies', `"${entry}" is not an IP address or CIDR range (examples: "10.0.0.5", "10.0.0.0/8", "fd00::/8")`);
  }
  proxyReader.finish();

  const wellKnownReader = root.object('well_known');
  const wkServer = wellKnownReader.string('server', null);
  if (wkServer !== null) {
    const parts = /^[a-z][a-z0-9+.-]*:\/\//i.test(wkServer) ? null : splitHostPort(wkServer);
    if (!parts) {
      wellKnownReader.problem('server', `"${wkServer}" must be host[:port] with no scheme and no path (example: "matrix.example.org:443"); remote servers reject anything else`);
    } else if (!isIP(parts.host) && !isValidHostname(parts.host)) {
      wellKnownReader.problem('server', `"${wkServer}": "${parts.host}" is not a valid host name`);
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
  shutdownReader.finish();

  const workers = readWorkers(root);

  const controlSocket = resolvePath(stateDir, root.string('control_socket', path.join(stateDir, 'control.sock')));

  root.finish(FOREIGN_TOP_LEVEL_KEYS);

  if (serverHost && !acme.enabled && certificates.length === 0) {
    problems.push({ key: 'acme.enabled', message: 'is false and no certificate is configured: set acme.enabled: true, or give tls.certificate_path and tls.private_key_path' });
  }
  if (problems.length > 0) throw new ConfigError(file, problems);

  return {
    file, serverName, serverHost, listen, stateDir, controlSocket, acme,
    tls: { certificates, defaultName }, http, proxy, wellKnown, log, shutdown, workers,
  };
}

/**
 * Reads and validates the config file (or `alreadyRead`, its text as the primary read it, in
 * worker processes). Throws ConfigError (with every problem) or a file error. */
export function loadConfig(file: string, alreadyRead?: string): Config {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = alreadyRead ?? readFileSync(absolute, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file (copy config/fedtls.example.yaml there and edit it)'
      : code === 'EACCES' ? 'permission denied (the fedtls user must be able to read it)'
      : (error as Error).message;
    throw new ConfigError(absolute, [{ key: '', message: `cannot read the config file: ${reason}` }]);
  }
  let raw: unknown;
  try {
    raw = yaml.load(text, { filename: absolute });
  } catch (error) {
    const mark = (error as { mark?: { line: number; column: number } }).mark;
    const where = mark ? `line ${mark.line + 1}, column ${mark.column + 1}: ` : '';
    const reason = (error as { reason?: string }).reason ?? (error as Error).message;
    throw new ConfigError(absolute, [{ key: '', message: `${where}not valid YAML: ${reason}` }]);
  }
  return { ...buildConfig(raw ?? {}, absolute), text };
}
