// Step 5 of `fedtls check`: one resolved address, tested as a remote homeserver connects to
// it: TLS with the SNI it would send, the chain verified against the trusted roots, the
// certificate's names against the name it expects, dates and days left, TLS version; then
// GET /_matrix/federation/v1/version and /_matrix/key/v2/server with its Host header.
// Promises: every step yields a finding; a failed step does not hide the later ones when
// they can still tell the admin something (e.g. a backend that is down behind a bad cert).

import tls, { type TLSSocket } from 'node:tls';
import { isIP } from 'node:net';
import { describeCertificate, nameMatches } from '../certs/pem.js';
import { httpsGet, humanDuration, type HttpsGetResult } from './https-get.js';
import { describeTlsError } from './tls-errors.js';
import { checkServerKeys } from './server-keys.js';
import type { Finding } from './report.js';

/** Where peers connect, and what they expect there. */
export interface FederationTarget {
  /** Name (or IP) resolved to addresses. */
  host: string;
  port: number;
  /** The name the certificate must be valid for; also the SNI (unless an IP). */
  certName: string;
  hostHeader: string;
  /** Why peers expect certName, for messages ("the delegated host from .well-known"). */
  certNameReason: string;
}

export interface ProbeOptions {
  serverName: string;
  ca: string[] | undefined;
  timeoutMs: number;
}

const SOON_DAYS = 14;
const MAX_API_BODY = 256 * 1024;

function connect(target: FederationTarget, address: string, options: ProbeOptions): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: address, port: target.port,
      ...(isIP(target.certName) ? {} : { servername: target.certName }),
      ca: options.ca, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'],
    });
    const timer = setTimeout(() => {
      const error: NodeJS.ErrnoException = new Error(`no TLS handshake within ${options.timeoutMs / 1000} s`);
      error.code = 'ETIMEDOUT';
      socket.destroy(error);
    }, options.timeoutMs);
    socket.once('secureConnect', () => { clearTimeout(timer); resolve(socket); });
    socket.once('error', (error) => { clearTimeout(timer); reject(error); });
  });
}

function tlsFindings(socket: TLSSocket, target: FederationTarget): Finding[] {
  const findings: Finding[] = [];
  const protocol = socket.getProtocol() ?? 'unknown';
  const peerCertificate = socket.getPeerCertificate(); // before getPeerX509Certificate(), which leaves it empty
  const x509 = socket.getPeerX509Certificate();
  if (!x509) return [{ check: 'tls', status: 'fail', summary: 'the server sent no certificate', fix: 'configure a certificate on this port' }];
  const leaf = describeCertificate(x509);
  const authError = socket.authorizationError as unknown as (Error & { code?: string }) | string | null;
  const authCode = typeof authError === 'string' ? authError : authError?.code ?? (authError ? String(authError.message) : null);
  // Reported by the certificate finding below, not as a chain problem.
  const dateCodes = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID']);
  const oldProtocol = protocol === 'TLSv1' || protocol === 'TLSv1.1' || protocol === 'SSLv3';

  if (socket.authorized || (authCode && dateCodes.has(authCode))) {
    findings.push({ check: 'tls', status: oldProtocol ? 'warn' : 'ok', summary: `${protocol}, chain verified to a trusted root (issuer: ${leaf.issuer})`,
      ...(oldProtocol ? { fix: 'allow TLS 1.2 and 1.3 (fedtls does by default)' } : {}) });
  } else {
    const problem = describeTlsError({ code: authCode ?? '', message: authCode ?? 'not trusted' }, target.certName)
      ?? { summary: `the chain is not trusted (${authCode})`, fix: 'use a certificate from a public CA, served with its intermediate' };
    findings.push({ check: 'tls', status: 'fail', summary: `${protocol}; ${problem.summary}`, details: [`issuer of the certificate: ${leaf.issuer}`], fix: problem.fix });
  }

  const names = leaf.names.length ? leaf.names.join(', ') : `(none; subject ${leaf.subject})`;
  const nameError = tls.checkServerIdentity(target.certName, peerCertificate);
  const covered = !nameError && (isIP(target.certName) ? leaf.names.includes(target.certName) : leaf.names.some((n) => nameMatches(n, target.certName)));
  const now = Date.now();
  const daysLeft = Math.floor((leaf.notAfter.getTime() - now) / 86_400_000);
  const dates = `valid ${leaf.notBefore.toISOString().slice(0, 10)} to ${leaf.notAfter.toISOString().slice(0, 10)}`;
  if (!covered) {
    findings.push({
      check: 'certificate', status: 'fail', summary: `not valid for ${target.certName}: the certificate is for ${names}`,
      details: [`peers expect ${target.certName}: ${target.certNameReason}`, dates],
      fix: `get a certificate that includes ${target.certName} (with fedtls: add it to acme.domains; by hand: tls.certificates with names: [${target.certName}])`,
    });
  } else if (now > leaf.notAfter.getTime()) {
    findings.push({ check: 'certificate', status: 'fail', summary: `expired ${humanDuration(now - leaf.notAfter.getTime())} ago (${dates})`, details: [`names: ${names}`],
      fix: describeTlsError({ code: 'CERT_HAS_EXPIRED', message: '' }, target.certName)!.fix });
  } else if (now < leaf.notBefore.getTime()) {
    findings.push({ check: 'certificate', status: 'fail', summary: `not valid yet (${dates})`, details: [`names: ${names}`], fix: 'check the server\'s clock (timedatectl)' });
  } else {
    const soon = daysLeft < SOON_DAYS;
    findings.push({
      check: 'certificate', status: soon ? 'warn' : 'ok', summary: `valid for ${target.certName} (names: ${names}); expires ${leaf.notAfter.toISOString().slice(0, 10)}, ${daysLeft} days left`,
      ...(soon ? { fix: 'renewal should have happened by now: with fedtls\'s ACME, look for acme_order_failed in its log' } : {}),
    });
  }
  return findings;
}

async function apiGet(target: FederationTarget, address: string, path: string, options: ProbeOptions): Promise<HttpsGetResult> {
  return httpsGet({
    url: new URL(`https://${target.certName.includes(':') ? `[${target.certName}]` : target.certName}:${target.port}${path}`),
    address, servername: isIP(target.certName) ? undefined : target.certName, hostHeader: target.hostHeader,
    ca: options.ca, rejectUnauthorized: false, timeoutMs: options.timeoutMs, maxBodyBytes: MAX_API_BODY,
  });
}

function parseJson(body: string): unknown {
  try { return JSON.parse(body); } catch { return undefined; }
}

/** Explains a non-200 answer of the homeserver API as seen through the TLS port. */
function explainApiStatus(path: string, response: HttpsGetResult): { summary: string; fix: string } {
  const document = parseJson(response.body) as { errcode?: unknown; error?: unknown } | undefined;
  const said = document && typeof document.error === 'string' ? `: ${String(document.errcode ?? '')} ${document.error}`.trimEnd() : '';
  if (response.status === 502 || response.status === 503 || response.status === 504) {
    return {
      summary: `${path} answered ${response.status}${said}: the proxy on this port cannot get an answer from the homeserver`,
      fix: 'start the homeserver (systemctl status matrix-synapse) and check that fedtls\'s `backend` (or your proxy\'s upstream) points at its HTTP listener',
    };
  }
  if (response.status === 404) {
    return { summary: `${path} answered 404${said}`, fix: 'enable federation on the homeserver listener behind this port (Synapse: resources: - names: [client, federation])' };
  }
  return { summary: `${path} answered ${response.status}${said}`, fix: 'check the homeserver\'s log for this request' };
}

export async function probeAddress(target: FederationTarget, address: string, options: ProbeOptions): Promise<Finding[]> {
  const label = `${target.host}:${target.port} at ${address} (SNI ${isIP(target.certName) ? 'none' : target.certName}, Host: ${target.hostHeader})`;
  const findings: Finding[] = [];
  const add = (finding: Finding): void => { findings.push({ ...finding, target: label }); };

  let socket: TLSSocket;
  try {
    socket = await connect(target, address, options);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const tlsProblem = describeTlsError(error as NodeJS.ErrnoException, target.certName);
    if (tlsProblem) add({ check: 'tls', status: 'fail', summary: tlsProblem.summary, fix: tlsProblem.fix });
    else add({ check: 'tls', status: 'fail', summary: `cannot connect to ${address} port ${target.port} (${code ?? (error as Error).message})`,
      fix: `check that fedtls (listen.federation) or your TLS proxy listens on port ${target.port} of this address and that the firewall lets it through` });
    return findings;
  }
  for (const finding of tlsFindings(socket, target)) add(finding);
  socket.end();

  try {
    const version = await apiGet(target, address, '/_matrix/federation/v1/version', options);
    const document = parseJson(version.body) as { server?: { name?: unknown; version?: unknown } } | undefined;
    if (version.status === 200 && document?.server) {
      add({ check: 'version', status: 'ok', summary: `${String(document.server.name ?? 'unknown software')} ${String(document.server.version ?? '')}`.trimEnd() });
    } else if (version.status === 200) {
      add({ check: 'version', status: 'fail', summary: `/_matrix/federation/v1/version answered 200 without {"server": …}: ${version.body.slice(0, 80)}`, fix: 'make sure this port reaches the homeserver, not a web page' });
    } else {
      const explained = explainApiStatus('/_matrix/federation/v1/version', version);
      add({ check: 'version', status: 'fail', ...explained });
    }
    const keys = await apiGet(target, address, '/_matrix/key/v2/server', options);
    if (keys.status !== 200) {
      add({ check: 'keys', status: 'fail', ...explainApiStatus('/_matrix/key/v2/server', keys) });
    } else {
      const result = checkServerKeys(parseJson(keys.body), options.serverName);
      add({ check: 'keys', status: result.ok ? 'ok' : 'fail', summary: result.summary, ...(result.fix ? { fix: result.fix } : {}) });
    }
  } catch (error) {
    add({ check: 'version', status: 'fail', summary: `the HTTPS request failed: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      fix: 'check the TLS listener on this port and the homeserver behind it' });
  }
  return findings;
}
