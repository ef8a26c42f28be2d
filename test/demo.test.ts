// The README's first command: `npm run demo` (fedtls demo) must run through on a fresh
// machine with Debian's pebble: real Pebble, real daemon (with its TLS workers), real request.

import { describe, expect, it } from 'vitest';
import { runCli } from './helpers/daemon.js';

describe('fedtls demo', () => {
  it('obtains a certificate from Pebble and proxies a federation request with it, then exits 0', async () => {
    const demo = runCli(['demo']);
    const code = await demo.exited;
    const output = demo.stdout() + demo.stderr();
    expect(output).toContain('TLS verified');
    expect(output).toMatch(/HTTP 200 \{"server":\{"name":"fedtls-demo-homeserver"/);
    expect(output).toContain('Demo finished');
    expect(code).toBe(0);
  }, 90_000);
});
