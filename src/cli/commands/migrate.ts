import { JOBS } from '../../../jobs/index.ts';
import { directDatabaseUrl } from '../../db/pool.ts';
import { install } from '../../install/index.ts';
import { type MigrationPlan, migrationPlan, type PlanLock, type PlanStep } from '../../install/plan.ts';
import type { Command } from '../command.ts';
import { type Out, printable, printJson } from '../output.ts';
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
    "Bring the database to this build: this system's migrations and function files, the indexes on the engine's tables (built concurrently), pg-boss's schema, the jobs' queues and schedules, and tasker_lifecycle_settings, from the configuration (safe to run from several processes at once, and beside a live engine). --plan lists what it would do, statement by statement, with the locks each takes, and changes nothing.",
  args: {
    flags: {
      plan: {
        type: 'boolean',
        description:
          'list what migrate would do, statement by statement, with the lock each takes on which table and whether it rewrites it; change nothing',
      },
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
    if (flags.plan) {
      const plan = await migrationPlan({ directPool: rt.directPool(), config: rt.config, jobs: JOBS });
      if (flags.json) return printJson(io.stdout, { database: rt.target, ...plan });
      return printPlan(io.stdout, rt.target, plan);
    }
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
    for (const change of result.indexes)
      io.stdout.write(`index ${change.file.replace(/^indexes\/|\.sql$/g, '')}: ${change.steps.join(', ')}\n`);
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

const STATEMENT_WIDTH = 160;

/** The plan for people: one block per step (where from, the statement, its locks), then a summary. */
function printPlan(out: Out, target: string, plan: MigrationPlan): void {
  out.write(`migrate --plan for ${target}: what migrate would do, in order. Nothing was changed.\n\n`);
  const width = String(plan.steps.length).length;
  plan.steps.forEach((step, i) => {
    const pad = ' '.repeat(width + 2);
    out.write(`${String(i + 1).padStart(width)}. ${step.source}\n`);
    out.write(`${pad}${printable(cut(step.statement))}\n`);
    out.write(`${pad}${describeLocks(step)}; rewrites a table: ${rewrites(step.rewrites)}\n`);
    if (step.note) out.write(`${pad}${printable(step.note)}\n`);
  });
  out.write('\n');
  if (!plan.changes) {
    out.write('Nothing to do: the database is up to date with this build and configuration.\n');
    return;
  }
  const blocking = plan.steps.filter((s) =>
    s.locks.some((l) => l.engine && !l.created && l.blocks !== 'nothing'),
  );
  if (blocking.length === 0) {
    out.write("No step takes a lock that keeps the engine's reads or writes waiting.\n");
  } else {
    out.write(
      "Steps whose lock keeps the engine's writes waiting (each gives it up after migrate.lock_timeout_ms when it cannot have it, and holds it until its transaction commits):\n",
    );
    for (const s of blocking) {
      const locks = s.locks.filter((l) => l.engine && !l.created && l.blocks !== 'nothing');
      out.write(
        `  ${s.source}: ${locks.map((l) => `${l.mode} on ${l.table}`).join(', ')} (${cut(s.statement, 80)})\n`,
      );
    }
  }
}

function describeLocks(step: PlanStep): string {
  if (step.locks.length === 0) return 'no table lock';
  return step.locks.map((l) => describeLock(l, step.transaction)).join('; ');
}

function describeLock(l: PlanLock, transaction: boolean): string {
  if (l.created) return `${l.mode} on ${l.table} (created in this run)`;
  const whose = l.engine ? "the engine's table" : null;
  const blocks =
    l.blocks === 'nothing'
      ? 'blocks no read or write'
      : `blocks ${l.blocks}${transaction ? ' until the transaction commits' : ''}`;
  return `${l.mode} on ${l.table} (${whose ? `${whose}: ` : ''}${blocks})`;
}

function rewrites(value: boolean | null): string {
  return value === null ? 'depends' : value ? 'yes' : 'no';
}

function cut(text: string, max = STATEMENT_WIDTH): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
