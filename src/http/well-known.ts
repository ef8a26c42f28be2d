// The Matrix discovery files, answered by fedtls itself in front of another handler:
// `/.well-known/matrix/server` ({"m.server": well_known.server}) and
// `/.well-known/matrix/client` (the well_known.client object). Promises: a configured file is
// always answered here with 200 application/json (never a redirect, never the backend),
// cacheable for an hour (errors: no-store, like every error fedtls makes); every response
// on these paths (errors, HEAD, OPTIONS preflight) carries `Access-Control-Allow-Origin: *`,
// so browser clients on any origin can read them; wrong methods get 405 JSON, a "#"
// fragment in the target 400 JSON. A file that is not configured, and every other path,
// goes to `next` unchanged (the homeserver may serve it, e.g. /.well-known/matrix/support).

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { WellKnownConfig } from '../config/types.js';
import { sendMatrixError } from './matrix-errors.js';

export const WELL_KNOWN_SERVER_PATH = '/.well-known/matrix/server';
export const WELL_KNOWN_CLIENT_PATH = '/.well-known/matrix/client';
const WELL_KNOWN_MATRIX_PREFIX = '/.well-known/matrix/';

/** Remote servers and clients cache the files this long; a changed delegation spreads within the hour. */
const CACHE_CONTROL = 'public, max-age=3600';

/** CORS headers for every response on a discovery path (Matrix client-server API, "Web browser clients"). */
export const DISCOVERY_CORS_HEADERS: Readonly<Record<string, string>> = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, HEAD, OPTIONS',
  'Access-Control-Allow-Headers': 'X-Requested-With, Content-Type, Authorization',
};

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** The JSON bodies fedtls serves, by path; built once from the config. */
export function wellKnownDocuments(config: WellKnownConfig): Map<string, string> {
  const documents = new Map<string, string>();
  if (config.server !== null) documents.set(WELL_KNOWN_SERVER_PATH, JSON.stringify({ 'm.server': config.server }));
  if (config.client !== null) documents.set(WELL_KNOWN_CLIENT_PATH, JSON.stringify(config.client));
  return documents;
}

export function isWellKnownMatrixPath(pathOnly: string): boolean {
  return pathOnly.startsWith(WELL_KNOWN_MATRIX_PREFIX);
}

/** Answers the configured discovery files; passes everything else to `next`. */
export function createWellKnownHandler(config: WellKnownConfig, next: Handler): Handler {
  const documents = wellKnownDocuments(config);
  if (documents.size === 0) return next;
  return (req, res) => {
    const url = req.url ?? '';
    if (!url.startsWith(WELL_KNOWN_MATRIX_PREFIX)) {
      next(req, res);
      return;
    }
    const end = url.search(/[?#]/);
    const pathOnly = end === -1 ? url : url.slice(0, end);
    const body = documents.get(pathOnly);
    if (body === undefined) {
      next(req, res);
      return;
    }
    if (url.includes('#')) {
      req.resume();
      sendMatrixError(res, 400, 'M_UNRECOGNIZED', `Bad request-target: a URL fragment ("#…") is never sent in an HTTP request; request ${pathOnly}`, { ...DISCOVERY_CORS_HEADERS });
      return;
    }
    switch (req.method) {
      case 'GET':
      case 'HEAD':
        res.writeHead(200, {
          'Content-Type': 'application/json',
          'Content-Length': Buffer.byteLength(body),
          'Cache-Control': CACHE_CONTROL,
          ...DISCOVERY_CORS_HEADERS,
        });
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      case 'OPTIONS':
        res.writeHead(204, { ...DISCOVERY_CORS_HEADERS, 'Access-Control-Max-Age': '86400', 'Cache-Control': CACHE_CONTROL, 'Content-Length': '0' });
        res.end();
        return;
      default:
        req.resume();
        sendMatrixError(res, 405, 'M_UNRECOGNIZED', `${req.method} is not allowed on ${pathOnly}; use GET`, { Allow: 'GET, HEAD, OPTIONS', ...DISCOVERY_CORS_HEADERS });
    }
  };
}

/**
 * What the extra HTTPS listener does with everything fedtls does not serve itself when
 * `well_known.https_other_paths: not_found`: 404 in the Matrix error format (with CORS on
 * discovery paths, so a browser sees the 404 rather than a CORS failure).
 */
export function createNotFoundHandler(): Handler {
  return (req, res) => {
    const pathOnly = (req.url ?? '').split('?', 1)[0]!;
    req.resume();
    sendMatrixError(res, 404, 'M_NOT_FOUND', 'Not found', isWellKnownMatrixPath(pathOnly) ? { ...DISCOVERY_CORS_HEADERS } : {});
  };
}
