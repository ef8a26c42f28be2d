// `fedtls check-config`: validate the config file (and that its certificate files load),
// print a short summary and every warning, exit 0 when fedtls would start with it, 1 otherwise.

import { loadConfigForCommand } from './config-for-command.js';
import { loadPairFromFiles, nameMatches, CertificateLoadError, namesNotCovered } from '../certs/pem.js';
import { directoryCannotBeUsed } from '../certs/files.js';

export function checkConfigCommand(configPath: string): number {
  const config = loadConfigForCommand(configPath);
  if (!config) return 1;
  let problems = 0;
  const warnings: string[] = config.warnings.map((w) => `${w.key}: ${w.message}`);
  const coveredNames: string[] = config.acme.enabled ? [...config.acme.domains] : [];
  const lines = [
    `  server_name: ${config.serverName}`,
    `  backend: ${config.proxy.backend.origin}`,
    `  federation listeners: ${config.listen.federation.map((a) => a.text).join(', ') || 'none'}`,
    `  http (ACME) listeners: ${config.listen.http.map((a) => a.text).join(', ') || 'none'}`,
    `  ACME: ${config.acme.enabled ? `${config.acme.directoryUrl} for ${config.acme.domains.join(', ')}` : 'off'}`,
    `  state_dir: ${config.stateDir}`,
  ];
  // The daemon refuses to start without a usable state_dir (account key, ACME certificates, control socket).
  const stateDirProblem = directoryCannotBeUsed(config.stateDir, config.stateDir);
  if (stateDirProblem) {
    problems += 1;
    lines.push(`  state_dir problem: ${stateDirProblem}`);
  }
  for (const pair of config.tls.certificates) {
    try {
      const loaded = loadPairFromFiles(pair.certificatePath, pair.privateKeyPath);
      lines.push(`  certificate ${pair.certificatePath}: ${loaded.leaf.names.join(', ')}, expires ${loaded.leaf.notAfter.toISOString()}`);
      for (const warning of loaded.warnings) lines.push(`    warning: ${warning}`);
      coveredNames.push(...loaded.leaf.names);
      const missing = namesNotCovered(pair.names, loaded.leaf);
      if (missing.length > 0) lines.push(`    warning: configured for ${missing.join(', ')}, which the certificate does not hold; peers connecting to those names will refuse it`);
    } catch (error) {
      if (!(error instanceof CertificateLoadError)) throw error;
      problems += 1;
      lines.push(`  certificate problem: ${error.message}`);
    }
  }
  // Not when acme.domains already got its warning (that one says why and what to do), nor when
  // well_known.server delegates to a name that is covered (then peers never ask for server_name).
  const delegated = config.wellKnown.serverHost;
  const delegationCovered = delegated !== null && coveredNames.some((pattern) => nameMatches(pattern, delegated));
  if (config.serverHost && !delegationCovered && !config.warnings.some((w) => w.key === 'acme.domains') && !coveredNames.some((pattern) => nameMatches(pattern, config.serverHost))) {
    warnings.push(`no certificate holds server_name ${config.serverHost}: peers that connect to ${config.serverHost} will refuse the TLS handshake (fine only if /.well-known/matrix/server delegates to a name that is covered)`);
  }
  const defaultName = config.tls.defaultName;
  if (defaultName && defaultName !== config.serverHost && problems === 0 && !config.warnings.some((w) => w.key === 'tls.default_name')
      && !coveredNames.some((pattern) => nameMatches(pattern, defaultName))) {
    warnings.push(`tls.default_name: "${defaultName}" is in no configured certificate (${coveredNames.join(', ') || 'none'}): clients without SNI or with an unknown name get whichever certificate loads first. Name one of those, or remove tls.default_name (default: server_name)`);
  }
  for (const warning of warnings) lines.push(`  warning: ${warning}`);
  const verdict = problems === 0
    ? `${config.file}: valid${warnings.length > 0 ? ` (${warnings.length} warning${warnings.length === 1 ? '' : 's'})` : ''}`
    : stateDirProblem
      ? `${config.file}: the config is well-formed, but fedtls would not start: its state_dir cannot be used${problems > 1 ? `, and ${problems - 1} certificate file${problems === 2 ? '' : 's'} cannot be used either` : ''}`
      : `${config.file}: the config is well-formed, but ${problems} certificate file${problems === 1 ? '' : 's'} cannot be used; fedtls would start without ${problems === 1 ? 'it' : 'them'}`;
  (problems === 0 ? process.stdout : process.stderr).write(`${[verdict, ...lines].join('\n')}\n`);
  return problems === 0 ? 0 : 1;
}
