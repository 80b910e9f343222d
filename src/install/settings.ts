import { hostname } from 'node:os';
import type { Config } from '../config/schema.ts';
import type { Db } from '../db/pool.ts';
import {
  applyConfiguredSettings,
  type ConfiguredSettings,
  readLifecycleSettings,
  settingsFromConfig,
} from '../db/queries/staleness.ts';
import type { Logger } from '../telemetry/logger.ts';

/**
 * tasker_lifecycle_settings, the one row that views and upstream's 6-argument detection function
 * read: written from the configuration by `migrate` (and `start`, which migrates) only. Workers and
 * `web` compare it with their own configuration and report what differs.
 */

/** Writes the row from the configuration when it differs; logged at info naming who changed it. */
export async function writeSettingsRow(
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

/** "key: the database has X, this configuration says Y" for each setting that differs. */
export async function settingsDifferences(db: Db, config: Readonly<Config>): Promise<string[]> {
  const row = await readLifecycleSettings(db);
  const want = settingsFromConfig(config);
  const differences: string[] = [];
  const compare = (key: string, have: unknown, wanted: unknown) => {
    if (JSON.stringify(have) !== JSON.stringify(wanted))
      differences.push(
        `tasker_lifecycle_settings.${key}: the database has ${JSON.stringify(have)}, this configuration says ${JSON.stringify(wanted)}`,
      );
  };
  for (const key of Object.keys(want) as (keyof ConfiguredSettings)[]) {
    if (key === 'archive_policies') {
      for (const [policy, value] of Object.entries(want.archive_policies))
        compare(policy, (row.archive_policies as unknown as Record<string, unknown>)[policy], value);
    } else if (key === 'enabled_reasons') {
      compare(key, [...row.enabled_reasons].sort(), [...want.enabled_reasons].sort());
    } else compare(key, row[key], want[key]);
  }
  return differences;
}
