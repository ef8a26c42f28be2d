// The port-80 request handler: answers ACME HTTP-01 challenges from the live challenge table
// and nothing else from it. The challenge path is always answered directly (never
// redirected), before and after a certificate exists; other requests get 404, or a redirect
// to https:// when `http.redirect_to_https` is on (only for host names fedtls serves, so the
// port-80 listener is never an open redirect). Never reads files from disk.
// Logs: a request for a token fedtls does not know is logged at info only while a validation
// is pending (then it is what an admin needs to see: another ACME client may be validating
// the same name, or something rewrites the path); otherwise it is a scanner on a public port (debug).

import type { IncomingMessage, ServerResponse } from 'node:http';
import { ChallengeTable } from '../acme/challenges.js';
import type { Logger } from '../ops/log.js';
import { splitHostPort } from '../config/load.js';
import { isValidHostname } from '../config/server-name.js';

const CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

export interface ChallengeHandlerOptions {
  challenges: ChallengeTable;
  redirectToHttps: boolean;
  /** Host names a redirect may point at (lower-case); others get 404. */
  redirectHosts: ReadonlySet<string>;
  log: Logger;
}

function sendText(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', ...headers });
  res.end(body);
}

export function createChallengeHandler(options: ChallengeHandlerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { challenges, log } = options;
  return (req, res) => {
    const target = req.url ?? '';
    const pathOnly = target.split('?', 1)[0]!;
    if (pathOnly.startsWith(CHALLENGE_PREFIX)) {
      const token = pathOnly.slice(CHALLENGE_PREFIX.length);
      const keyAuthorization = (req.method === 'GET' || req.method === 'HEAD') && ChallengeTable.isWellFormedToken(token)
        ? challenges.lookup(token) : null;
      if (keyAuthorization === null) {
        const pending = challenges.size;
        const fields = { event: 'acme_challenge_unknown', path: pathOnly.slice(0, 200), method: req.method, peer: req.socket.remoteAddress, pending };
        if (pending > 0) log.info(fields, `request for an unknown ACME challenge token while ${pending} validation(s) are pending: if this is the CA, another ACME client is validating this name too, or something in front of fedtls changes the path`);
        else log.debug(fields, 'request for an unknown ACME challenge token (no validation pending)');
        sendText(res, 404, 'Not found\n');
        return;
      }
      log.info({ event: 'acme_challenge_served', name: challenges.nameFor(token), peer: req.socket.remoteAddress }, 'answered an ACME challenge');
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(keyAuthorization), 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : keyAuthorization);
      return;
    }
    if (options.redirectToHttps && (req.method === 'GET' || req.method === 'HEAD')) {
      const host = splitHostPort(req.headers.host ?? '');
      if (host && isValidHostname(host.host) && options.redirectHosts.has(host.host.toLowerCase().replace(/\.$/, '')) && target.startsWith('/')) {
        sendText(res, 301, 'Moved\n', { Location: `https://${host.host}${target}` });
        return;
      }
    }
    sendText(res, 404, 'Not found\n');
  };
}
