#!/usr/bin/env node
// The `fedtls` command line: parses arguments and dispatches to one command module each.
// Command modules are imported only when used, so `fedtls help` or `fedtls status` do not
// pay for loading the daemon, ACME and discovery code.

import { parseArgs } from 'node:util';

const DEFAULT_CONFIG = process.env.FEDTLS_CONFIG || '/etc/fedtls/fedtls.yaml';

const USAGE = `fedtls — TLS for Matrix federation (ACME certificates, port 8448, reverse proxy)

Usage:
  fedtls run [--config FILE]            run the daemon
  fedtls check-config [--config FILE]   validate the config; exit 0 if fedtls would start
  fedtls certificates [--config FILE] [--json]
                                        list each name: source, serial, issuer, expiry, files
  fedtls demo [--keep]                  run a local demo with Pebble (Debian package "pebble")
  fedtls renew [NAME] [--force] [--dry-run] [--json] [--config FILE]
                                        ask the running daemon to renew now (if due; --force:
                                        regardless); --dry-run: obtain a throw-away certificate
                                        from the staging/test CA, touching nothing served
  fedtls check [SERVER_NAME] [--json] [--ca FILE] [--resolver IP:PORT] [--timeout SECONDS]
                                        check federation with SERVER_NAME (default: the config's
                                        server_name) as a remote homeserver would; exit 0 if it works
                                        test setups only: --well-known-port N (instead of 443),
                                        --fallback-port N (instead of 8448)
  fedtls status [--json] [--config FILE] what the running daemon serves: listeners, certificates
                                        (expiry, next renewal), last ACME error, backend, uptime
  fedtls version                        the installed version (also --version)
  fedtls help                           this text

--config defaults to $FEDTLS_CONFIG or ${DEFAULT_CONFIG}. Commands that talk to the
running daemon (certificates, renew, status) find its control socket in the config's state_dir.
`;

/** The version in the package.json next to dist/ (the installed package's own). */
async function packageVersion(): Promise<string> {
  const { readFileSync } = await import('node:fs');
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
  return manifest.version ?? 'unknown';
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    options: {
      config: { type: 'string', short: 'c', default: DEFAULT_CONFIG },
      keep: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      force: { type: 'boolean', default: false },
      'dry-run': { type: 'boolean', default: false },
      ca: { type: 'string' },
      resolver: { type: 'string' },
      timeout: { type: 'string' },
      'well-known-port': { type: 'string' },
      'fallback-port': { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  for (const option of ['config', 'ca', 'resolver', 'timeout', 'well-known-port', 'fallback-port'] as const) {
    if (values[option] !== undefined && values[option]!.trim() === '') missingValue(`--${option}`);
  }
  switch (command) {
    case 'run':
      return (await import('./commands/run.js')).runCommand(values.config!);
    case 'check-config':
      return (await import('./commands/check-config.js')).checkConfigCommand(values.config!);
    case 'certificates':
      return (await import('./commands/certificates.js')).certificatesCommand(values.config!, { json: values.json! });
    case 'check':
      return (await import('./commands/check.js')).checkCommand({
        serverName: positionals[0], configPath: values.config!, json: values.json!, ca: values.ca, resolver: values.resolver,
        timeout: values.timeout, wellKnownPort: values['well-known-port'], fallbackPort: values['fallback-port'],
      });
    case 'demo':
      return (await import('./commands/demo.js')).demoCommand({ keep: values.keep! });
    case 'status':
      return (await import('./commands/status.js')).statusCommand({ configPath: values.config!, json: values.json! });
    case 'renew':
      return (await import('./commands/renew.js')).renewCommand({ configPath: values.config!, name: positionals[0], force: values.force!, dryRun: values['dry-run']!, json: values.json! });
    case 'version':
    case '--version':
    case '-V':
      process.stdout.write(`fedtls ${await packageVersion()} (Node.js ${process.versions.node})\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default: {
      const { nearestKey } = await import('./config/reader.js');
      const nearest = nearestKey(command, ['run', 'check-config', 'certificates', 'check', 'demo', 'status', 'renew', 'version', 'help']);
      process.stderr.write(`fedtls: unknown command "${command}"${nearest ? `; did you mean "fedtls ${nearest}"?` : ''}\n\n${USAGE}`);
      return 2;
    }
  }
}

/** What each option that takes a value expects, for "--config" given without one. */
const OPTION_VALUES: Record<string, string> = {
  '--config': `the path of the YAML config file, e.g. --config /etc/fedtls/fedtls.yaml (leave --config out to use $FEDTLS_CONFIG or ${DEFAULT_CONFIG})`,
  '--ca': 'a PEM file of extra trusted root certificates, e.g. --ca /etc/fedtls/private-ca.pem',
  '--resolver': 'the IP address (and port) of a DNS server, e.g. --resolver 127.0.0.1:53',
  '--timeout': 'a number of seconds per step, e.g. --timeout 10',
  '--well-known-port': 'a port number, e.g. --well-known-port 8443',
  '--fallback-port': 'a port number, e.g. --fallback-port 8448',
};

function missingValue(option: string): never {
  process.stderr.write(`fedtls: ${option} needs a value: ${OPTION_VALUES[option] ?? 'see fedtls help'}\n`);
  process.exit(2);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  async (error: Error) => {
    // node:util parseArgs: "Option '-c, --config <value>' argument missing" / "... argument is ambiguous" (the next word is an option).
    const noValue = /^Option '(?:-\w, )?(--[\w-]+)(?: <value>)?' argument (?:missing|is ambiguous)/.exec(error.message)?.[1];
    if (noValue) missingValue(noValue);
    const unknownOption = /Unknown option '(--?[^']+)'/.exec(error.message)?.[1];
    if (unknownOption) {
      const { nearestKey } = await import('./config/reader.js');
      const known = ['--config', '--keep', '--json', '--force', '--dry-run', '--ca', '--resolver', '--timeout', '--well-known-port', '--fallback-port'];
      const nearest = nearestKey(unknownOption, known);
      process.stderr.write(`fedtls: unknown option ${unknownOption}${nearest ? `; did you mean ${nearest}?` : ''} (fedtls help lists the options)\n`);
      process.exit(2);
    }
    process.stderr.write(`fedtls: ${error.message}\n`);
    process.exit(error.name === 'TypeError' && /Unexpected argument/.test(error.message) ? 2 : 1);
  },
);
