// The admin-facing cause of a failed validation is read from what the CA said, not only from
// the problem type: a DNS lookup failure reported as a 'connection' problem (Pebble, Boulder)
// must not be blamed on port 80.

import { describe, expect, it } from 'vitest';
import { explainFailure } from '../src/acme/explain.js';

const DIRECTORY = 'https://127.0.0.1:14000/dir';

function validationProblem(type: string, detail: string): Parameters<typeof explainFailure>[1][number] {
  return { url: `${DIRECTORY}/chal/1`, status: 200, type, detail, retryAfterMs: null, identifier: 'hs.fedtls.test' };
}

describe('failure explanations', () => {
  it('A5: a DNS lookup failure reported as a connection problem is explained as DNS', () => {
    const detail = 'Get "http://hs.fedtls.test:5002/.well-known/acme-challenge/x": error occurred while resolving URL "http://hs.fedtls.test:5002/": "read udp 127.0.0.1:45390->127.0.0.1:18053: read: connection refused"';
    const explained = explainFailure(new Error('validation failed'), [validationProblem('connection', detail)], ['hs.fedtls.test'], DIRECTORY);
    expect(explained.cause).toMatch(/could not look up hs\.fedtls\.test in DNS/);
    expect(explained.cause).not.toMatch(/port 80/);
  });

  it('A5: a refused connection to port 80 is explained as port 80', () => {
    const detail = 'Get "http://hs.fedtls.test/.well-known/acme-challenge/x": dial tcp 127.0.0.2:80: connect: connection refused';
    const explained = explainFailure(new Error('validation failed'), [validationProblem('connection', detail)], ['hs.fedtls.test'], DIRECTORY);
    expect(explained.cause).toMatch(/could not connect to port 80 of hs\.fedtls\.test/);
  });
});
