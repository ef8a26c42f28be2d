// `fedtls check-config`: validate the config file (and that its certificate files load),
// print a short summary, exit 0 when fedtls would start with it, 1 otherwise.

import { loadConfigForCommand } from './config-for-command.js';
import { loadPairFromFiles, CertificateLoadError } from '../certs/pem.js';

export function checkConfigCommand(configPath: string): number {
  const config = loadConfigForCommand(configPath);
  if (!config) return 1;
  let ok = true;
  const lines = [
    `${config.file}: valid`,
    `  server_name: ${config.serverName}`,
    `  backend: ${config.proxy.backend.origin}`,
    `  federation listeners: ${config.listen.federation.map((a) => a.text).join(', ') || 'none'}`,
    `  http (ACME) listeners: ${config.listen.http.map((a) => a.text).join(', ') || 'none'}`,
    `  ACME: ${config.acme.enabled ? `${config.acme.directoryUrl} for ${config.acme.domains.join(', ')}` : 'off'}`,
    `  state_dir: ${config.stateDir}`,
  ];
  for (const pair of config.tls.certificates) {
    try {
      const loaded = loadPairFromFiles(pair.certificatePath, pair.privateKeyPath);
      lines.push(`  certificate ${pair.certificatePath}: ${loaded.leaf.names.join(', ')}, expires ${loaded.leaf.notAfter.toISOString()}`);
      for (const warning of loaded.warnings) lines.push(`    warning: ${warning}`);
    } catch (error) {
      if (!(error instanceof CertificateLoadError)) throw error;
      ok = false;
      lines.push(`  certificate problem: ${error.message}`);
    }
  }
  (ok ? process.stdout : process.stderr).write(`${lines.join('\n')}\n`);
  return ok ? 0 : 1;
}
