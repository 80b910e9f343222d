/**
 * Installing beside the workflow engine (issue 8 §1): the engine's tables came first, with columns
 * of their own in every table. `migrate` keeps them as they are and adds only this system's
 * objects, or refuses (exit 2) naming what is missing; the archive tables follow the live tables
 * as the engine changes them, when `migrate` runs (archival and restore refuse meanwhile, naming the
 * columns and the command), and archive -> restore gives back every column exactly.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import archiveJob, {
  type ArchiveFinishedTasksOptions,
  runArchival,
} from '../../jobs/archive-finished-tasks.ts';
import { loadConfig } from '../../src/config/load.ts';
import { restoreArchivedTask } from '../../src/db/queries/archive.ts';
import { ArchiveRefusedError, EngineSchemaError } from '../../src/errors.ts';
import { migrate, readMigrations } from '../../src/install/sql.ts';
import { migrationsDir } from '../../src/paths.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { graphRows, insertFinishedGraphs, tableCounts, totalCounts } from '../helpers/archive-factories.ts';
import { runCli } from '../helpers/cli-process.ts';
import { createTestDatabase, resetTables, type TestDatabase } from '../helpers/db.ts';
import { hoursBefore, insertTemplate, NOW } from '../helpers/factories.ts';

const CORE_SQL = readFileSync(join(migrationsDir, '0001_core_tables.sql'), 'utf8');

/** The engine's own columns in each of its tables: nullable, NOT NULL with a default, generated. */
const ENGINE_EXTRAS = `
  DROP INDEX idx_task_transitions_in_flight; -- ours, not the engine's
  ALTER TABLE tasker_task_namespaces ADD COLUMN engine_note text, ADD COLUMN tenant text NOT NULL DEFAULT 'acme';
  ALTER TABLE tasker_named_tasks ADD COLUMN engine_note text, ADD COLUMN tenant text NOT NULL DEFAULT 'acme';
  ALTER TABLE tasker_named_steps ADD COLUMN engine_note text, ADD COLUMN tenant text NOT NULL DEFAULT 'acme';
  ALTER TABLE tasker_tasks ADD COLUMN bypass_steps jsonb, ADD COLUMN tenant text NOT NULL DEFAULT 'acme',
    ADD COLUMN retry_budget integer NOT NULL DEFAULT 3,
    ADD COLUMN context_bytes integer GENERATED ALWAYS AS (octet_length(context::text)) STORED;
  ALTER TABLE tasker_workflow_steps ADD COLUMN skippable boolean, ADD COLUMN tenant text NOT NULL DEFAULT 'acme';
  ALTER TABLE tasker_workflow_step_edges ADD COLUMN weight numeric(6, 2), ADD COLUMN tenant text NOT NULL DEFAULT 'acme';
  ALTER TABLE tasker_task_transitions ADD COLUMN reason_code text, ADD COLUMN tenant text NOT NULL DEFAULT 'acme';
  ALTER TABLE tasker_workflow_step_transitions ADD COLUMN error_class text,
    ADD COLUMN tenant text NOT NULL DEFAULT 'acme';`;

/** Values in every extra column, none of them a default; bypass_steps in jsonb's own spelling. */
const EXTRA_VALUES = `
  UPDATE tasker_tasks SET bypass_steps = '{"skip": ["b", "a"], "why": "manual \\u00e9 \\"quoted\\"", "n": 1.50}',
                          tenant = 'globex', retry_budget = 7;
  UPDATE tasker_workflow_steps SET skippable = true, tenant = 'globex';
  UPDATE tasker_workflow_step_edges SET weight = 12.5, tenant = 'globex';
  UPDATE tasker_task_transitions SET reason_code = 'R' || sort_key, tenant = 'globex';
  UPDATE tasker_workflow_step_transitions SET error_class = 'E' || sort_key, tenant = 'globex';`;

const OPTIONS: ArchiveFinishedTasksOptions = {
  ...archiveJob.optionsFromConfig(loadConfig({ env: {} }).config),
  dry_run: false,
  pause_between_batches_ms: 0,
  duty_cycle_percent: 100,
  batch_target_ms: 500,
};

async function engineDatabase(extraSql: string): Promise<TestDatabase> {
  const db = await createTestDatabase({ template: false });
  await db.pool.query(CORE_SQL);
  await db.pool.query(extraSql);
  return db;
}

async function columns(db: TestDatabase, table: string): Promise<string[]> {
  const { rows } = await db.pool.query<{ c: string }>(
    `SELECT attname || ' ' || format_type(atttypid, atttypmod) AS c FROM pg_attribute
      WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [table],
  );
  return rows.map((r) => r.c);
}

describe("the engine's tables came first, with columns of their own in every table", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await engineDatabase(ENGINE_EXTRAS);
  });
  afterAll(async () => {
    await db.drop();
  });

  function run(options: Partial<ArchiveFinishedTasksOptions> = {}) {
    const ctx = { pool: db.pool, now: NOW, logger: silentLogger(), signal: new AbortController().signal };
    return runArchival(ctx, { ...OPTIONS, ...options });
  }

  async function oldGraphs(count: number): Promise<string[]> {
    const { rows } = await db.pool.query<{ named_task_uuid: string }>(
      "SELECT named_task_uuid FROM tasker_named_tasks WHERE name = 'invoice'",
    );
    const template = rows[0] ?? (await insertTemplate(db.pool, { namespace: 'billing', name: 'invoice' }));
    return insertFinishedGraphs(db.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: hoursBefore(NOW, 24 * 40),
      count,
      steps: 3,
      resolvedDlqEvery: 2,
    });
  }

  it('migrate keeps them as they are, records 0001 as adopted, and adds only its own objects', async () => {
    const engineColumns = await columns(db, 'tasker_tasks');
    const result = await migrate(db.pool);
    expect(result.engineTables).toBe('adopted');
    expect(result.applied).toEqual(
      readMigrations()
        .filter((m) => m.version !== 1)
        .map((m) => m.file),
    );
    expect(await columns(db, 'tasker_tasks')).toEqual(engineColumns);
    // the index detection reads is there, as 0001 would have made it
    const { rows: index } = await db.pool.query(
      "SELECT to_regclass('idx_task_transitions_in_flight') IS NOT NULL AS ok",
    );
    expect(index).toEqual([{ ok: true }]);
    const { rows } = await db.pool.query('SELECT version FROM tasker_lifecycle_migrations ORDER BY version');
    expect(rows.map((r) => r.version)).toEqual(readMigrations().map((m) => m.version));
    // the archive tables carry the engine's columns (plain: a generated value is stored as it was)
    expect(await columns(db, 'tasker_tasks_archive')).toEqual([
      ...engineColumns,
      'archived_at timestamp with time zone',
    ]);
    // and a second run has nothing to do
    expect(await migrate(db.pool)).toMatchObject({
      applied: [],
      engineTables: 'verified',
      archiveChanges: [],
    });
  });

  it('archive then restore gives back every column of every table, byte for byte', async () => {
    await resetTables(db.pool);
    const tasks = await oldGraphs(3);
    await db.pool.query(EXTRA_VALUES);
    const before = await graphRows(db.pool, 'live');
    const { rows: raw } = await db.pool.query(
      'SELECT task_uuid, bypass_steps::text AS b, context_bytes FROM tasker_tasks ORDER BY task_uuid',
    );

    expect(await run()).toMatchObject({ tasks_archived: 3 });
    expect(await graphRows(db.pool, 'archive')).toEqual(before);
    for (const task of tasks) await restoreArchivedTask(db.pool, task);
    expect(await graphRows(db.pool, 'live')).toEqual(before);
    expect(
      (
        await db.pool.query(
          'SELECT task_uuid, bypass_steps::text AS b, context_bytes FROM tasker_tasks ORDER BY task_uuid',
        )
      ).rows,
    ).toEqual(raw);
    expect(Object.values(await tableCounts(db.pool, 'archive'))).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('archival and restore refuse a column the engine adds or a type it widens, naming it and `migrate`, and move nothing; after migrate the archive follows and both move rows', async () => {
    await resetTables(db.pool);
    const [early] = await oldGraphs(1);
    expect(await run()).toMatchObject({ tasks_archived: 1 }); // archived before the engine's change
    await db.pool.query(`
      ALTER TABLE tasker_tasks ADD COLUMN priority_reason jsonb;
      ALTER TABLE tasker_workflow_steps ADD COLUMN cost numeric(8, 2) NOT NULL DEFAULT 1.25;
      ALTER TABLE tasker_tasks ALTER COLUMN initiator TYPE varchar(512);
      ALTER TABLE tasker_task_transitions ALTER COLUMN sort_key TYPE bigint;`);
    const tasks = await oldGraphs(2);
    for (const sql of [
      `UPDATE tasker_tasks SET priority_reason = '{"by": "ops"}', initiator = repeat('x', 300) WHERE task_uuid = ANY ($1)`,
      'UPDATE tasker_workflow_steps SET cost = 99.99 WHERE task_uuid = ANY ($1)',
      'UPDATE tasker_task_transitions SET sort_key = sort_key + 5000000000 WHERE task_uuid = ANY ($1)',
    ]) {
      await db.pool.query(sql, [tasks]);
    }
    const before = await graphRows(db.pool, 'live', tasks);
    const totals = await totalCounts(db.pool);
    const archiveColumns = await columns(db, 'tasker_tasks_archive');

    // no migrate yet: every run, dry or real, and every restore refuses, naming each column and the command
    for (const attempt of [
      () => run({ dry_run: true }),
      () => run(),
      () => restoreArchivedTask(db.pool, early!),
    ]) {
      const refusal = attempt();
      await expect(refusal).rejects.toThrow(ArchiveRefusedError);
      await expect(refusal).rejects.toThrow(
        /^(archival|restore) refused, nothing was moved: the archive tables differ/,
      );
      for (const named of [
        'tasker_tasks_archive.priority_reason: add jsonb',
        'tasker_tasks_archive.initiator: widen character varying(128) to character varying(512)',
        'tasker_workflow_steps_archive.cost: add numeric(8,2)',
        'tasker_task_transitions_archive.sort_key: widen integer to bigint',
        'run `tasker-lifecycle migrate`',
      ]) {
        await expect(refusal).rejects.toThrow(named);
      }
    }
    // and none of them changed a table or moved a row
    expect(await columns(db, 'tasker_tasks_archive')).toEqual(archiveColumns);
    expect(await columns(db, 'tasker_task_transitions_archive')).toContain('sort_key integer');
    expect(await totalCounts(db.pool)).toEqual(totals);
    expect(await graphRows(db.pool, 'live', tasks)).toEqual(before);

    // migrate brings the archive tables up to date (small tables: the rewrite of sort_key is allowed)
    const migrated = await migrate(db.pool);
    expect(migrated.archiveChanges).toEqual(
      expect.arrayContaining([
        'tasker_tasks_archive.priority_reason: add jsonb',
        'tasker_tasks_archive.initiator: widen character varying(128) to character varying(512)',
        'tasker_workflow_steps_archive.cost: add numeric(8,2)',
        'tasker_task_transitions_archive.sort_key: widen integer to bigint',
      ]),
    );
    expect(migrated).toMatchObject({ archiveChangesLeft: [], archivalKeyProblems: [] });
    expect(await columns(db, 'tasker_tasks_archive')).toEqual(
      expect.arrayContaining(['priority_reason jsonb', 'initiator character varying(512)']),
    );
    expect(await columns(db, 'tasker_task_transitions_archive')).toContain('sort_key bigint');

    // then archival moves the rows, every value as it was, and restore gives them back
    expect(await run({ dry_run: true })).toMatchObject({ tasks_archived: 2 });
    expect(await run()).toMatchObject({ tasks_archived: 2 });
    expect(await graphRows(db.pool, 'archive', tasks)).toEqual(before);
    for (const task of tasks) await restoreArchivedTask(db.pool, task);
    expect(await graphRows(db.pool, 'live', tasks)).toEqual(before);

    // the task archived before the change comes back as the engine's own rows did: with the default
    await restoreArchivedTask(db.pool, early!);
    const { rows } = await db.pool.query(
      'SELECT DISTINCT cost::text AS cost FROM tasker_workflow_steps WHERE task_uuid = $1',
      [early],
    );
    expect(rows).toEqual([{ cost: '1.25' }]);
  });

  it('two archivers meeting a column the engine just added: both refuse; after migrate both move, each task once', async () => {
    await resetTables(db.pool);
    const tasks = await oldGraphs(12);
    await db.pool.query('ALTER TABLE tasker_workflow_step_transitions ADD COLUMN worker_id text');
    await db.pool.query("UPDATE tasker_workflow_step_transitions SET worker_id = 'w-' || sort_key");
    const before = await graphRows(db.pool, 'live');
    const refused = await Promise.allSettled([run({ batch_size: 2 }), run({ batch_size: 2 })]);
    for (const r of refused) {
      expect(r).toMatchObject({ status: 'rejected' });
      expect(String((r as PromiseRejectedResult).reason)).toContain(
        'tasker_workflow_step_transitions_archive.worker_id: add text',
      );
    }
    expect(await graphRows(db.pool, 'live')).toEqual(before);

    expect((await migrate(db.pool)).archiveChanges).toEqual([
      'tasker_workflow_step_transitions_archive.worker_id: add text',
    ]);
    const runs = await Promise.all([run({ batch_size: 2 }), run({ batch_size: 2 })]);
    expect(runs[0]!.tasks_archived + runs[1]!.tasks_archived).toBe(tasks.length);
    expect(await graphRows(db.pool, 'archive')).toEqual(before);
    expect(Object.values(await tableCounts(db.pool, 'live'))).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('archival refuses, moving nothing, when the archive could not store a value as it is; restore refuses to drop one', async () => {
    await resetTables(db.pool);
    const [kept] = await oldGraphs(1);
    expect(await run()).toMatchObject({ tasks_archived: 1 });
    await oldGraphs(2);
    const totals = await totalCounts(db.pool);
    const live = await tableCounts(db.pool, 'live');

    await db.pool.query(`ALTER TABLE tasker_workflow_step_edges ADD COLUMN archived_at timestamptz;
                         ALTER TABLE tasker_tasks ALTER COLUMN reason TYPE jsonb USING to_jsonb(reason)`);
    for (const dryRun of [true, false]) {
      const refused = run({ dry_run: dryRun });
      await expect(refused).rejects.toThrow(
        /the archive tables cannot take every column of the live tables as they are: .*tasker_tasks\.reason is jsonb but tasker_tasks_archive\.reason is character varying\(128\).*tasker_workflow_step_edges\.archived_at: the archive table tasker_workflow_step_edges_archive uses that name/,
      );
    }
    await expect(migrate(db.pool)).rejects.toThrow(EngineSchemaError);
    expect(await tableCounts(db.pool, 'live')).toEqual(live);
    expect(await totalCounts(db.pool)).toEqual(totals);

    // the engine drops a column an archived task has a value in: restore refuses, naming it
    await db.pool.query(`ALTER TABLE tasker_workflow_step_edges DROP COLUMN archived_at;
                         ALTER TABLE tasker_tasks ALTER COLUMN reason TYPE varchar(128) USING reason #>> '{}';
                         UPDATE tasker_tasks_archive SET bypass_steps = '{"keep": true}';
                         ALTER TABLE tasker_tasks DROP COLUMN bypass_steps`);
    await expect(restoreArchivedTask(db.pool, kept!)).rejects.toThrow(
      'cannot restore: tasker_tasks_archive.bypass_steps hold values that tasker_tasks has no column for any more',
    );
    expect(await totalCounts(db.pool)).toEqual(totals);
    await db.pool.query('ALTER TABLE tasker_tasks ADD COLUMN bypass_steps jsonb');
    await restoreArchivedTask(db.pool, kept!);
    const { rows } = await db.pool.query('SELECT bypass_steps FROM tasker_tasks WHERE task_uuid = $1', [
      kept,
    ]);
    expect(rows).toEqual([{ bypass_steps: { keep: true } }]);
  });
});

describe("the engine's tables lack what this system needs", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await engineDatabase(`
      DROP INDEX idx_task_transitions_uuid_most_recent;
      ALTER TABLE tasker_workflow_steps DROP COLUMN results;
      ALTER TABLE tasker_tasks ALTER COLUMN priority TYPE text;
      DROP TABLE tasker_workflow_step_edges;
      DROP FUNCTION transition_task_state_atomic(uuid, varchar, varchar, uuid, jsonb);`);
  });
  afterAll(async () => {
    await db.drop();
  });
  beforeEach(async () => {
    await db.pool.query('DROP TABLE IF EXISTS tasker_lifecycle_migrations');
  });

  it('migrate refuses with exit 2, names every gap, and changes nothing', async () => {
    const r = await runCli(['migrate'], { DATABASE_URL: db.url });
    expect(r.code).toBe(2);
    for (const gap of [
      'table tasker_workflow_step_edges is missing',
      'tasker_workflow_steps.results is missing (jsonb expected)',
      'tasker_tasks.priority is text; integer expected',
      'tasker_task_transitions: no unique index on (task_uuid) WHERE most_recent',
      'function transition_task_state_atomic(uuid, character varying, character varying, uuid, jsonb) is missing',
    ]) {
      expect(r.stderr).toContain(gap);
    }
    expect(r.stderr).toContain('nothing was changed');
    const { rows } = await db.pool.query(
      `SELECT to_regclass('tasker_tasks_dlq') AS dlq, to_regclass('tasker_lifecycle_probe.tasker_tasks') AS probe,
              (SELECT count(*) FROM tasker_lifecycle_migrations) AS recorded`,
    );
    expect(rows).toEqual([{ dlq: null, probe: null, recorded: 0 }]);
  });

  it('in-process, the same refusal is an EngineSchemaError (a usage error: exit 2)', async () => {
    await expect(migrate(db.pool)).rejects.toThrow(EngineSchemaError);
  });
});

describe('the review case: a migrated database, then the engine adds bypass_steps jsonb', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });

  it('`archive` refuses until `migrate`; then `archive` and `restore` give the value back byte for byte', async () => {
    await db.pool.query('ALTER TABLE tasker_tasks ADD COLUMN bypass_steps jsonb');
    const template = await insertTemplate(db.pool, { namespace: 'billing', name: 'invoice' });
    const { rows: now } = await db.pool.query<{ now: Date }>('SELECT now() AS now');
    const [task] = await insertFinishedGraphs(db.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: hoursBefore(now[0]!.now, 24 * 40),
    });
    await db.pool.query(
      `UPDATE tasker_tasks SET bypass_steps = '{"skip": ["b", "a"], "n": 1.50, "s": "\\u00e9"}' WHERE task_uuid = $1`,
      [task],
    );
    const value = 'SELECT bypass_steps::text AS b FROM tasker_tasks WHERE task_uuid = $1';
    const before = (await db.pool.query(value, [task])).rows;
    expect(before).toEqual([{ b: '{"n": 1.50, "s": "é", "skip": ["b", "a"]}' }]);

    const refused = await runCli(['archive', '--json'], { DATABASE_URL: db.url });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('tasker_tasks_archive.bypass_steps: add jsonb');
    expect(refused.stderr).toContain('run `tasker-lifecycle migrate`');
    expect((await db.pool.query(value, [task])).rows).toEqual(before);
    const migrated = await runCli(['migrate'], { DATABASE_URL: db.url });
    expect(migrated.code).toBe(0);
    expect(migrated.stdout).toContain(
      'archive table follows its live table: tasker_tasks_archive.bypass_steps: add jsonb',
    );

    const archived = await runCli(['archive', '--json'], { DATABASE_URL: db.url });
    expect(archived.code).toBe(0);
    expect(JSON.parse(archived.stdout)).toMatchObject({ tasks_archived: 1 });
    const restored = await runCli(['restore', task!], { DATABASE_URL: db.url });
    expect(restored.code).toBe(0);
    expect((await db.pool.query(value, [task])).rows).toEqual(before);
  });
});
