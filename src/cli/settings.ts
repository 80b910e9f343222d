import { hostname } from 'node:os';
import type { Config } from '../config/schema.ts';
import type { Db } from '../db/pool.ts';
import { applyConfiguredSettings } from '../db/queries/staleness.ts';
import type { Logger } from '../telemetry/logger.ts';

/**
 * Writes tasker_lifecycle_settings from this process's configuration: `migrate`, `worker` and
 * `start` call it, deliberately, and nothing else does (runs never write it). Logged at info when
 * the row changed, naming who changed it.
 */
export async function applySettingsFromConfig(
  db: Db,
  config: Readonly<Config>,
  logger: Logger,
  command: string,
): Promise<boolean> {
  const by = `${command}@${hostname()}:${process.pid}`;
  const { changed, settings } = await applyConfiguredSettings(db, config, by);
  if (changed) logger.info('tasker_lifecycle_settings updated from configuration', { by, ...settings });
  return changed;
}
