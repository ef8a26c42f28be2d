// What check-config (and run) say about configs that are wrong in ways a fresh admin hits:
// renew_before without a unit or under an hour, two listeners on one address, numbers where
// text is meant, timeouts that fight federation or systemd, EAB and ACME URL mistakes, a
// readable EAB secret, both spellings of the certificate pair, a default_name nobody serves,
// acme.domains without server_name, config files that are not UTF-8 YAML at all, and
// --config without a file.
// Everything through the real CLI; errors exit 1, warnings exit 0 and are printed.

import { describe, expect, it } from 'vitest';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runCli, startDaemon, tempDir, writeConfig } from './helpers/daemon.js';
import { startBackend } from './helpers/backend.js';
import { writeManualDaemonConfig } from './helpers/manual-daemon.js';
import { SYSTEMD_TIMEOUT_STOP_MS } from '../src/config/load.js';

async function checkConfig(file: string): Promise<{ code: number | null; output: string }> {
  const run = runCli(['check-config', '--config', file]);
  const code = await run.exited;
  return { code, output: run.stdout() + run.stderr() };
}

/** check-config on a config written from `config`; `name` is the file name. */
async function check(config: Record<string, unknown>, name = 'fedtls.yaml'): Promise<{ code: number | null; output: string; file: string }> {
  const file = writeConfig(tempDir(), config, name);
  return { ...(await checkConfig(file)), file };
}

const warnings = (output: string): string[] => output.split('\n').filter((l) => l.startsWith('  warning: ')).map((l) => l.slice('  warning: '.length));

describe('acme.renew_before', () => {
  it('a bare number is refused with a request for a unit (Synapse\'s reprovision_threshold was in days)', async () => {
    for (const value of [30, '30']) {
      const { code, output } = await check({ server_name: 'example.org', acme: { renew_before: value } });
      expect(code).toBe(1);
      expect(output).toContain('acme.renew_before: 30 has no unit: write "30d" for 30 days (what Synapse\'s reprovision_threshold meant), or "30h", "30m", "30s"');
    }
    const { code } = await check({ server_name: 'example.org', acme: { renew_before: '30d' } });
    expect(code).toBe(0);
  });

  it('under an hour: a warning from check-config and from run, saying it suits only short-lived test certificates', async () => {
    const { code, output } = await check({ server_name: 'example.org', acme: { renew_before: '45m' } });
    expect(code).toBe(0);
    expect(output).toMatch(/valid \(1 warning\)/);
    expect(warnings(output)).toEqual([expect.stringMatching(/^acme\.renew_before: is 45m, under an hour: only sensible for very short-lived test certificates/)]);
    expect(warnings((await check({ server_name: 'example.org', acme: { renew_before: '1h' } })).output)).toEqual([]);

    const backend = await startBackend();
    const { configFile } = await writeManualDaemonConfig(tempDir(), 'warn.fedtls.test', backend.url, { acme: { enabled: false, renew_before: '45s' }, workers: 1 });
    const daemon = await startDaemon(configFile);
    try {
      const line = daemon.logs.find((l) => l.event === 'config_warning');
      expect(line).toMatchObject({ level: 40, setting: 'acme.renew_before', file: configFile });
      expect(String(line!.msg)).toContain(`${configFile}: acme.renew_before: is 45s, under an hour`);
    } finally {
      await daemon.stop();
      await backend.close();
    }
  });

  it('longer than Let\'s Encrypt\'s 90-day certificates allow (90d): a warning already in check-config that it will be ignored', async () => {
    const { code, output } = await check({ server_name: 'example.org', acme: { renew_before: '90d' } });
    expect(code).toBe(0);
    expect(warnings(output)).toEqual([expect.stringMatching(/^acme\.renew_before: is 90d, too long for Let's Encrypt's 90-day certificates: every new certificate would be due at once, so fedtls will ignore it/)]);
    expect(warnings((await check({ server_name: 'example.org', acme: { renew_before: '30d' } })).output)).toEqual([]);
    // Another CA: its lifetime is known only from its certificates (the daemon warns then).
    expect(warnings((await check({ server_name: 'example.org', acme: { url: 'https://127.0.0.1:14000/dir', renew_before: '90d' } })).output)).toEqual([]);
  });
});

describe('listeners on one address', () => {
  it('the same address for listen.http and listen.federation is refused by check-config and by run, naming both keys and the address', async () => {
    const config = { server_name: 'example.org', listen: { http: ['127.0.0.1:24748'], federation: ['127.0.0.1:24748'] }, acme: { enabled: false }, tls_certificate_path: '/nonexistent/c.pem', tls_private_key_path: '/nonexistent/k.pem' };
    const { code, output, file } = await check(config);
    expect(code).toBe(1);
    expect(output).toContain('listen.federation: "127.0.0.1:24748" is the same address as listen.http "127.0.0.1:24748"; two listeners cannot share an address and port');
    const run = runCli(['run', '--config', file]);
    expect(await run.exited).toBe(1);
    expect(run.logs.some((l) => l.event === 'listening' || l.event === 'listen_failed')).toBe(false);
    expect(run.logs.at(-1)).toMatchObject({ event: 'config_invalid' });
    expect(String(run.logs.at(-1)!.msg)).toContain('listen.federation: "127.0.0.1:24748" is the same address as listen.http');
  });

  it('a wildcard and an address of its family on one port, duplicates in one list, listen.https and listen.metrics too', async () => {
    const { code, output } = await check({
      server_name: 'example.org',
      listen: { http: ['0.0.0.0:8080', '[::1]:9000'], https: ['127.0.0.1:8080', '[::]:9000'], metrics: ['8448', '127.0.0.1:9100', '127.0.0.1:9100'] },
    });
    expect(code).toBe(1);
    expect(output).toContain('listen.https: "127.0.0.1:8080" overlaps listen.http "0.0.0.0:8080": "0.0.0.0:8080" listens on every IPv4 address on port 8080');
    expect(output).toContain('listen.https: "[::]:9000" overlaps listen.http "[::1]:9000": "[::]:9000" listens on every IPv6 address on port 9000');
    // A bare metrics port binds 127.0.0.1, which the default federation listener [::]:8448 (dual-stack) covers.
    expect(output).toContain('listen.metrics: "127.0.0.1:8448" overlaps listen.federation (default "[::]:8448"): "[::]:8448" listens on every IPv4 address on port 8448');
    expect(output).toContain('listen.metrics: "127.0.0.1:9100" is listed twice');
    expect(output).toMatch(/4 problems in the config/);
  });

  it('still accepted: [::] beside 0.0.0.0 in one list (IPv6-only then), port 0 anywhere, different ports or addresses', async () => {
    const { code, output } = await check({
      server_name: 'example.org',
      listen: { http: ['[::]:80', '0.0.0.0:80'], federation: ['127.0.0.1:0', '127.0.0.2:8448', '127.0.0.3:8448'], https: ['127.0.0.1:0'], metrics: ['9464'] },
    });
    expect(output).toContain('valid');
    expect(code).toBe(0);
  });
});

describe('numbers where text is meant', () => {
  it('server_name: 12345 and an unquoted EAB kid are refused with how to quote; listen ports may stay numbers', async () => {
    const { code, output } = await check({ server_name: 12345, listen: { federation: [8448] }, acme: { eab: { kid: 4711, hmac_key: 'c2VjcmV0' } } });
    expect(code).toBe(1);
    expect(output).toContain('server_name: expected a text value, got number 12345; put it in quotes ("12345") if you mean that text');
    expect(output).toContain('acme.eab.kid: expected a text value, got number 4711; put it in quotes ("4711") if you mean that text');
    expect(output).toMatch(/2 problems in the config/);
    const quoted = await check({ server_name: '12345' });
    expect(quoted.code).toBe(1);
    expect(quoted.output).toContain('server_name: "12345" is not a host name');
  });

  it('acme.domains holding a number is refused, not read as text', async () => {
    const { code, output } = await check({ server_name: 'example.org', acme: { domains: ['example.org', 8448] } });
    expect(code).toBe(1);
    expect(output).toContain('acme.domains: expected a list of text values, but it holds number 8448');
  });
});

describe('timeouts', () => {
  it('proxy.response_timeout under 60 s: a warning that federation waits up to 60 s', async () => {
    const { code, output } = await check({ server_name: 'example.org', proxy: { response_timeout: '30s' } });
    expect(code).toBe(0);
    expect(warnings(output)).toEqual([expect.stringMatching(/^proxy\.response_timeout: is 30s: federating servers wait up to 60 s/)]);
    expect(warnings((await check({ server_name: 'example.org', proxy: { response_timeout: '60s' } })).output)).toEqual([]);
  });

  it('shutdown.drain_timeout not below the unit\'s TimeoutStopSec: a warning with the drop-in to write', async () => {
    const { code, output } = await check({ server_name: 'example.org', shutdown: { drain_timeout: '90s' } });
    expect(code).toBe(0);
    expect(warnings(output)).toEqual([expect.stringMatching(/^shutdown\.drain_timeout: is 90s, not below the systemd unit's TimeoutStopSec=60s \(systemd\/fedtls\.service\): systemd kills fedtls before the drain ends.*systemctl edit fedtls/)]);
    expect(warnings((await check({ server_name: 'example.org', shutdown: { drain_timeout: '59s' } })).output)).toEqual([]);
  });

  it('the TimeoutStopSec the warning compares with is the one systemd/fedtls.service sets', () => {
    const unit = readFileSync(path.resolve('systemd/fedtls.service'), 'utf8');
    const value = /^TimeoutStopSec=(\d+)s$/m.exec(unit)?.[1];
    expect(Number(value) * 1000).toBe(SYSTEMD_TIMEOUT_STOP_MS);
  });
});

describe('ACME directory and External Account Binding', () => {
  it('acme.url: zerossl without acme.eab is refused, saying where the kid and HMAC key come from', async () => {
    const { code, output } = await check({ server_name: 'example.org', acme: { url: 'zerossl' } });
    expect(code).toBe(1);
    expect(output).toContain('acme.eab: is required by ZeroSSL (acme.url: zerossl)');
    expect(output).toContain('ZeroSSL dashboard (https://app.zerossl.com/developer');
    const literal = await check({ server_name: 'example.org', acme: { url: 'https://acme.zerossl.com/v2/DV90' } });
    expect(literal.code).toBe(1);
    expect((await check({ server_name: 'example.org', acme: { url: 'zerossl', enabled: false }, tls_certificate_path: '/x/c.pem', tls_private_key_path: '/x/k.pem' })).output).not.toContain('acme.eab');
  });

  it('a plain http:// directory is refused unless it is on loopback', async () => {
    const { code, output } = await check({ server_name: 'example.org', acme: { url: 'http://acme.example.net/directory' } });
    expect(code).toBe(1);
    expect(output).toContain('acme.url: "http://acme.example.net/directory": ACME directories are served over HTTPS (RFC 8555), never plain http://; write "https://acme.example.net/directory"');
    for (const url of ['http://127.0.0.1:14000/dir', 'http://localhost:14000/dir', 'http://[::1]:14000/dir']) {
      expect((await check({ server_name: 'example.org', acme: { url } })).code).toBe(0);
    }
  });

  it('an EAB HMAC key in a config file other users can read: a warning with the chmod; none once it is 0600', async () => {
    const file = writeConfig(tempDir(), { server_name: 'example.org', acme: { url: 'zerossl', eab: { kid: 'kid-1', hmac_key: 'c2VjcmV0' } } });
    chmodSync(file, 0o644);
    const open = await checkConfig(file);
    expect(open.code).toBe(0);
    expect(warnings(open.output)).toEqual([`acme.eab.hmac_key: is a secret, and ${file} can be read by every user of this machine (mode 0644): chmod 640 ${file} && chown root:fedtls ${file} (so only root and the fedtls user read it; or chmod 600 if the file belongs to the user fedtls runs as)`]);
    chmodSync(file, 0o600);
    expect(warnings((await checkConfig(file)).output)).toEqual([]);
  });
});

describe('certificate settings', () => {
  it('Synapse\'s flat tls_certificate_path beside tls.certificate_path is refused: neither wins', async () => {
    const { code, output } = await check({
      server_name: 'example.org', tls_certificate_path: '/etc/a/fullchain.pem', tls_private_key_path: '/etc/a/privkey.pem',
      tls: { certificate_path: '/etc/b/fullchain.pem', private_key_path: '/etc/b/privkey.pem' },
    });
    expect(code).toBe(1);
    expect(output).toContain('tls_certificate_path: and tls.certificate_path are both set: they are two names for the same certificate pair');
    expect(output).toContain('fedtls does not guess which one you mean');
  });

  it('tls.default_name that no certificate source covers: a warning, from the config alone or from the certificate files', async () => {
    const listed = await check({ server_name: 'example.org', tls: { default_name: 'other.example.net' } });
    expect(listed.code).toBe(0);
    expect(warnings(listed.output)).toEqual([expect.stringMatching(/^tls\.default_name: "other\.example\.net" is not a name any certificate source serves \(example\.org\)/)]);
    expect(warnings((await check({ server_name: 'example.org', acme: { domains: ['example.org', 'matrix.example.org'] }, tls: { default_name: 'matrix.example.org' } })).output)).toEqual([]);

    // A pair without `names` serves what its certificate holds: check-config reads the file.
    const backend = { url: 'http://127.0.0.1:8008' };
    const dir = tempDir();
    const { configFile } = await writeManualDaemonConfig(dir, 'files.fedtls.test', backend.url, { tls: { default_name: 'nobody.fedtls.test' } });
    const fromFiles = await checkConfig(configFile);
    expect(fromFiles.code).toBe(0);
    expect(warnings(fromFiles.output)).toEqual([expect.stringMatching(/^tls\.default_name: "nobody\.fedtls\.test" is in no configured certificate \(files\.fedtls\.test\)/)]);
  });
});

describe('acme.domains and server_name', () => {
  it('acme.domains without server_name and no well_known.server delegation: a warning (and not two)', async () => {
    const { code, output } = await check({ server_name: 'mydomain.org', acme: { domains: ['example.org'] } });
    expect(code).toBe(0);
    expect(warnings(output)).toEqual([expect.stringMatching(/^acme\.domains: \[example\.org\] does not include server_name mydomain\.org, and well_known\.server does not delegate to any of these names/)]);
  });

  it('no warning when server_name is listed, or when well_known.server delegates to a listed name', async () => {
    expect(warnings((await check({ server_name: 'mydomain.org', acme: { domains: ['mydomain.org', 'matrix.mydomain.org'] } })).output)).toEqual([]);
    expect(warnings((await check({ server_name: 'mydomain.org', acme: { domains: ['matrix.mydomain.org'] }, well_known: { server: 'matrix.mydomain.org:443' } })).output)).toEqual([]);
  });
});

describe('config files that are not UTF-8 YAML', () => {
  it('a directory: says so and names the YAML file to pass', async () => {
    const dir = tempDir();
    writeConfig(dir, { server_name: 'example.org' });
    const { code, output } = await checkConfig(dir);
    expect(code).toBe(1);
    expect(output).toContain(`cannot read the config file: this is a directory, not the config file: pass the YAML file itself, e.g. --config ${path.join(dir, 'fedtls.yaml')}`);
    expect(output).not.toContain('EISDIR');
  });

  it('UTF-16 with a byte-order mark is read; without one it is named, with how to save it as UTF-8', async () => {
    const text = 'server_name: example.org\nacme:\n  email: admin@example.org\n';
    const dir = tempDir();
    const withBom = path.join(dir, 'bom.yaml');
    writeFileSync(withBom, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]));
    const read = await checkConfig(withBom);
    expect(read.output).toContain('valid');
    expect(read.code).toBe(0);
    const bigEndian = path.join(dir, 'be.yaml');
    writeFileSync(bigEndian, Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(text, 'utf16le').swap16()]));
    expect((await checkConfig(bigEndian)).code).toBe(0);

    const noBom = path.join(dir, 'nobom.yaml');
    writeFileSync(noBom, Buffer.from(text, 'utf16le'));
    const refused = await checkConfig(noBom);
    expect(refused.code).toBe(1);
    expect(refused.output).toContain('the file is UTF-16 (every other byte is zero) without a byte-order mark; save it as UTF-8');
    expect(refused.output).toContain('iconv -f UTF-16LE -t UTF-8');
    expect(refused.output).not.toContain('null byte');
  });

  it('a non-breaking space after "server_name:" is named with its line and column, not "must be a YAML mapping"', async () => {
    const dir = tempDir();
    const alone = path.join(dir, 'alone.yaml');
    writeFileSync(alone, 'server_name:\u00a0example.org\n');
    const first = await checkConfig(alone);
    expect(first.code).toBe(1);
    expect(first.output).toContain('line 1, column 13: a non-breaking space (U+00A0) after "server_name:", which looks like a space (or like nothing) but is not one to YAML');
    expect(first.output).not.toContain('must be a YAML mapping');

    const among = path.join(dir, 'among.yaml');
    writeFileSync(among, '# a comment with\u00a0one is fine\nbackend: "http://127.0.0.1:8008"\nserver_name:\u00a0example.org\n');
    const second = await checkConfig(among);
    expect(second.code).toBe(1);
    const problems = second.output.split('\n').filter((l) => l.startsWith('  - '));
    expect(problems[0]).toContain('line 3, column 13: a non-breaking space (U+00A0) after "server_name:"');
    expect(second.output).not.toContain('line 1, column');
  });

  it('--config with no value: says which file is expected, exit 2', async () => {
    for (const args of [['check-config', '--config'], ['run', '-c'], ['check-config', '--config', '--json'], ['check-config', '--config=']]) {
      const run = runCli(args);
      expect(await run.exited).toBe(2);
      expect(run.stderr()).toBe('fedtls: --config needs a value: the path of the YAML config file, e.g. --config /etc/fedtls/fedtls.yaml (leave --config out to use $FEDTLS_CONFIG or /etc/fedtls/fedtls.yaml)\n');
    }
  });
});

describe('server names peers would refuse or misread (Matrix spec "Server names")', () => {
  const problemLine = (output: string, key: string): string => output.split('\n').find((l) => l.trim().startsWith(`- ${key}:`)) ?? `(no ${key} line in:\n${output})`;

  it('well_known.server: IPv6 without brackets, port 0, 65536, a leading zero, no host, a trailing dot: each refused with what to write', async () => {
    const cases: [string, RegExp][] = [
      ['::1', /"::1" is an IPv6 address without brackets.*: write "\[::1\]"/],
      ['matrix.example.test:0', /"matrix\.example\.test:0" has the port 0, out of range \(ports go from 1 to 65535\)/],
      ['matrix.example.test:65536', /has the port 65536, out of range/],
      [':65536', /":65536" has no host before the port.*write the host name in front/],
      ['matrix.example.test:08448', /has the port "08448" with a leading zero.*write "matrix\.example\.test:8448"/],
      ['matrix.example.test.:443', /ends the host name with a dot.*drop the dot: write "matrix\.example\.test:443"/],
    ];
    const results = await Promise.all(cases.map(([server]) => check({ server_name: 'example.test', well_known: { server } })));
    results.forEach(({ code, output }, i) => {
      expect(code, cases[i]![0]).toBe(1);
      expect(problemLine(output, 'well_known.server'), cases[i]![0]).toMatch(cases[i]![1]);
    });
    // Still accepted: what the spec allows.
    for (const server of ['matrix.example.test:443', '[2001:db8::1]:8448', '192.0.2.7', 'matrix.example.test']) {
      expect((await check({ server_name: 'example.test', well_known: { server } })).code, server).toBe(0);
    }
  });

  it('server_name: ports out of range, a trailing dot and unbracketed IPv6 are blamed on server_name (not acme.domains), with the fix', async () => {
    const cases: [string, RegExp][] = [
      ['example.test:99999', /"example\.test:99999" has the port 99999, out of range/],
      ['example.test:0', /"example\.test:0" has the port 0, out of range/],
      ['example.test.', /"example\.test\." ends the host name with a dot.*drop the dot: write "example\.test"/],
      ['::1', /"::1" is an IPv6 address without brackets.*write "\[::1\]"/],
    ];
    const results = await Promise.all(cases.map(([serverName]) => check({ server_name: serverName })));
    results.forEach(({ code, output }, i) => {
      expect(code, cases[i]![0]).toBe(1);
      expect(problemLine(output, 'server_name'), cases[i]![0]).toMatch(cases[i]![1]);
      expect(output, cases[i]![0]).not.toContain('acme.domains');
      expect(output, cases[i]![0]).toMatch(/1 problem in the config/);
    });
  });

  it('a port or a trailing dot on a certificate name: "a name here has no port", "drop the dot"', async () => {
    const manual = await check({ server_name: 'example.test', acme: { enabled: false }, tls: { certificates: [{ certificate_path: '/x/c.pem', private_key_path: '/x/k.pem', names: ['other.test:8448', '*.wild.test:443', 'dot.test.'] }] } });
    expect(manual.code).toBe(1);
    expect(manual.output).toContain('tls.certificates[0].names: "other.test:8448" has a port, but a name here has no port (a certificate is for a name, whatever the port): write "other.test"');
    expect(manual.output).toContain('"*.wild.test:443" has a port, but a name here has no port (a certificate is for a name, whatever the port): write "*.wild.test"');
    expect(manual.output).toContain('"dot.test." ends with a dot, which CAs refuse: drop the dot and write "dot.test"');
    expect(manual.output).not.toContain('is not a valid DNS name');
    // A wildcard without port or dot is a name like any other here.
    const wildcard = await check({ server_name: 'example.test', acme: { enabled: false }, tls: { certificates: [{ certificate_path: '/x/c.pem', private_key_path: '/x/k.pem', names: ['*.wild.test', 'example.test'] }] } });
    expect(wildcard.output).not.toMatch(/tls\.certificates\[0\]\.names/);
    const acme = await check({ server_name: 'example.test', acme: { domains: ['example.test', 'matrix.example.test:8448', 'matrix.example.test.'] } });
    expect(acme.code).toBe(1);
    expect(acme.output).toContain('acme.domains: "matrix.example.test:8448" has a port, but a name here has no port (a certificate is for a name, whatever the port): write "matrix.example.test"');
    expect(acme.output).toContain('acme.domains: "matrix.example.test." ends with a dot, which CAs refuse: drop the dot and write "matrix.example.test"');
  });

  it('fedtls check and check-config agree: what the config refuses as server_name, check refuses too (exit 2, same reason)', async () => {
    const names = ['example.test:0', 'example.test:99999', 'example.test:08448', '::1', 'example.test.', ':8448'];
    const runs = await Promise.all(names.map(async (name) => {
      const run = runCli(['check', name, '--timeout', '1']);
      const code = await run.exited;
      const config = await check({ server_name: name });
      return { name, code, stderr: run.stderr(), stdout: run.stdout(), config };
    }));
    for (const { name, code, stderr, stdout, config } of runs) {
      expect(code, name).toBe(2);
      expect(stdout, name).toBe('');
      expect(config.code, name).toBe(1);
      // The same phrase from the same rule on both sides.
      const reason = /server_name: "[^"]*" ([^:]*)/.exec(problemLine(config.output, 'server_name'))![1]!;
      expect(stderr, name).toContain(reason);
    }
    const ok = runCli(['check', '[::1]:1', '--timeout', '1']);
    expect(await ok.exited).not.toBe(2);
  });
});
