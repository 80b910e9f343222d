import { JOBS } from '../../../jobs/index.ts';
import { directDatabaseUrl } from '../../db/pool.ts';
import { install } from '../../install/index.ts';
import type { Command } from '../command.ts';
import { printJson } from '../output.ts';
import type { Runtime } from '../runtime.ts';

/**
 * Everything `migrate` does, for `start` too (src/install): this system's SQL, pg-boss's schema,
 * the jobs' queues and schedules, and tasker_lifecycle_settings, from this process's configuration.
 */
export function migrateAll(
  rt: Runtime,
  command: string,
  options: { allowArchiveRewrites?: boolean; upgradePgBossSchema?: boolean } = {},
) {
  // Straight to PostgreSQL (database.direct_url): the migration lock is a session advisory lock,
  // which PgBouncer in transaction pooling mode cannot keep.
  return install({
    config: rt.config,
    pool: rt.pool,
    directPool: rt.directPool(),
    directUrl: directDatabaseUrl(rt.config),
    logger: rt.logger,
    command,
    jobs: JOBS,
    upgradePgBossSchema: options.upgradePgBossSchema ?? false,
    allowArchiveRewrites: options.allowArchiveRewrites ?? false,
  });
}

export const migrateCommand: Command = {
  name: 'migrate',
  summary:
    "Bring the database to this build: this system's migrations and function files, pg-boss's schema, the jobs' queues and schedules, and tasker_lifecycle_settings, from the configuration (safe to run from several processes at once).",
  args: {
    flags: {
      'upgrade-pgboss-schema': {
        type: 'boolean',
        description:
          "upgrade pg-boss's schema even while workers are alive on the older one (they cannot start again afterwards: stop them first)",
      },
      'allow-archive-rewrites': {
        type: 'boolean',
        description:
          'also make archive table changes that rewrite a table over archive.max_rewrite_rows (integer to bigint, …): for a maintenance window; the table is held ACCESS EXCLUSIVE while it is rewritten, the live tables are not touched',
      },
    },
  },
  async run({ flags }, { io, runtime }) {
    const rt = runtime.get();
    const {
      sql: result,
      pgbossSchemaVersion,
      pgbossSchemaUpgrade,
      settingsChanged,
    } = await migrateAll(rt, 'migrate', {
      upgradePgBossSchema: flags['upgrade-pgboss-schema'] === true,
      allowArchiveRewrites: flags['allow-archive-rewrites'] === true,
    });
    if (flags.json)
      return printJson(io.stdout, {
        ...result,
        pgboss_schema_version: pgbossSchemaVersion,
        pgboss_schema_upgraded_from: pgbossSchemaUpgrade?.from ?? null,
        settings_changed: settingsChanged,
        database: rt.target,
      });
    if (result.engineTables === 'adopted') {
      io.stdout.write(
        "found the workflow engine's tables: checked, kept as they are (0001 recorded, not run)\n",
      );
    }
    for (const file of [...result.applied, ...result.objectsApplied]) io.stdout.write(`applied ${file}\n`);
    for (const change of result.archiveChanges)
      io.stdout.write(`archive table follows its live table: ${change}\n`);
    if (pgbossSchemaUpgrade)
      io.stdout.write(
        `upgraded pg-boss's schema from version ${pgbossSchemaUpgrade.from} to ${pgbossSchemaUpgrade.to}: workers of the previous build cannot start on it\n`,
      );
    if (settingsChanged) io.stdout.write('tasker_lifecycle_settings updated from the configuration\n');
    io.stdout.write(
      `database ${rt.target} is up to date (${result.alreadyApplied + result.applied.length} migrations, ${result.objectsApplied.length + result.objectsUnchanged} function, view and trigger files, pg-boss schema ${pgbossSchemaVersion})\n`,
    );
  },
};
