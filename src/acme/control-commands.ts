// The ACME commands of the control channel: `renew` (fedtls renew [NAME] [--force]
// [--dry-run]). They only ask the AcmeManager; the manager decides, acts and logs.

import type { ControlServer } from '../ops/control-server.js';
import { ControlCommandError } from '../ops/control-server.js';
import type { AcmeManager } from './manager.js';

export interface RenewRequest {
  name?: string;
  force?: boolean;
  dry_run?: boolean;
}

export function registerAcmeCommands(control: ControlServer, manager: AcmeManager | null): void {
  control.register('renew', async (args) => {
    if (!manager) throw new ControlCommandError('ACME is off in this config (acme.enabled: false); there is nothing to renew');
    const { name, force, dry_run: dryRun } = args as RenewRequest;
    const names = manager.source.names;
    if (name !== undefined && name !== null && !names.includes(String(name).toLowerCase())) {
      throw new ControlCommandError(`${String(name)} is not on the ACME certificate (names: ${names.join(', ')})`);
    }
    if (dryRun === true) return manager.dryRun();
    const result = await manager.renew(force === true);
    // Failed or must-wait results are answers, not errors: the CLI turns them into exit codes
    // (1, 75) and can still print them as JSON.
    return result;
  });
}
