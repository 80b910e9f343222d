import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import type { Config } from '../config/schema.ts';
import { NotMigratedError } from '../errors.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { AnyJob } from '../worker/worker.ts';
import { archiveTableOptions } from './archive-tables.ts';
import { checkPgBossSchemaUpgrade, installPgBoss, pgBossDifferences } from './pgboss.ts';
import { settingsDifferences, writeSettingsRow } from './settings.ts';
import { type MigrationResult, migrate, migrationStatus } from './sql.ts';

/**
 * Installing: the one module that brings a database to this build, and the only one that writes
 * what every process shares. `migrate` (the release step, and `start`) runs install(): this
 * system's SQL (numbered migrations, then the function, view and trigger files), pg-boss's schema,
 * each job's queue with its policy and retry settings, each job's schedule, and the settings row,
 * all from the configuration of the process running it. A worker or `web` process only runs
 * checkInstall(): it refuses to start when something it needs is missing, and logs every setting
 * whose value in the database differs from its own configuration (the database's is the one in
 * force), so a rolling deploy never has two configurations fighting over shared state.
 */

export interface InstallOptions {
  config: Readonly<Config>;
  /** The process's pool (database.url): the settings row. */
  pool: pg.Pool;
  /** A pool reaching PostgreSQL itself (database.direct_url): the SQL runner's session lock. */
  directPool: pg.Pool;
  /** database.direct_url: pg-boss's schema work holds its own session lock too. */
  directUrl: string;
  logger: Logger;
  /** Who installs, for the settings row's updated_by ("migrate", "start"). */
  command: string;
  jobs: readonly AnyJob[];
  /**
   * Upgrade pg-boss's schema even while workers are alive on the older one (the operator's
   * --upgrade-pgboss-schema): without it, `migrate` refuses such an upgrade before changing anything.
   */
  upgradePgBossSchema?: boolean;
  /**
   * Rewrite archive tables over archive.max_rewrite_rows too (`migrate --allow-archive-rewrites`,
   * for a maintenance window).
   */
  allowArchiveRewrites?: boolean;
}

export interface InstallResult {
  sql: MigrationResult;
  pgbossSchemaVersion: number | null;
  /** pg-boss's schema upgrade this run made ({from, to}), or null. */
  pgbossSchemaUpgrade: { from: number; to: number } | null;
  settingsChanged: boolean;
}

export async function install(o: InstallOptions): Promise<InstallResult> {
  // A pg-boss schema upgrade is a stop-the-world step: refused before anything changes while
  // workers of another build are alive (src/install/pgboss.ts).
  const pgbossSchemaUpgrade = await checkPgBossSchemaUpgrade(o.directPool, o.upgradePgBossSchema ?? false);
  const sql = await migrate(
    o.directPool,
    undefined,
    archiveTableOptions(o.config.archive, o.allowArchiveRewrites ?? false),
  );
  if (pgbossSchemaUpgrade)
    o.logger.warn(
      `upgrading pg-boss's schema from version ${pgbossSchemaUpgrade.from} to ${pgbossSchemaUpgrade.to}: workers of the previous build cannot start on it`,
      { pgboss_schema_from: pgbossSchemaUpgrade.from, pgboss_schema_to: pgbossSchemaUpgrade.to },
    );
  // What migrate left undone that archival needs: archival (and, for the first, restore) refuses
  // until it is done, naming the same; nothing else waits for it.
  for (const left of sql.archiveChangesLeft)
    o.logger.warn(`${o.command}: ${left}`, { archival: 'refused', reason: 'archive_change_left' });
  for (const key of sql.archivalKeyProblems)
    o.logger.warn(`${o.command}: ${key}`, { archival: 'refused', reason: 'foreign_key' });
  const pgbossSchemaVersion = await installPgBoss(o.config, o.directUrl, o.logger, o.jobs);
  const settingsChanged = await writeSettingsRow(o.pool, o.config, o.logger, o.command);
  return { sql, pgbossSchemaVersion, pgbossSchemaUpgrade, settingsChanged };
}

export interface InstallCheck {
  /** What this process cannot work without (it refuses to start): run `migrate` with this build. */
  missing: string[];
  /** Shared state that differs from this process's build or configuration; the database's is in force. */
  differences: string[];
}

/**
 * The database against this build and configuration, without writing anything. `boss` (a started
 * pg-boss) adds its queues and schedules to the check.
 */
export async function checkInstall(o: {
  pool: pg.Pool;
  config: Readonly<Config>;
  jobs: readonly AnyJob[];
  boss?: PgBoss;
}): Promise<InstallCheck> {
  const status = await migrationStatus(o.pool);
  const missing = [
    ...status.pending.map((m) => `migration ${m.file} is not applied`),
    ...status.objectsMissing.map((f) => `${f} was never applied`),
  ];
  const differences = [
    ...(status.unknown.length > 0
      ? [
          `the database has migration(s) ${status.unknown.join(', ')} that this build does not have (a newer build migrated it)`,
        ]
      : []),
    ...status.objectsChanged.map(
      (f) =>
        `${f} differs from the database's version (a newer build migrated, or this one's migrate has not run)`,
    ),
  ];
  if (status.pending.length > 0) return { missing, differences };
  if (o.boss) {
    const boss = await pgBossDifferences(o.boss, o.config, o.jobs);
    missing.push(...boss.missing);
    differences.push(...boss.differences);
  }
  differences.push(...(await settingsDifferences(o.pool, o.config)));
  return { missing, differences };
}

/**
 * Logs each difference at warn, once, and refuses (NotMigratedError, naming each gap) when
 * something this process needs is missing.
 */
export function reportInstallCheck(check: InstallCheck, logger: Logger, who: string): void {
  for (const difference of check.differences)
    logger.warn(
      `${who}: ${difference} (the database's is in force; \`tasker-lifecycle migrate\` writes this process's)`,
      {
        install_difference: difference,
      },
    );
  if (check.missing.length > 0)
    throw new NotMigratedError(
      `the database lacks what this build needs (run \`tasker-lifecycle migrate\` with this build first):\n${check.missing.map((m) => `  - ${m}`).join('\n')}`,
    );
}
