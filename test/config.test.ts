// Config validation through the real CLI: every mistake names the file, the key and what is
// expected, and exits 1 (C4: the error is in the output before the process exits).

import { describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import yaml from 'js-yaml';
import { runCli, tempDir, writeConfig } from './helpers/daemon.js';
import { directoryCannotBeUsed } from '../src/certs/files.js';

async function checkConfig(file: string): Promise<{ code: number | null; output: string }> {
  const run = runCli(['check-config', '--config', file]);
  const code = await run.exited;
  return { code, output: run.stdout() + run.stderr() };
}

describe('config validation', () => {
  it('refuses a config without server_name', async () => {
    const file = writeConfig(tempDir(), { backend: 'http://127.0.0.1:8008' });
    const { code, output } = await checkConfig(file);
    expect(code).toBe(1);
    expect(output).toContain(file);
    expect(output).toMatch(/server_name: is required/);
  });

  it('refuses an unknown key and names it', async () => {
    const file = writeConfig(tempDir(), { server_name: 'example.org', acme: { enabled: true, emial: 'a@b.c' } });
    const { code, output } = await checkConfig(file);
    expect(code).toBe(1);
    expect(output).toMatch(/acme\.emial: is not a fedtls setting; did you mean acme\.email\?/);
  });

  it('refuses a wrong type and says what is expected', async () => {
    const file = writeConfig(tempDir(), { server_name: 'example.org', listen: { federation: 8448 }, acme: { enabled: 'yes' } });
    const { code, output } = await checkConfig(file);
    expect(code).toBe(1);
    expect(output).toMatch(/acme\.enabled: expected true or false, got the text "yes"/);
  });

  it('refuses a workers count that is not "auto" or 1–64', async () => {
    const file = writeConfig(tempDir(), { server_name: 'example.org', workers: 0 });
    const { code, output } = await checkConfig(file);
    expect(code).toBe(1);
    expect(output).toMatch(/workers: expected "auto" or a whole number from 1 to 64, got 0/);
  });

  it('suggests the nearest key for a top-level typo, and what to use instead of Synapse\'s keys', async () => {
    const file = writeConfig(tempDir(), { server_nam: 'example.org', tls_dh_params_path: '/etc/dh.pem', acme: { domain: 'example.org' } });
    const { code, output } = await checkConfig(file);
    expect(code).toBe(1);
    expect(output).toMatch(/server_nam: is not a fedtls setting; did you mean server_name\?/);
    expect(output).toMatch(/tls_dh_params_path: is a Synapse key that fedtls does not need/);
    expect(output).toMatch(/acme\.domain: is Synapse's name; fedtls takes a list: acme\.domains/);
  });

  it('reports YAML syntax errors with the line', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'broken.yaml');
    writeFileSync(file, 'server_name: example.org\nacme:\n  url: [unclosed\n');
    const { code, output } = await checkConfig(file);
    expect(code).toBe(1);
    expect(output).toMatch(/line \d+, column \d+: not valid YAML/);
  });

  it('accepts Synapse\'s flat tls_certificate_path names and names a Synapse-only key', async () => {
    const file = writeConfig(tempDir(), { server_name: 'example.org', acme: { reprovision_threshold: '30d' } });
    const { code, output } = await checkConfig(file);
    expect(code).toBe(1);
    expect(output).toMatch(/acme\.reprovision_threshold: is Synapse's name; fedtls calls it acme\.renew_before/);
  });

  it('C4: `fedtls run` with a broken config prints the error line before exiting 1', async () => {
    const file = writeConfig(tempDir(), { server_name: 'example.org', proxy: { max_body_size: 'lots' } });
    const run = runCli(['run', '--config', file]);
    expect(await run.exited).toBe(1);
    expect(run.stdout() + run.stderr()).toMatch(/proxy\.max_body_size: expected a size/);
  });

  it('refuses proxy settings that cannot work and says which', async () => {
    const file = writeConfig(tempDir(), { server_name: 'example.org', proxy: { trusted_proxies: ['10.0.0.0/8', 'fd00::/8', '10.0.0.1/40', 'proxy.example'], connect_timeout: 0 } });
    const { code, output } = await checkConfig(file);
    expect(code).toBe(1);
    expect(output).toMatch(/proxy\.trusted_proxies: "10\.0\.0\.1\/40" is not an IP address or CIDR range/);
    expect(output).toMatch(/proxy\.trusted_proxies: "proxy\.example" is not an IP address/);
    expect(output).toMatch(/3 problems in the config/); // the valid ranges are not among them
    expect(output).toMatch(/proxy\.connect_timeout: must be at least 100ms/);
  });

  it('a valid minimal config passes check-config', async () => {
    const file = writeConfig(tempDir(), { server_name: 'example.org' });
    const { code, output } = await checkConfig(file);
    expect(output).toContain('valid');
    expect(code).toBe(0);
  });
});

describe('the shipped example config', () => {
  it('is valid as shipped, so every documented key is a real key', async () => {
    let file = path.resolve('config/fedtls.example.yaml');
    // Its state_dir (/var/lib/fedtls) is checked too: where this user cannot create it, the
    // same file with a state_dir of the test's own.
    if (directoryCannotBeUsed('/var/lib/fedtls', '/var/lib/fedtls')) {
      const copy = path.join(tempDir(), 'fedtls.yaml');
      writeFileSync(copy, readFileSync(file, 'utf8').replace(/^state_dir: .*$/m, `state_dir: ${path.join(path.dirname(copy), 'state')}`));
      file = copy;
    }
    const { code, output } = await checkConfig(file);
    expect(output).toContain('valid');
    expect(code).toBe(0);
  });

  it('sets no acme.domains or tls.default_name of its own: with only server_name and acme.email changed, the certificate is for the new name', async () => {
    const example = readFileSync(path.resolve('config/fedtls.example.yaml'), 'utf8');
    const parsed = yaml.load(example) as { acme: Record<string, unknown>; tls: Record<string, unknown> };
    expect(parsed.acme).not.toHaveProperty('domains');
    expect(parsed.tls).not.toHaveProperty('default_name');
    const file = path.join(tempDir(), 'fedtls.yaml');
    writeFileSync(file, example.replace(/^server_name: example\.org$/m, 'server_name: mydomain.org').replace(/^ {2}email: null$/m, '  email: admin@mydomain.org'));
    const { code, output } = await checkConfig(file);
    expect(code).toBe(0);
    expect(output).toContain('ACME: https://acme-v02.api.letsencrypt.org/directory for mydomain.org\n');
    expect(output).not.toContain('example.org');
    expect(output).not.toContain('warning');
  });
});

describe('command-line typos', () => {
  it('suggests the nearest command and option', async () => {
    const command = runCli(['stauts']);
    expect(await command.exited).toBe(2);
    expect(command.stderr()).toContain('unknown command "stauts"; did you mean "fedtls status"?');
    const option = runCli(['status', '--confg', 'x.yaml']);
    expect(await option.exited).toBe(2);
    expect(option.stderr()).toContain('unknown option --confg; did you mean --config?');
  });

  it('prints the version of the package it runs from', async () => {
    const { version } = JSON.parse(readFileSync(path.resolve('package.json'), 'utf8')) as { version: string };
    for (const spelling of ['--version', 'version']) {
      const cli = runCli([spelling]);
      expect(await cli.exited).toBe(0);
      expect(cli.stdout()).toContain(`fedtls ${version} (Node.js ${process.versions.node})`);
    }
  });
});
