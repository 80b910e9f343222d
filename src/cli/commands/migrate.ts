import { JOBS } from '../../../jobs/index.ts';
import { migrate } from '../../db/migrate.ts';
import { databaseUrl } from '../../db/pool.ts';
import { migrateBoss } from '../../worker/boss.ts';
import type { Command } from '../command.ts';
import { printJson } from '../output.ts';

export const migrateCommand: Command = {
  name: 'migrate',
  summary:
    "Apply this system's migrations and pg-boss's schema (safe to run from several processes at once).",
  args: { flags: {} },
  async run({ flags }, { io, runtime }) {
    const rt = runtime.get();
    const result = await migrate(rt.pool);
    const pgbossSchemaVersion = await migrateBoss(rt.config, databaseUrl(rt.config), rt.logger, JOBS);
    if (flags.json)
      return printJson(io.stdout, {
        ...result,
        pgboss_schema_version: pgbossSchemaVersion,
        database: rt.target,
      });
    for (const file of result.applied) io.stdout.write(`applied ${file}\n`);
    io.stdout.write(
      `database ${rt.target} is up to date (${result.alreadyApplied + result.applied.length} migrations, pg-boss schema ${pgbossSchemaVersion})\n`,
    );
  },
};
