// One bounded HTTPS GET for `fedtls check`: a fresh connection (no pooling, no redirects
// followed here), a time limit for the whole exchange, a body size limit, and the choice
// of trusted roots and of where to connect (a given address, or a name through our DNS).
// Rejects with the Node error (its `code` says what failed: ECONNREFUSED, CERT_HAS_EXPIRED…).

import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import type { LookupFunction } from './dns.js';

export interface HttpsGetOptions {
  url: URL;
  /** Connect to this IP instead of resolving the URL's host (the URL's host stays the TLS name). */
  address?: string;
  /** TLS server name (SNI and certificate check); undefined = no SNI (IP literals). */
  servername: string | undefined;
  /** Host header; default the URL's host. */
  hostHeader?: string;
  ca: string[] | undefined;
  rejectUnauthorized: boolean;
  lookup?: LookupFunction;
  timeoutMs: number;
  maxBodyBytes: number;
}

export interface HttpsGetResult {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** The body was cut at maxBodyBytes. */
  truncated: boolean;
}

export function httpsGet(options: HttpsGetOptions): Promise<HttpsGetResult> {
  const { url } = options;
  return new Promise((resolve, reject) => {
    const request = https.request({
      host: options.address ?? url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port) || 443,
      path: `${url.pathname}${url.search}`,
      method: 'GET',
      headers: { Host: options.hostHeader ?? url.host, 'User-Agent': 'fedtls-check', Accept: 'application/json' },
      ...(options.servername ? { servername: options.servername } : {}),
      ca: options.ca,
      rejectUnauthorized: options.rejectUnauthorized,
      ...(options.lookup && !options.address ? { lookup: options.lookup } : {}),
      agent: false,
    }, (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let truncated = false;
      response.on('data', (chunk: Buffer) => {
        if (truncated) return;
        size += chunk.length;
        if (size > options.maxBodyBytes) {
          truncated = true;
          chunks.push(chunk.subarray(0, chunk.length - (size - options.maxBodyBytes)));
          response.destroy();
          finish();
          return;
        }
        chunks.push(chunk);
      });
      const finish = (): void => {
        clearTimeout(timer);
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString('utf8'), truncated });
      };
      response.on('end', finish);
      response.on('error', (error) => { clearTimeout(timer); reject(error); });
    });
    const timer = setTimeout(() => {
      const error: NodeJS.ErrnoException = new Error(`no answer within ${options.timeoutMs / 1000} s`);
      error.code = 'ETIMEDOUT';
      request.destroy(error);
    }, options.timeoutMs);
    request.on('error', (error) => { clearTimeout(timer); reject(error); });
    request.end();
  });
}

/** "1 h", "2 d", "45 s": durations for people. */
export function humanDuration(ms: number): string {
  const seconds = Math.round(Math.abs(ms) / 1000);
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86_400)} d`;
}
