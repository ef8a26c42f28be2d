// The Matrix spec's grammar of server names ("Server names", Appendices), as one rule for
// every place fedtls reads one: server_name and well_known.server in the config, the name
// `fedtls check` is given, and the m.server it fetches. A host is a DNS name, an IPv4 literal
// or an IPv6 literal in brackets; the optional port is 1–65535, in decimal without leading
// zeros. Promises: what this accepts, peers accept and read the same way; what it refuses
// comes with a phrase that says what is wrong and what to write instead. Also the rule for
// names on a certificate (acme.domains, tls.certificates[].names): DNS names, no port.

import { isIP } from 'node:net';

const HOSTNAME_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;

/**
 * A DNS host name: letter/digit/hyphen labels, and a last label that is not all digits (no TLD
 * is; "12345" or "1.2.3" is not a name). One trailing dot (the DNS root) is tolerated here,
 * for Host headers; server names and certificate names refuse it (see below).
 */
export function isValidHostname(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.replace(/\.$/, '').split('.');
  return labels.every((label) => HOSTNAME_LABEL.test(label)) && !/^\d+$/.test(labels[labels.length - 1]!);
}

export interface ServerNameProblem {
  /** What is wrong, as a phrase that follows the quoted value: `"x" ${problem}`. */
  problem: string;
  /** What to write instead, as an imperative ("write \"[::1]\""). */
  fix: string;
}

export type ServerNameParse =
  | { ok: true; host: string; port: number | null; kind: 'dns' | 'ipv4' | 'ipv6' }
  | ({ ok: false } & ServerNameProblem);

const EXAMPLES = 'write a host name, an IPv4 address or a bracketed IPv6 address, with an optional :port (examples: "example.org", "matrix.example.org:8448", "[2001:db8::1]:8448")';

function fail(problem: string, fix: string): { ok: false } & ServerNameProblem {
  return { ok: false, problem, fix };
}

function portProblem(portText: string, host: string): ServerNameProblem | null {
  if (portText === '') return { problem: 'ends with ":" but no port', fix: `write "${host}", or give the port after the colon` };
  if (!/^\d+$/.test(portText)) return { problem: `has ":${portText}" where a decimal port number belongs`, fix: `write "${host}" or "${host}:8448"` };
  const port = Number(portText);
  if (/^0\d/.test(portText) && port >= 1 && port <= 65535) return { problem: `has the port "${portText}" with a leading zero, which the spec does not allow and peers do not all read as ${port}`, fix: `write "${host}:${port}"` };
  if (port < 1 || port > 65535) return { problem: `has the port ${portText}, out of range (ports go from 1 to 65535)`, fix: `write "${host}" for the default port 8448, or "${host}:<port>" with a port from 1 to 65535` };
  return null;
}

/** Parses `host[:port]` by the spec's grammar. `text` is taken as written (no trimming). */
export function parseServerName(text: string): ServerNameParse {
  if (text === '') return fail('is empty', 'give a host name such as "example.org"');
  if (/\s/.test(text)) return fail('contains white space', `write it without, e.g. "${text.replace(/\s+/g, '')}"`);
  if (text.startsWith('[')) {
    const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(text);
    if (!bracketed) return fail('is not a server name', EXAMPLES);
    const address = bracketed[1]!;
    if (isIP(address) !== 6 || !/^[0-9a-f:.]+$/i.test(address)) return fail(`has "[${address}]", which is not an IPv6 address (zone ids such as %eth0 are not allowed)`, 'write e.g. "[2001:db8::1]" or "[2001:db8::1]:8448"');
    const port = bracketed[2];
    if (port !== undefined) {
      const bad = portProblem(port, `[${address}]`);
      if (bad) return { ok: false, ...bad };
    }
    return { ok: true, host: address, port: port === undefined ? null : Number(port), kind: 'ipv6' };
  }
  if (isIP(text) === 6) return fail('is an IPv6 address without brackets, which peers read as a host and a port', `write "[${text}]" (with a port: "[${text}]:8448")`);
  if (text.split(':').length > 2) {
    const last = text.lastIndexOf(':');
    const head = text.slice(0, last);
    if (isIP(head) === 6) return fail('is an IPv6 address and a port without brackets', `write "[${head}]:${text.slice(last + 1)}"`);
    return fail('has more than one ":"', EXAMPLES);
  }
  const [host = '', portText] = text.split(':') as [string, string | undefined];
  if (host === '') {
    const port = Number(portText);
    const shown = portText !== undefined && /^\d+$/.test(portText) && port >= 1 && port <= 65535 ? String(port) : '8448';
    return fail('has no host before the port', `write the host name in front, e.g. "matrix.example.org:${shown}"`);
  }
  if (portText !== undefined) {
    const bad = portProblem(portText, host.replace(/\.+$/, ''));
    if (bad) return { ok: false, ...bad };
  }
  const port = portText === undefined ? null : Number(portText);
  if (host.endsWith('.')) {
    return fail('ends the host name with a dot, which peers and CAs do not take for the same name', `drop the dot: write "${host.replace(/\.+$/, '')}${portText === undefined ? '' : `:${portText}`}"`);
  }
  if (isIP(host) === 4) return { ok: true, host, port, kind: 'ipv4' };
  if (!isValidHostname(host)) return fail(`is not a host name ("${host}" is not letters, digits and hyphens in labels separated by dots, ending in a label that is not all digits)`, EXAMPLES);
  return { ok: true, host, port, kind: 'dns' };
}

/** Whether peers accept `text` as a server name (or an m.server / well_known.server value). */
export function isValidServerName(text: string): boolean {
  return parseServerName(text).ok;
}

/**
 * Why `name` cannot be a name on a certificate (acme.domains, tls.certificates[].names), as a
 * phrase that follows the quoted name; null when it can. A leading "*." is allowed here
 * (whether a wildcard is acceptable is the caller's matter); an IP address is refused as
 * not a DNS name (callers with a better word for it check it first).
 */
export function certificateNameProblem(name: string): string | null {
  if (name === '') return 'is empty: give a DNS name such as "matrix.example.org"';
  const wildcard = name.startsWith('*.') ? '*.' : '';
  const bare = name.slice(wildcard.length);
  const withPort = /^(.*):(\d*)$/.exec(bare);
  if (withPort && !withPort[1]!.includes(':') && withPort[1] !== '') {
    return `has a port, but a name here has no port (a certificate is for a name, whatever the port): write "${wildcard}${withPort[1]!.replace(/\.+$/, '')}"`;
  }
  if (bare.endsWith('.') && isValidHostname(bare)) {
    return `ends with a dot, which CAs refuse: drop the dot and write "${wildcard}${bare.replace(/\.+$/, '')}"`;
  }
  if (!isValidHostname(bare)) return 'is not a valid DNS name (letters, digits and hyphens, in labels separated by dots, e.g. "matrix.example.org")';
  return null;
}
