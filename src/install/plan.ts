import type pg from 'pg';
import type { Config } from '../config/schema.ts';
import { ARCHIVE_TABLES, archiveDifferences, canFollowLiveTables } from '../db/queries/archive.ts';
import {
  archivePartitions,
  archiveTableShapes,
  canPartitionArchive,
} from '../db/queries/archive-partitions.ts';
import { PGBOSS_SCHEMA_VERSION, pgBossInstallState } from '../db/queries/boss-jobs.ts';
import { indexState, probeIndexDefinition, tableExists } from '../db/queries/engine-indexes.ts';
import { ENGINE_TABLES } from '../db/queries/engine-schema.ts';
import { appliedMigrations, appliedObjectFiles } from '../db/queries/schema-history.ts';
import { setLockAndStatementTimeouts } from '../db/queries/schema-locks.ts';
import { monthsFrom } from '../domain/archive-months.ts';
import { EngineSchemaError } from '../errors.ts';
import { migrationsDir } from '../paths.ts';
import { type AnyJob, deadLetterQueue, RUN_KEY } from '../worker/worker.ts';
import { PARTITIONS_AHEAD } from './archive-partitions.ts';
import { engineSchemaProblems, hasEngineTables } from './engine-schema.ts';
import { type IndexFile, indexSteps, readIndexFiles } from './index-files.ts';
import { queuePolicy } from './pgboss.ts';
import { settingsDifferences } from './settings.ts';
import { ENGINE_MIGRATION_VERSION, pendingMigrations, readMigrations, readObjectFiles } from './sql.ts';
import { type LockMode, lockBlocks, oneLine, splitStatements, statementEffect } from './statements.ts';

/**
 * `migrate --plan`: what `migrate` would do to this database, statement by statement, in the order
 * it would do it, each with the table locks it takes, whether it rewrites a table, and what those
 * locks keep waiting. Nothing is changed: the plan reads the catalogs and this system's records,
 * and the only things it builds (0001's shape, to check the engine's tables; each index on an empty
 * temporary copy of its table, to compare definitions) are built in transactions rolled back.
 * Locks are read from each statement's text (statements.ts).
 */

export interface PlanLock {
  /** The table (for an index statement, the index's table). */
  table: string;
  mode: LockMode;
  /** One of the workflow engine's tables. */
  engine: boolean;
  /** Created by the statement itself: nobody waits on it. */
  created: boolean;
  /** What the lock keeps waiting while it is held (or waited for). */
  blocks: 'nothing' | 'writes' | 'reads and writes';
}

export interface PlanStep {
  /** Where it comes from: a file under migrations/, "pg-boss", "settings", … */
  source: string;
  /** The statement, or what is done in words (pg-boss's steps). */
  statement: string;
  /** In a transaction: locks are held until it commits (a migration's, the object files'). */
  transaction: boolean;
  locks: PlanLock[];
  /** Whether it rewrites a table; null when that depends (a type change) or is unknown. */
  rewrites: boolean | null;
  note: string | null;
}

export interface MigrationPlan {
  /** Whether migrate would change anything (the lock and the checks change nothing). */
  changes: boolean;
  steps: PlanStep[];
}

export interface PlanOptions {
  /** A pool reaching PostgreSQL itself (database.direct_url), as migrate's. */
  directPool: pg.Pool;
  config: Readonly<Config>;
  jobs: readonly AnyJob[];
  dir?: string;
}

export async function migrationPlan(o: PlanOptions): Promise<MigrationPlan> {
  const dir = o.dir ?? migrationsDir;
  const client = await o.directPool.connect();
  try {
    return await plan(client, o, dir);
  } finally {
    client.release();
  }
}

async function plan(client: pg.PoolClient, o: PlanOptions, dir: string): Promise<MigrationPlan> {
  const steps: PlanStep[] = [];
  let changes = false;
  const add = (
    step: Omit<PlanStep, 'note' | 'transaction'> & { note?: string | null; transaction?: boolean },
  ) => steps.push({ ...step, transaction: step.transaction ?? false, note: step.note ?? null });
  // Tables a step of this plan creates: nobody but this run can be waiting on them after.
  const createdHere = new Set<string>();
  const lock = (table: string, mode: LockMode, created = false): PlanLock => {
    if (created) createdHere.add(table);
    return {
      table,
      mode,
      engine: (ENGINE_TABLES as readonly string[]).includes(table),
      created: created || createdHere.has(table),
      blocks: lockBlocks(mode),
    };
  };

  add({
    source: 'migrate',
    statement: 'SELECT pg_try_advisory_lock(7411001, 1), polled',
    locks: [],
    rewrites: false,
    note: `one migrate at a time: waits up to migrate.schema_lock_wait_seconds (${o.config.migrate.schema_lock_wait_seconds} s) for another`,
  });

  const migrations = readMigrations(dir);
  const applied = await appliedMigrations(client);
  const pending = pendingMigrations(migrations, applied); // refuses as migrate would
  const engineFirst = await hasEngineTables(client);
  const core = migrations.find((m) => m.version === ENGINE_MIGRATION_VERSION);
  if (engineFirst && core) {
    const problems = await engineSchemaProblems(client, core.sql);
    if (problems.length > 0) {
      throw new EngineSchemaError(
        "migrate would refuse: the workflow engine's tables in this database lack what tasker-lifecycle needs",
        problems,
      );
    }
    add({
      source: 'migrations/0001_core_tables.sql',
      statement: "checks the engine's tables against 0001 (its shape built in a scratch schema, rolled back)",
      locks: [],
      rewrites: false,
    });
  }

  // Indexes on the engine's tables, before the numbered migrations (where the tables exist).
  const indexFiles = readIndexFiles(dir);
  const plannedIndexes = new Set<string>();
  if (engineFirst) {
    for (const f of indexFiles) {
      const indexPlan = await planIndex(client, f);
      if (indexPlan === null) continue;
      for (const step of indexPlan) {
        changes = true;
        plannedIndexes.add(f.name);
        add({
          source: f.file,
          statement: oneLine(step.sql),
          locks:
            step.action === 'rename'
              ? [{ ...lock(step.index, 'SHARE UPDATE EXCLUSIVE'), table: `${step.index} (the index)` }]
              : [lock(f.table, 'SHARE UPDATE EXCLUSIVE')],
          rewrites: false,
          note: indexNote(step.action, step.why),
        });
      }
    }
  }
  const existing = new Set<string>();
  for (const f of indexFiles)
    if (plannedIndexes.has(f.name) || (await indexState(client, f.name))) existing.add(f.name);

  // The pending numbered migrations, statement by statement.
  for (const m of pending) {
    changes = true;
    const source = `migrations/${m.file}`;
    if (m.version === ENGINE_MIGRATION_VERSION && engineFirst) {
      add({
        source,
        statement: 'INSERT INTO tasker_lifecycle_migrations … (0001 recorded as adopted, not run)',
        locks: [],
        rewrites: false,
      });
      continue;
    }
    for (const statement of splitStatements(m.sql)) {
      const effect = statementEffect(statement);
      const ifNotExists = /^create index if not exists (\S+) on/i.exec(oneLine(statement));
      if (ifNotExists && existing.has(ifNotExists[1]!.toLowerCase())) {
        add({
          source,
          statement: oneLine(statement),
          transaction: true,
          locks: [],
          rewrites: false,
          note: `not run: ${ifNotExists[1]} exists (its index file builds it concurrently), and the statement would only take the table's SHARE lock until ${m.file} commits`,
        });
        continue;
      }
      add({
        source,
        statement: oneLine(statement),
        transaction: true,
        locks: await resolveLocks(client, effect.locks, lock),
        rewrites: effect.rewrites,
        note: effect.note ?? null,
      });
    }
    add({
      source,
      statement: 'INSERT INTO tasker_lifecycle_migrations (version, name, checksum) …; COMMIT',
      transaction: true,
      locks: [],
      rewrites: false,
    });
  }

  // Object files whose checksum changed, in one transaction.
  const recorded = new Map((await appliedObjectFiles(client)).map((r) => [r.file, r.checksum]));
  for (const f of readObjectFiles(dir).filter((o) => recorded.get(o.file) !== o.checksum)) {
    changes = true;
    for (const statement of splitStatements(f.sql)) {
      const effect = statementEffect(statement);
      add({
        source: `migrations/${f.file}`,
        statement: oneLine(statement),
        transaction: true,
        locks: await resolveLocks(client, effect.locks, lock),
        rewrites: effect.rewrites,
        note: `${recorded.has(f.file) ? 'changed' : 'new'}; ${effect.note ?? 'all changed object files in one transaction'}`,
      });
    }
  }

  // The indexes again, after the numbered migrations: where 0001 creates the engine's tables now.
  if (!engineFirst) {
    for (const f of indexFiles) {
      changes = true;
      add({
        source: f.file,
        statement: oneLine(f.statement),
        locks: [lock(f.table, 'SHARE UPDATE EXCLUSIVE')],
        rewrites: false,
        note: `${f.table} is created by 0001 in this run: after the numbered migrations, the index is checked against this file and built (or built beside a migration's older definition and swapped in) concurrently`,
      });
    }
  } else {
    for (const f of indexFiles.filter(
      (i) => !plannedIndexes.has(i.name) && recorded.get(i.file) !== i.checksum,
    )) {
      changes = true;
      add({
        source: f.file,
        statement: 'INSERT INTO tasker_lifecycle_sql_objects … (the index matches its file: recorded)',
        locks: [],
        rewrites: false,
      });
    }
  }

  // The archive tables follow the live ones.
  if (await canFollowLiveTables(client)) {
    for (const d of await archiveDifferences(client)) {
      changes = true;
      if (d.problem !== null) {
        add({
          source: 'archive tables (src/install/archive-tables.ts)',
          statement: `${d.archive_table}${d.column_name ? `.${d.column_name}` : ''}: cannot follow the live table`,
          locks: [],
          rewrites: false,
          note: `migrate would refuse here, after the migrations: ${d.problem}`,
        });
        continue;
      }
      const widen = d.change?.startsWith('widen') ?? false;
      add({
        source: 'archive tables (src/install/archive-tables.ts)',
        statement: `${d.archive_table}.${d.column_name}: ${d.change}`,
        locks: [lock(d.archive_table, 'ACCESS EXCLUSIVE')],
        rewrites: widen ? null : false,
        note: widen
          ? 'a widened type may rewrite the archive table: PostgreSQL decides on an empty copy; over archive.max_rewrite_rows rows it is left for migrate --allow-archive-rewrites'
          : null,
      });
    }
  } else if (migrations.some((m) => m.version === 30)) {
    add({
      source: 'sync_archive_tables',
      statement: 'the archive tables follow the live tables (after 0030 is applied)',
      locks: [],
      rewrites: false,
      note: 'archive tables created in this run have every live column already',
    });
  }

  // The archive's monthly partitions (src/install/archive-partitions.ts, docs/archival.md).
  const shapes = (await canPartitionArchive(client)) ? await archiveTableShapes(client) : null;
  const toAdopt =
    shapes === null
      ? [...ARCHIVE_TABLES]
      : shapes.filter((t) => t.relkind !== 'p').map((t) => t.archive_table);
  const adoptSource = 'archive partitions (src/install/archive-partitions.ts)';
  for (const table of toAdopt) {
    changes = true;
    add({
      source: adoptSource,
      statement: `ALTER TABLE ${table} ADD CONSTRAINT ${table}_adopt_range CHECK (archived_at < <bound>) NOT VALID; VALIDATE CONSTRAINT`,
      locks: [lock(table, 'ACCESS EXCLUSIVE'), lock(table, 'SHARE UPDATE EXCLUSIVE')],
      rewrites: false,
      note: 'each in its own transaction: the ADD is a catalog change; VALIDATE scans the table while archival, restores and reads go on',
    });
    add({
      source: adoptSource,
      statement: `CREATE UNIQUE INDEX CONCURRENTLY ${table}_adopt_key ON ${table} (<key>, archived_at)`,
      locks: [lock(table, 'SHARE UPDATE EXCLUSIVE')],
      rewrites: false,
    });
  }
  if (toAdopt.length > 0) {
    add({
      source: adoptSource,
      statement: `counts the archive into the rollup, then makes ${toAdopt.join(', ')} partitioned, each old table attached as <table>_adopted (tasker_lifecycle_adopt_archive_table)`,
      locks: toAdopt.flatMap((t) => [lock(t, 'SHARE'), lock(t, 'ACCESS EXCLUSIVE')]),
      rewrites: false,
      note: 'one transaction; SHARE for the count (archival and restore wait for it, reads do not), then catalog changes only: the validated CHECKs prove each range, so nothing is scanned or rewritten',
    });
  }
  if (shapes !== null) {
    const partitions = await archivePartitions(client);
    for (const month of monthsFrom(new Date(), PARTITIONS_AHEAD))
      for (const table of ARCHIVE_TABLES) {
        const end = new Date(Date.UTC(month.getUTCFullYear(), month.getUTCMonth() + 1, 1));
        if (
          partitions.some(
            (p) => p.archive_table === table && (p.from_at ?? month) <= month && (p.to_at ?? end) >= end,
          )
        )
          continue;
        changes = true;
        add({
          source: adoptSource,
          statement: `makes the ${month.toISOString().slice(0, 7)} partition of ${table} (CREATE TABLE … LIKE, then ATTACH PARTITION)`,
          locks: [lock(table, 'SHARE UPDATE EXCLUSIVE')],
          rewrites: false,
          note: 'the new table is empty: nothing is scanned; no archival batch, restore or read waits on this lock',
        });
      }
  }

  // pg-boss.
  const queues = o.jobs.flatMap((j) => [j.name, deadLetterQueue(j)]);
  const boss = await pgBossInstallState(client, queues, RUN_KEY);
  const bossLock = (what: string): PlanLock[] => [
    { table: what, mode: 'ROW EXCLUSIVE', engine: false, created: false, blocks: 'nothing' },
  ];
  if (boss.version !== PGBOSS_SCHEMA_VERSION) changes = true;
  add({
    source: 'pg-boss',
    statement:
      boss.version === null
        ? `creates pg-boss's schema (pgboss.*) at version ${PGBOSS_SCHEMA_VERSION}`
        : boss.version === PGBOSS_SCHEMA_VERSION
          ? `pg-boss's schema is at version ${PGBOSS_SCHEMA_VERSION}: nothing to do`
          : `upgrades pg-boss's schema from version ${boss.version} to ${PGBOSS_SCHEMA_VERSION}`,
    locks: [],
    rewrites: boss.version !== null && boss.version !== PGBOSS_SCHEMA_VERSION ? null : false,
    note:
      boss.version === PGBOSS_SCHEMA_VERSION
        ? null
        : "pg-boss's own migration, under its own advisory lock, on its tables only (pgboss.*)",
  });
  for (const job of o.jobs) {
    const exists = boss.queues.includes(job.name) && boss.queues.includes(deadLetterQueue(job));
    if (!exists) changes = true;
    add({
      source: 'pg-boss',
      statement: `${exists ? 'updates' : 'creates'} queue ${job.name} (${queuePolicy(job)}, dead letters to ${deadLetterQueue(job)}) with retry, expiry and heartbeat settings from [worker]`,
      locks: bossLock('pgboss.queue'),
      rewrites: false,
    });
    const cron = job.schedule(o.config);
    const have = boss.schedules[job.name] ?? null;
    if (cron !== have) changes = true;
    add({
      source: 'pg-boss',
      statement:
        cron === null
          ? `removes the schedule of ${job.name} (disabled)${have === null ? ': there is none' : ''}`
          : `schedules ${job.name} at "${cron}"${have === cron ? ' (as it is)' : have === null ? '' : ` (was "${have}")`}`,
      locks: bossLock('pgboss.schedule'),
      rewrites: false,
    });
  }

  // The settings row.
  const settingsTable = applied.some((m) => m.version === 3);
  const differences = settingsTable ? await settingsDifferences(client, o.config) : [];
  if (!settingsTable || differences.length > 0) changes = true;
  add({
    source: 'settings',
    statement: !settingsTable
      ? 'writes tasker_lifecycle_settings (made by 0003) from the configuration'
      : differences.length === 0
        ? 'tasker_lifecycle_settings is as the configuration says: nothing to write'
        : `writes tasker_lifecycle_settings from the configuration: ${differences.join('; ')}`,
    locks: [lock('tasker_lifecycle_settings', 'ROW EXCLUSIVE')],
    rewrites: false,
  });
  return { changes, steps };
}

/** The steps of one index file's index, or null when it matches its file. */
async function planIndex(client: pg.PoolClient, f: IndexFile) {
  if (!(await tableExists(client, f.table))) return null;
  await client.query('BEGIN');
  let wanted: string;
  try {
    await setLockAndStatementTimeouts(client, 5_000, 30_000, true);
    wanted = await probeIndexDefinition(client, f.table, f.tail);
  } finally {
    await client.query('ROLLBACK');
  }
  const steps = await indexSteps(client, f, wanted);
  return steps.length === 0 ? null : steps;
}

function indexNote(action: 'build' | 'drop' | 'rename', why: string): string {
  const what =
    action === 'build'
      ? 'CONCURRENTLY, outside a transaction: reads and writes go on; it waits for the transactions open on the table'
      : action === 'drop'
        ? 'CONCURRENTLY, outside a transaction: reads and writes go on'
        : 'SHARE UPDATE EXCLUSIVE on the index only';
  return `${why}; ${what}`;
}

/** Each lock of a statement on its table: an index's table looked up. */
async function resolveLocks(
  client: pg.PoolClient,
  locks: ReturnType<typeof statementEffect>['locks'],
  lock: (table: string, mode: LockMode, created?: boolean) => PlanLock,
): Promise<PlanLock[]> {
  const out: PlanLock[] = [];
  for (const l of locks) {
    if (!l.index) {
      out.push(lock(l.relation, l.mode, l.created ?? false));
      continue;
    }
    const state = await indexState(client, l.relation);
    out.push(lock(state?.table ?? `${l.relation} (an index not there now)`, l.mode));
  }
  return out;
}
