/**
 * The archive tables partitioned by month of archived_at (issue 24, migrations/0210,
 * src/install/archive-partitions.ts): an existing archive is adopted without being rewritten,
 * archival writes each batch into its month's partition across a month boundary (partitions made
 * ahead by the job, never inside a batch), one archived copy per task is kept by the archival path,
 * a restore finds a task in any partition and takes the newest copy, and the monthly rollup stays
 * equal to a full count of the archive.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import archiveJob, {
  type ArchiveFinishedTasksOptions,
  runArchival,
} from '../../jobs/archive-finished-tasks.ts';
import { loadConfig } from '../../src/config/load.ts';
import { dropExpiredArchiveMonths } from '../../src/db/archive-retention.ts';
import { restoreArchivedTask } from '../../src/db/queries/archive.ts';
import {
  addPartitionsForMonths,
  archivePartitions,
  compactRollup,
} from '../../src/db/queries/archive-partitions.ts';
import { monthsFrom } from '../../src/domain/archive-months.ts';
import { migrate } from '../../src/install/sql.ts';
import { migrationsDir } from '../../src/paths.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import {
  archivedTaskUuids,
  graphRows,
  insertFinishedGraphs,
  TABLES,
  tasksInBoth,
} from '../helpers/archive-factories.ts';
import {
  fullMonthCounts,
  rollupMonthCounts,
  statisticsByFullAggregate,
  statisticsFromView,
} from '../helpers/archive-rollup.ts';
import { startCli } from '../helpers/cli-process.ts';
import { createTestDatabase, resetTables, type TestDatabase } from '../helpers/db.ts';
import { hoursBefore, insertTemplate, NOW } from '../helpers/factories.ts';
import { previousReleaseMigrations } from '../helpers/previous-release.ts';
import { waitFor } from '../helpers/wait.ts';

const OPTIONS: ArchiveFinishedTasksOptions = {
  ...archiveJob.optionsFromConfig(loadConfig({ env: {} }).config),
  dry_run: false,
  pause_between_batches_ms: 0,
  duty_cycle_percent: 100,
  batch_target_ms: 500,
};

function archival(db: TestDatabase, now: Date, options: Partial<ArchiveFinishedTasksOptions> = {}) {
  const ctx = { pool: db.pool, now, logger: silentLogger(), signal: new AbortController().signal };
  return runArchival(ctx, { ...OPTIONS, ...options });
}

async function graphs(
  db: TestDatabase,
  count: number,
  finishedAt: Date,
  name = `t${count}`,
): Promise<string[]> {
  const template = await insertTemplate(db.pool, { namespace: 'billing', name });
  return insertFinishedGraphs(db.pool, {
    named_task_uuid: template.named_task_uuid,
    state: 'complete',
    finishedAt,
    count,
    steps: 3,
    resolvedDlqEvery: 2,
  });
}

/** Which partition holds each archived row, per archive table: partition name -> rows. */
async function rowsByPartition(db: TestDatabase, table: string): Promise<Record<string, number>> {
  const { rows } = await db.pool.query<{ p: string; n: number }>(
    `SELECT tableoid::regclass::text AS p, count(*)::int AS n FROM ${table} GROUP BY 1`,
  );
  return Object.fromEntries(rows.map((r) => [r.p, r.n]));
}

async function expectRollupEqualsCount(db: TestDatabase): Promise<void> {
  expect(await rollupMonthCounts(db.pool)).toEqual(await fullMonthCounts(db.pool));
  expect(await statisticsFromView(db.pool)).toEqual(await statisticsByFullAggregate(db.pool));
}

describe('adopting an existing archive', () => {
  let db: TestDatabase;
  const previous = previousReleaseMigrations();
  beforeAll(async () => {
    db = await createTestDatabase({ template: false });
  });
  afterAll(async () => {
    await db.drop();
    rmSync(previous, { recursive: true, force: true });
  });

  it('attaches each archive table, rows and files as they were, as the partition before the adoption bound, and counts it into the rollup', async () => {
    await migrate(db.pool, previous);
    // an archive with rows in two months, archived the way the previous release did (a move)
    const april = await graphs(db, 3, hoursBefore(NOW, 24 * 90), 'april');
    await graphs(db, 2, hoursBefore(NOW, 24 * 80), 'may');
    for (const at of ['2026-04-10T00:00:00Z', '2026-05-10T00:00:00Z']) {
      await db.pool.query('SELECT * FROM archive_completed_tasks(30, 1000, false, $1::timestamptz)', [at]);
    }
    const files = async (suffix: string) =>
      (
        await db.pool.query<{ t: string; f: string; kind: string }>(
          `SELECT t, pg_relation_filenode(to_regclass(t || $1))::text AS f, c.relkind::text AS kind
             FROM unnest($2::text[]) t JOIN pg_class c ON c.oid = to_regclass(t || $1) ORDER BY t`,
          [suffix, TABLES.map((t) => `${t}_archive`)],
        )
      ).rows;
    const before = await files('');
    expect(before.every((r) => r.kind === 'r')).toBe(true);
    const rowsBefore = await graphRows(db.pool, 'archive');

    const result = await migrate(db.pool);
    expect(result.partitionChanges[0]).toMatch(
      /^adopted the archive tables .* \(5 archived tasks counted into the rollup\)$/,
    );

    // each old table is the parent's partition "_adopted", its files untouched
    const after = await files('_adopted');
    expect(after.map((r) => r.f)).toEqual(before.map((r) => r.f));
    const parents = await db.pool.query<{ kind: string }>(
      'SELECT c.relkind::text AS kind FROM unnest($1::text[]) t JOIN pg_class c ON c.oid = to_regclass(t)',
      [TABLES.map((t) => `${t}_archive`)],
    );
    expect(parents.rows.map((r) => r.kind)).toEqual(Array(6).fill('p'));
    // every row as it was (migrate gave the DLQ archive the columns later releases added: NULL)
    const rowsAfter = await graphRows(db.pool, 'archive');
    for (const table of TABLES)
      expect(rowsAfter[table]).toEqual(rowsBefore[table].map((r) => expect.objectContaining(r as object)));
    expect(await rowsByPartition(db, 'tasker_tasks_archive')).toEqual({ tasker_tasks_archive_adopted: 5 });
    await expectRollupEqualsCount(db);
    expect(Object.keys(await rollupMonthCounts(db.pool)).sort()).toEqual(['2026-04', '2026-05']);

    // a task of the adopted partition restores as before, and the rollup follows
    await restoreArchivedTask(db.pool, april[0]!);
    await expectRollupEqualsCount(db);
    expect((await rollupMonthCounts(db.pool))['2026-04']!.tasks).toBe(2);

    // migrate again: nothing left to do
    expect((await migrate(db.pool)).partitionChanges).toEqual([]);
  });
});

describe('adopting an existing archive, on a bad day', () => {
  let db: TestDatabase;
  const previous = previousReleaseMigrations();
  beforeAll(async () => {
    db = await createTestDatabase({ template: false });
  });
  afterAll(async () => {
    await db.drop();
    rmSync(previous, { recursive: true, force: true });
  });

  it('a migrate killed (SIGKILL) in its last adoption step leaves the archive as it was; the next migrate finishes the adoption', async () => {
    await migrate(db.pool, previous);
    await graphs(db, 4, hoursBefore(NOW, 24 * 90), 'killed');
    await db.pool.query('SELECT * FROM archive_completed_tasks(30, 1000, false, $1::timestamptz)', [
      '2026-04-10T00:00:00Z',
    ]);
    const rowsBefore = await graphRows(db.pool, 'archive');
    // This build's migrations without the adoption function: 0210's tables are made, the adoption
    // is not started (migrate skips it without the function).
    const partial = mkdtempSync(join(tmpdir(), 'tasker-partial-migrations-'));
    cpSync(migrationsDir, partial, { recursive: true });
    rmSync(join(partial, 'functions', 'tasker_lifecycle_adopt_archive_table.sql'));
    await migrate(db.pool, partial);
    rmSync(partial, { recursive: true, force: true });
    // The rollup's start is held by another session, so the last step (one transaction: the count,
    // then the six swaps) cannot commit; the steps before it (CHECKs, unique keys) can.
    const holder = await db.connect();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE tasker_archive_rollup_started IN ACCESS EXCLUSIVE MODE');
    const cli = startCli(['migrate'], { DATABASE_URL: db.url });
    await waitFor(
      'the adoption steps before the last one done',
      async () => {
        const { rows } = await db.pool.query<{ keys: number }>(
          `SELECT count(*)::int AS keys FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE c.relname LIKE '%archive_adopt_key' AND i.indisvalid`,
        );
        return rows[0]!.keys === 6;
      },
      { timeoutMs: 120_000, intervalMs: 50 },
    );
    cli.kill('SIGKILL');
    expect((await cli.done).signal).toBe('SIGKILL');
    await holder.query('ROLLBACK');

    // nothing of the last step happened: plain tables, rows as they were, no rollup
    const { rows: kinds } = await db.pool.query<{ kind: string }>(
      `SELECT c.relkind::text AS kind FROM unnest($1::text[]) t JOIN pg_class c ON c.oid = to_regclass(t)`,
      [TABLES.map((t) => `${t}_archive`)],
    );
    expect(kinds.map((k) => k.kind)).toEqual(Array(6).fill('r'));
    const { rows: started } = await db.pool.query('SELECT * FROM tasker_archive_rollup_started');
    expect(started).toEqual([]);

    const result = await migrate(db.pool);
    expect(result.partitionChanges[0]).toMatch(
      /^adopted the archive tables .* \(4 archived tasks counted into the rollup\)$/,
    );
    const rowsAfter = await graphRows(db.pool, 'archive');
    for (const table of TABLES)
      expect(rowsAfter[table]).toEqual(rowsBefore[table].map((r) => expect.objectContaining(r as object)));
    await expectRollupEqualsCount(db);
  });
});

describe('archival into monthly partitions', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });
  beforeEach(async () => {
    await resetTables(db.pool);
  });

  // Far past any partition migrate made, so the job has to make them.
  const LAST_SECOND_OF_MAY = new Date('2031-05-31T23:59:59Z');
  const FIRST_MINUTE_OF_JUNE = new Date('2031-06-01T00:00:30Z');

  it('writes each run into the partition of its month across a month boundary, making the partitions before its first batch', async () => {
    const first = await graphs(db, 4, hoursBefore(LAST_SECOND_OF_MAY, 24 * 40), 'boundary');
    expect((await archival(db, LAST_SECOND_OF_MAY)).tasks_archived).toBe(4);
    const second = await graphs(db, 3, hoursBefore(LAST_SECOND_OF_MAY, 24 * 40), 'boundary2');
    expect((await archival(db, FIRST_MINUTE_OF_JUNE)).tasks_archived).toBe(3);
    for (const table of TABLES) {
      expect(Object.keys(await rowsByPartition(db, `${table}_archive`)).sort()).toEqual([
        `${table}_archive_p203105`,
        `${table}_archive_p203106`,
      ]);
    }
    expect(await rowsByPartition(db, 'tasker_tasks_archive')).toEqual({
      tasker_tasks_archive_p203105: 4,
      tasker_tasks_archive_p203106: 3,
    });
    // the job made July's too (the month after its own), ahead of need
    const { rows } = await db.pool.query<{ p: string }>(
      "SELECT partition_name AS p FROM tasker_lifecycle_archive_partitions() WHERE archive_table = 'tasker_tasks_archive' AND from_at >= '2031-05-01'",
    );
    expect(rows.map((r) => r.p)).toEqual([
      'tasker_tasks_archive_p203105',
      'tasker_tasks_archive_p203106',
      'tasker_tasks_archive_p203107',
    ]);
    await expectRollupEqualsCount(db);
    // restore finds a task in either partition
    await restoreArchivedTask(db.pool, first[1]!);
    await restoreArchivedTask(db.pool, second[0]!);
    await expectRollupEqualsCount(db);
    expect((await rollupMonthCounts(db.pool))['2031-05']!.tasks).toBe(3);
    // the restores' delta rows fold into one row per month, the counts unchanged
    expect(await compactRollup(db.pool)).toBeGreaterThan(0);
    const { rows: months } = await db.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM tasker_archive_months',
    );
    expect(months[0]!.n).toBe(2);
    await expectRollupEqualsCount(db);
  });

  it('a batch whose month has no partition is refused (TL005), moving nothing: only the job and migrate make partitions', async () => {
    await graphs(db, 2, hoursBefore(NOW, 24 * 40), 'nopartition');
    await expect(
      db.pool.query('SELECT * FROM archive_completed_tasks(30, 10, false, $1::timestamptz)', [
        '2040-01-15T00:00:00Z',
      ]),
    ).rejects.toMatchObject({
      code: 'TL005',
      message: expect.stringMatching(/no partition of .* holds archived_at/),
    });
    const { rows } = await db.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM tasker_tasks_archive',
    );
    expect(rows[0]!.n).toBe(0);
  });

  it('keeps one archived copy per task: archival refuses a task that already has one; restore takes the newest copy', async () => {
    const [task] = await graphs(db, 1, hoursBefore(NOW, 24 * 40), 'copies');
    expect((await archival(db, NOW)).tasks_archived).toBe(1);
    // A second copy of the graph archived later (as if archived again), with one value changed.
    for (const table of TABLES) {
      await db.pool.query(
        `INSERT INTO ${table}_archive SELECT (jsonb_populate_record(NULL::${table}_archive,
           to_jsonb(x) || jsonb_build_object('archived_at', '2026-06-20T00:00:00Z'))).* FROM ${table}_archive x`,
      );
    }
    await db.pool.query(
      "UPDATE tasker_tasks_archive SET priority = priority + 7 WHERE archived_at = '2026-06-20T00:00:00Z'",
    );
    const newest = await graphRows(db.pool, 'archive', [task!]);
    await restoreArchivedTask(db.pool, task!);
    const live = await graphRows(db.pool, 'live', [task!]);
    // restored: the newest copy (its changed value), the older copy still archived
    const { rows: older } = await db.pool.query<{ at: Date }>(
      'SELECT archived_at AS at FROM tasker_tasks_archive WHERE task_uuid = $1',
      [task],
    );
    expect(older.map((r) => r.at)).toEqual([NOW]);
    expect((live.tasker_tasks[0] as { priority: number }).priority).toBe(
      Math.max(...(newest.tasker_tasks as { priority: number }[]).map((t) => t.priority)),
    );
    expect(live.tasker_workflow_steps).toHaveLength(3);
    // archiving it again while that older copy is archived: refused, nothing moved
    await expect(archival(db, new Date('2026-06-25T00:00:00Z'))).rejects.toThrow(
      /already has an archived copy/,
    );
    expect((await graphRows(db.pool, 'live', [task!])).tasker_workflow_steps).toHaveLength(3);
  });
});

describe('retention by whole months', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });
  beforeEach(async () => {
    await resetTables(db.pool);
  });

  const JAN = new Date('2032-01-15T00:00:00Z');
  const FEB = new Date('2032-02-15T00:00:00Z');
  const MAR = new Date('2032-03-15T00:00:00Z');

  async function monthOfGraphs(now: Date, count: number, name: string): Promise<string[]> {
    const tasks = await graphs(db, count, hoursBefore(now, 24 * 40), name);
    expect((await archival(db, now)).tasks_archived).toBe(count);
    return tasks;
  }

  it('keep_months drops the months before it whole, while an archival run and a restore run on other connections', async () => {
    await addPartitionsForMonths(db.pool, monthsFrom(JAN, 3));
    const jan = await monthOfGraphs(JAN, 3, 'jan');
    const feb = await monthOfGraphs(FEB, 2, 'feb');
    const march = await graphs(db, 4, hoursBefore(MAR, 24 * 40), 'mar');

    // A restore of a February task, its transaction left open on its own connection.
    const restoring = await db.connect();
    await restoring.query('BEGIN');
    await restoring.query('SELECT * FROM restore_archived_task($1)', [feb[0]]);

    // Retention on another: keep one month before March's, so January (and everything older) goes.
    const retention = dropExpiredArchiveMonths(db.pool, {
      keepMonths: 1,
      now: MAR,
      lockTimeoutMs: 1000,
      statementTimeoutMs: 120_000,
    });
    // DETACH ... CONCURRENTLY waits for the restore's transaction, which uses the parent ...
    await waitFor('retention waiting for the open restore', async () => {
      const { rows } = await db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE query LIKE '%DETACH PARTITION%CONCURRENTLY%' AND wait_event_type = 'Lock'`,
      );
      return rows[0]!.n === 1;
    });
    // ... while an archival run moves March's graphs meanwhile, waiting for neither.
    expect((await archival(db, MAR)).tasks_archived).toBe(4);

    await restoring.query('COMMIT');
    const result = await retention;
    expect(result.dropped).toEqual(expect.arrayContaining(TABLES.map((t) => `${t}_archive_p203201`)));
    expect(result.dropped.indexOf('tasker_tasks_archive_p203201')).toBeLessThan(
      result.dropped.indexOf('tasker_workflow_steps_archive_p203201'),
    );
    const { rows: left } = await db.pool.query<{ p: string }>(
      "SELECT partition_name AS p FROM tasker_lifecycle_archive_partitions() WHERE to_at <= '2032-02-01'",
    );
    expect(left).toEqual([]);
    const { rows: tables } = await db.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE 'tasker%archive_p203201'",
    );
    expect(tables[0]!.n).toBe(0);

    // January is gone whole; February's restored task is live, the other archived; March archived.
    expect(await archivedTaskUuids(db.pool)).toEqual([...feb.slice(1), ...march].sort());
    expect(await tasksInBoth(db.pool)).toEqual([]);
    const live = await graphRows(db.pool, 'live', [feb[0]!]);
    expect(live.tasker_workflow_steps).toHaveLength(3);
    const { rows: gone } = await db.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM tasker_tasks WHERE task_uuid = ANY ($1)',
      [jan],
    );
    expect(gone[0]!.n).toBe(0);
    await expectRollupEqualsCount(db);
    expect(Object.keys(await rollupMonthCounts(db.pool)).sort()).toEqual(['2032-02', '2032-03']);

    // a second pass has nothing left to drop
    expect(
      (
        await dropExpiredArchiveMonths(db.pool, {
          keepMonths: 1,
          now: MAR,
          lockTimeoutMs: 1000,
          statementTimeoutMs: 60_000,
        })
      ).dropped,
    ).toEqual([]);
  });

  it('finishes a detach that was interrupted, then drops the partition', async () => {
    await addPartitionsForMonths(db.pool, monthsFrom(JAN, 1));
    await monthOfGraphs(JAN, 2, 'interrupted');
    // A DETACH ... CONCURRENTLY cancelled in its wait leaves the partition "detach pending".
    const blocker = await db.connect();
    await blocker.query('BEGIN');
    await blocker.query('SELECT count(*) FROM tasker_tasks_archive');
    const detaching = await db.connect();
    const detach = detaching
      .query('ALTER TABLE tasker_tasks_archive DETACH PARTITION tasker_tasks_archive_p203201 CONCURRENTLY')
      .catch((err: unknown) => err);
    await waitFor('the detach waiting', async () => {
      const { rows } = await db.pool.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE query LIKE 'ALTER TABLE tasker_tasks_archive DETACH%' AND wait_event_type = 'Lock'`,
      );
      return rows[0]?.pid;
    }).then((pid) => db.pool.query('SELECT pg_cancel_backend($1)', [pid]));
    expect(await detach).toMatchObject({ code: '57014' });
    await blocker.query('COMMIT');
    const pending = (await archivePartitions(db.pool)).find(
      (p) => p.partition_name === 'tasker_tasks_archive_p203201',
    );
    expect(pending?.detach_pending).toBe(true);

    const result = await dropExpiredArchiveMonths(db.pool, {
      keepMonths: 1,
      now: MAR,
      lockTimeoutMs: 1000,
      statementTimeoutMs: 60_000,
    });
    expect(result.dropped).toEqual(expect.arrayContaining(TABLES.map((t) => `${t}_archive_p203201`)));
    expect(await archivedTaskUuids(db.pool)).toEqual([]);
    await expectRollupEqualsCount(db);
    expect(await rollupMonthCounts(db.pool)).toEqual({});
  });
});
