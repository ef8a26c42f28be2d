// The ACME commands of the control channel: `renew` (fedtls renew [NAME] [--force]) and,
// later, `renew` with dry_run. They only ask the AcmeManager; the manager decides and logs.

import type { ControlServer } from '../ops/control-server.js';
import { ControlCommandError } from '../ops/control-server.js';
import type { AcmeManager } from './manager.js';

export interface RenewRequest {
  name?: string;
  force?: boolean;
}

export function registerAcmeCommands(control: ControlServer, manager: AcmeManager | null): void {
  control.register('renew', async (args) => {
    if (!manager) throw new ControlCommandError('ACME is off in this config (acme.enabled: false); there is nothing to renew');
    const { name, force } = args as RenewRequest;
    if ((args as { dry_run?: boolean }).dry_run === true) throw new ControlCommandError('--dry-run is not available in this version of the daemon');
    const names = manager.source.names;
    if (name !== undefined && name !== null && !names.includes(String(name).toLowerCase())) {
      throw new ControlCommandError(`${String(name)} is not on the ACME certificate (names: ${names.join(', ')})`);
    }
    const before = manager.getStatus().lastIssued;
    const status = await manager.renewNow(force === true);
    const renewed = status.lastIssued !== null && status.lastIssued !== before;
    if (!renewed && status.lastError && status.consecutiveFailures > 0) {
      throw new ControlCommandError(`renewal failed: ${status.lastError.message}; next try ${status.nextCheck?.toISOString() ?? 'not scheduled'}`);
    }
    const message = renewed
      ? `renewed the certificate for ${names.join(', ')}`
      : `the certificate for ${names.join(', ')} is not due for renewal (next check ${status.nextCheck?.toISOString() ?? 'not scheduled'}); use --force to renew anyway`;
    return { renewed, names, next_check: status.nextCheck?.toISOString() ?? null, message };
  });
}
