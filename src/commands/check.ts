// `fedtls check [SERVER_NAME]`: a federation tester in one command. Validates its options
// (each bad one named with what to write instead, a URL or Matrix ID given as the server name
// too), takes the server name from the argument or from the config's server_name, runs the
// check and prints the report (text or --json).
// Exit 0 when a remote homeserver would federate (warnings allowed), 1 when not, 2 on usage errors.

import { readFileSync } from 'node:fs';
import { ConfigError, loadConfig } from '../config/load.js';
import { splitPemBlocks } from '../certs/pem.js';
import { parseResolverAddress } from '../discovery/dns.js';
import { runCheck } from '../discovery/check.js';
import { isValidServerName, parseServerName } from '../config/server-name.js';
import { formatReportJson, formatReportText } from '../discovery/report.js';

export interface CheckCommandOptions {
  serverName: string | undefined;
  configPath: string;
  json: boolean;
  ca: string | undefined;
  resolver: string | undefined;
  timeout: string | undefined;
  wellKnownPort: string | undefined;
  fallbackPort: string | undefined;
}

class UsageError extends Error {}

/**
 * What to pass instead of something that is not a server name: the URL's host[:port]
 * (https://example.org:8448/ → example.org:8448), or the server part of a Matrix ID
 * (@alice:example.org → example.org). Null when no valid name can be made of it.
 */
function serverNameFrom(text: string): string | null {
  let rest = text.trim();
  const url = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(rest);
  if (url) rest = url[1]!.replace(/^[^@]*@/, '');
  else if (/^[@!#$+]/.test(rest) && rest.includes(':')) rest = rest.slice(rest.indexOf(':') + 1);
  rest = rest.split(/[/?#]/, 1)[0]!.replace(/\.$/, '').toLowerCase();
  return rest !== '' && isValidServerName(rest) ? rest : null;
}

/** The same rule as check-config's for server_name (config/server-name.ts). */
function checkServerName(text: string): void {
  const parsed = parseServerName(text.toLowerCase());
  if (parsed.ok) return;
  const instead = serverNameFrom(text);
  throw new UsageError(`"${text}" is not a server name (a host name or IP address, optionally with :port; no scheme, no path): it ${parsed.problem}; ` +
    (instead ? `give "${instead}": fedtls check ${instead}` : `${parsed.fix}; a server name is the part after the colon in a Matrix ID (e.g. fedtls check example.org)`));
}

function port(text: string | undefined, option: string, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < 1 || value > 65535) throw new UsageError(`${option} "${text}" is not a port number (1-65535)`);
  return value;
}

function readRoots(file: string | undefined): string[] {
  if (file === undefined) return [];
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(`--ca ${file}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  const roots = splitPemBlocks(text).filter((b) => b.label === 'CERTIFICATE').map((b) => b.pem);
  if (roots.length === 0) throw new UsageError(`--ca ${file}: no PEM certificate in it (expected "-----BEGIN CERTIFICATE-----")`);
  return roots;
}

export async function checkCommand(options: CheckCommandOptions): Promise<number> {
  try {
    if (options.serverName?.trim()) checkServerName(options.serverName.trim());
    let serverName = options.serverName?.trim().toLowerCase();
    let configuredDelegation: string | null = null;
    if (!serverName) {
      try {
        const config = loadConfig(options.configPath);
        serverName = config.serverName;
        configuredDelegation = config.wellKnown.server;
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        throw new UsageError(`no SERVER_NAME given and the config cannot be used for one:\n${error.message}\n(give the name: fedtls check example.org)`);
      }
    }
    let resolver: string | null = null;
    if (options.resolver !== undefined) {
      resolver = parseResolverAddress(options.resolver);
      if (!resolver) throw new UsageError(`--resolver "${options.resolver}" is not IP:PORT (examples: 9.9.9.9, 127.0.0.1:5353, [::1]:53)`);
    }
    const timeoutSeconds = options.timeout === undefined ? 10 : Number(options.timeout);
    if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0 || timeoutSeconds > 300) throw new UsageError(`--timeout "${options.timeout}" is not a number of seconds (1-300)`);
    const report = await runCheck({
      serverName,
      resolver,
      extraRoots: readRoots(options.ca),
      timeoutMs: timeoutSeconds * 1000,
      wellKnownPort: port(options.wellKnownPort, '--well-known-port', 443),
      fallbackPort: port(options.fallbackPort, '--fallback-port', 8448),
      configuredDelegation,
    });
    process.stdout.write(options.json ? formatReportJson(report) : formatReportText(report));
    return report.ok ? 0 : 1;
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`fedtls check: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
}
