/**
 * What archival moves and how: whole graphs with every child table populated, children first; the
 * dry run against the real run; restore, byte-for-byte; statistics and totals.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import { type ArchiveFinishedTasksOptions, runArchival } from '../../jobs/archive-finished-tasks.ts';
import { withTransaction } from '../../src/db/pool.ts';
import {
  ARCHIVE_TABLES,
  archiveBatch,
  archiveStatistics,
  archiveTotals,
  EXACT_COUNT_LIMIT,
  restoreArchivedTask,
} from '../../src/db/queries/archive.ts';
import { NotFoundError } from '../../src/errors.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import {
  graphRows,
  insertFinishedGraph,
  insertFinishedGraphs,
  TABLES,
  tableCounts,
  tasksInBoth,
} from '../helpers/archive-factories.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { hoursBefore, insertDlqEntry, insertTemplate, NOW, type Template } from '../helpers/factories.ts';
import { planWork } from '../helpers/plan-work.ts';

const db = useTestDatabase();
let template: Template;

const OPTIONS: ArchiveFinishedTasksOptions = {
  dry_run: false,
  retention_days: 30,
  batch_size: 7,
  max_batches: 1000,
  batch_statement_timeout_ms: 30_000,
  pause_between_batches_ms: 0,
  duty_cycle_percent: 100,
  batch_target_ms: 500,
  policies: {
    archive_completed: true,
    archive_failed: true,
    archive_cancelled: false,
    archive_resolved_manually: true,
    archive_dlq_resolved: true,
  },
  namespace: null,
  task_name: null,
  finished_before: null,
  keep_months: 0,
  export_dir: '',
};

beforeEach(async () => {
  await resetTables(db.pool);
  template = await insertTemplate(db.pool, { namespace: 'billing', name: 'invoice' });
});

function run(options: Partial<ArchiveFinishedTasksOptions> = {}, now = NOW) {
  const batches: string[][] = [];
  const ctx = { pool: db.pool, now, logger: silentLogger(), signal: new AbortController().signal };
  return runArchival(ctx, { ...OPTIONS, ...options }, (p) => {
    if (p.kind === 'batch') batches.push(p.result.task_uuids);
  }).then((result) => ({ result, batches }));
}

/** A mix: eligible graphs (some with resolved DLQ history), and tasks that must stay. */
async function mixedFixture(): Promise<{ eligible: string[]; staying: string[] }> {
  const old = hoursBefore(NOW, 24 * 45);
  const eligible = [
    ...(await insertFinishedGraphs(db.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: old,
      count: 12,
      resolvedDlqEvery: 3,
    })),
    ...(await insertFinishedGraphs(db.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'error',
      finishedAt: hoursBefore(old, 1),
      count: 5,
      steps: 2,
    })),
  ];
  const young = await insertFinishedGraph(db.pool, {
    named_task_uuid: template.named_task_uuid,
    state: 'complete',
    finishedAt: hoursBefore(NOW, 24),
  });
  const cancelled = await insertFinishedGraph(db.pool, {
    named_task_uuid: template.named_task_uuid,
    state: 'cancelled',
    finishedAt: old,
  });
  const investigated = await insertFinishedGraph(db.pool, {
    named_task_uuid: template.named_task_uuid,
    state: 'error',
    finishedAt: old,
  });
  await insertDlqEntry(db.pool, { task: investigated, reason: 'max_retries_exceeded', at: old });
  return { eligible, staying: [young, cancelled, investigated] };
}

describe('moving a graph', () => {
  it('moves every row of the graph, children first, unchanged, stamped with archived_at', async () => {
    const task = await insertFinishedGraph(db.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: hoursBefore(NOW, 24 * 40),
      resolvedDlqEvery: 1,
    });
    await insertDlqEntry(db.pool, {
      task,
      reason: 'manual_dlq',
      status: 'cancelled',
      at: hoursBefore(NOW, 24 * 41),
    });
    const before = await graphRows(db.pool, 'live', [task]);
    expect(Object.values(before).map((rows) => rows.length)).toEqual([1, 5, 4, 4, 15, 2]);

    const r = await withTransaction(db.pool, (c) =>
      archiveBatch(c, {
        now: NOW,
        dryRun: false,
        retentionDays: 30,
        batchSize: 10,
        policies: OPTIONS.policies,
      }),
    );
    expect(r).toMatchObject({
      tasks_archived: 1,
      steps_archived: 5,
      edges_archived: 4,
      transitions_archived: 4,
      step_transitions_archived: 15,
      dlq_entries_archived: 2,
      tasks_skipped: 0,
      more_candidates: false,
    });
    expect(await graphRows(db.pool, 'archive', [task])).toEqual(before);
    expect(Object.values(await tableCounts(db.pool, 'live'))).toEqual([0, 0, 0, 0, 0, 0]);
    for (const table of ARCHIVE_TABLES) {
      const { rows } = await db.pool.query(`SELECT DISTINCT archived_at FROM ${table}`);
      expect(rows).toEqual([{ archived_at: NOW }]);
    }
  });

  it('archive tables have the live columns, same names, types and order, plus archived_at', async () => {
    // archived_at comes after the columns the archive table was created with; a column the live
    // table gains later is added to the archive by `migrate` after it (as for an engine's new
    // column: tasker_tasks_dlq's enrichment_next_attempt_at, migration 0140). Rows move by
    // column name, so only the names, types and their order among themselves matter.
    const columns = async (table: string) =>
      (
        await db.pool.query<{ c: string }>(
          `SELECT column_name || ' ' || format_type(atttypid, atttypmod) AS c
             FROM information_schema.columns
             JOIN pg_attribute ON attrelid = to_regclass(table_name) AND attname = column_name
            WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position`,
          [table],
        )
      ).rows.map((r) => r.c);
    for (const table of TABLES) {
      const archive = await columns(`${table}_archive`);
      expect(archive.filter((c) => c !== 'archived_at timestamp with time zone')).toEqual(
        await columns(table),
      );
      expect(archive).toContain('archived_at timestamp with time zone');
    }
    // Where nothing was added since, archived_at is last.
    expect((await columns('tasker_tasks_archive')).at(-1)).toBe('archived_at timestamp with time zone');
  });
});

describe('dry run', () => {
  it('reports exactly the tasks and counts the real run then moves, batch by batch, and changes nothing', async () => {
    const { eligible, staying } = await mixedFixture();
    const before = { live: await graphRows(db.pool, 'live'), archive: await graphRows(db.pool, 'archive') };

    // Batches sized by a target no batch comes near, so that their boundaries do not depend on
    // the machine's pace (a 7-graph batch over 500 ms on a loaded machine made the next smaller).
    const dry = await run({ dry_run: true, batch_target_ms: 600_000 });
    expect({ live: await graphRows(db.pool, 'live'), archive: await graphRows(db.pool, 'archive') }).toEqual(
      before,
    );

    const real = await run({ dry_run: false, batch_target_ms: 600_000 });
    expect(dry.batches).toEqual(real.batches);
    expect(dry.batches.flat().sort()).toEqual([...eligible].sort());
    const counts = ({ result: r }: typeof dry) => ({ ...r, dry_run: 0, duration_ms: 0, longest_batch_ms: 0 });
    expect(counts(dry)).toEqual(counts(real));
    expect(real.result).toMatchObject({
      tasks_archived: 17,
      steps_archived: 12 * 5 + 5 * 2,
      edges_archived: 12 * 4 + 5 * 1,
      transitions_archived: 17 * 4,
      step_transitions_archived: (12 * 5 + 5 * 2) * 3,
      dlq_entries_archived: 4,
      batches: 3,
      stopped_by: 'no_more_candidates',
    });
    const { rows } = await db.pool.query('SELECT task_uuid FROM tasker_tasks ORDER BY task_uuid');
    expect(rows.map((r) => r.task_uuid)).toEqual([...staying].sort());
  });
});

describe('restore', () => {
  it('returns every table to exactly what it was, and the task can be archived and restored again', async () => {
    const { eligible } = await mixedFixture();
    const before = await graphRows(db.pool, 'live');
    await run();
    expect(await tasksInBoth(db.pool)).toEqual([]);

    for (const task of eligible) {
      const restored = await restoreArchivedTask(db.pool, task);
      expect(restored.tasks_restored).toBe(1);
    }
    expect(await graphRows(db.pool, 'live')).toEqual(before);
    expect(Object.values(await tableCounts(db.pool, 'archive'))).toEqual([0, 0, 0, 0, 0, 0]);

    // again: a restored task archives (no leftover archive copy in the way) and restores again
    const again = await run();
    expect(again.result.tasks_archived).toBe(eligible.length);
    for (const task of eligible) await restoreArchivedTask(db.pool, task);
    expect(await graphRows(db.pool, 'live')).toEqual(before);
  });

  it('reports the rows it moved back per table', async () => {
    const task = await insertFinishedGraph(db.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'error',
      finishedAt: hoursBefore(NOW, 24 * 40),
      resolvedDlqEvery: 1,
    });
    await run();
    expect(await restoreArchivedTask(db.pool, task)).toEqual({
      tasks_restored: 1,
      steps_restored: 5,
      transitions_restored: 4,
      edges_restored: 4,
      step_transitions_restored: 15,
      dlq_entries_restored: 1,
    });
  });

  it('refuses a task that is not archived, saying whether it is live or unknown', async () => {
    const live = await insertFinishedGraph(db.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: hoursBefore(NOW, 1),
    });
    await expect(restoreArchivedTask(db.pool, live)).rejects.toThrow(
      new NotFoundError(`task ${live} is not archived: it is in the live tables (current state complete)`),
    );
    const unknown = '0199c2a4-5e1f-7b3a-9d2e-4f6a8b0c1d2e';
    await expect(restoreArchivedTask(db.pool, unknown)).rejects.toThrow(
      `task ${unknown} is not archived: no task, live or archived, has this uuid`,
    );
  });
});

describe('statistics and totals', () => {
  it('v_archive_statistics groups archived tasks by month of archival', async () => {
    const other = await insertTemplate(db.pool, { name: 'refund' });
    for (const [t, state, days] of [
      [template, 'complete', 100],
      [other, 'error', 90],
      [template, 'resolved_manually', 95],
    ] as const) {
      await insertFinishedGraph(db.pool, {
        named_task_uuid: t.named_task_uuid,
        state,
        finishedAt: hoursBefore(NOW, 24 * days),
        lifetimeMinutes: 2 * 24 * 60,
      });
    }
    await run({ policies: { ...OPTIONS.policies, archive_failed: false } }, new Date('2026-04-15T00:00:00Z'));
    await run({}, new Date('2026-05-20T00:00:00Z'));
    const months = await archiveStatistics(db.pool, 12);
    expect(months).toEqual([
      expect.objectContaining({
        archive_month: '2026-05',
        tasks_archived: 1,
        distinct_task_templates: 1,
        failed: 1,
        avg_task_lifetime_days: 2,
      }),
      expect.objectContaining({
        archive_month: '2026-04',
        tasks_archived: 2,
        distinct_task_templates: 1,
        completed: 1,
        resolved_manually: 1,
        failed: 0,
        avg_task_lifetime_days: 2,
        first_archived_at: new Date('2026-04-15T00:00:00Z'),
      }),
    ]);
  });

  it("a batch's work does not grow with what its run archived before it (every batch shares archived_at)", async () => {
    // Every batch of a run stamps the same archived_at (the run's now). The rollup once read the
    // batch's tasks back by archived_at, so each batch reread every task its run had archived:
    // counted here, a batch of 10 after 2,000 handled 4,101 rows more than the same batch with a
    // stamp of its own. The archive's statistics are those of an empty archive, as at a run's start.
    await insertFinishedGraphs(db.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: hoursBefore(NOW, 24 * 40),
      count: 2_040,
    });
    await db.pool.query(`ANALYZE ${ARCHIVE_TABLES.join(', ')}`);
    const batch = `SELECT tasks_archived FROM archive_completed_tasks(
                     p_retention_days => 30, p_batch_size => $1, p_dry_run => false, p_now => $2)`;
    await db.pool.query(batch, [2_000, NOW]);
    const client = await db.connect();
    try {
      const work = async (now: Date) => {
        await client.query(batch, [10, now]); // plans once; the count is of a warm call
        const counted = await planWork<{ tasks_archived: number }>(client, batch, [10, now]);
        expect(counted.rows[0]!.tasks_archived).toBe(10);
        return counted.rowsHandled;
      };
      const sameStamp = await work(NOW);
      const ownStamp = await work(new Date(NOW.getTime() + 1000));
      expect(sameStamp - ownStamp).toBeLessThan(500);
    } finally {
      await client.end();
    }
  });

  it('archiveTotals reads the monthly rollup: exact at any size, without scanning the archive', async () => {
    expect((await archiveTotals(db.pool)).tables.every((t) => t.rows === 0 && t.exact)).toBe(true);
    // 2,001 graphs of 5 steps: 10,005 archived steps, past what the count before the rollup did exactly
    await insertFinishedGraphs(db.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: hoursBefore(NOW, 24 * 40),
      count: 2001,
    });
    await run({ batch_size: 2001 });
    const totals = await archiveTotals(db.pool);
    const byTable = Object.fromEntries(totals.tables.map((t) => [t.table, t]));
    expect(byTable.tasker_tasks_archive).toEqual({ table: 'tasker_tasks_archive', rows: 2001, exact: true });
    expect(byTable.tasker_workflow_steps_archive).toEqual({
      table: 'tasker_workflow_steps_archive',
      rows: 10_005,
      exact: true,
    });
    expect(10_005).toBeGreaterThan(EXACT_COUNT_LIMIT);
    expect(totals.last_archived_at).toEqual(NOW);
  });
});
