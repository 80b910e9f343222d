/**
 * Migration 0070's fast path, and batches sized to a time target.
 *
 * A real batch locks tasks (SKIP LOCKED) and their steps (NOWAIT), then moves every row without
 * locking the leaves one by one; a row another session holds sends the batch down the careful path
 * (every row locked SKIP LOCKED and counted), which passes over the held task whole. These tests
 * hold rows from other connections, as the engine would, and look at which path each batch took
 * (locked_row_by_row), what moved, and that the fast path's lock_timeout does not outlive it.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import type pg from 'pg';
import archiveJob, {
  type ArchiveFinishedTasksOptions,
  firstBatchSize,
  runArchival,
  sizeForTarget,
} from '../../jobs/archive-finished-tasks.ts';
import { loadConfig } from '../../src/config/load.ts';
import { archiveBatch } from '../../src/db/queries/archive.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import {
  archivedTaskUuids,
  graphRows,
  insertFinishedGraphs,
  tasksInBoth,
  totalCounts,
} from '../helpers/archive-factories.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { hoursBefore, insertTemplate, NOW, type Template } from '../helpers/factories.ts';

const db = useTestDatabase();
let template: Template;

const OPTIONS: ArchiveFinishedTasksOptions = {
  ...archiveJob.optionsFromConfig(loadConfig({ env: {} }).config),
  dry_run: false,
  pause_between_batches_ms: 0,
  duty_cycle_percent: 100,
  // short, so that a batch that waited for a held row (instead of giving up) fails the test
  batch_statement_timeout_ms: 2000,
};
const POLICIES = OPTIONS.policies;

beforeEach(async () => {
  await resetTables(db.pool);
  template = await insertTemplate(db.pool, { namespace: 'billing', name: 'invoice' });
});

function graphs(count: number): Promise<string[]> {
  return insertFinishedGraphs(db.pool, {
    named_task_uuid: template.named_task_uuid,
    state: 'complete',
    finishedAt: hoursBefore(NOW, 24 * 40),
    count,
    steps: 3,
    resolvedDlqEvery: 2,
  });
}

function batch(client: pg.Client | pg.Pool, dryRun = false) {
  return archiveBatch(client, { now: NOW, dryRun, retentionDays: 30, batchSize: 100, policies: POLICIES });
}

/** A session that holds the rows `sql` locks (or writes), in an open transaction. */
async function holding(sql: string, params: unknown[]): Promise<pg.Client> {
  const holder = await db.connect();
  await holder.query('BEGIN');
  const r = await holder.query(sql, params);
  expect(r.rowCount).toBe(1);
  return holder;
}

describe('the fast path', () => {
  it('moves whole graphs without locking them row by row when nothing is held; a dry run always locks row by row', async () => {
    const tasks = await graphs(5);
    const totals = await totalCounts(db.pool);
    const dry = await batch(db.pool, true);
    expect(dry).toMatchObject({ tasks_archived: 5, locked_row_by_row: true });
    const real = await batch(db.pool);
    expect(real).toMatchObject({
      tasks_archived: 5,
      steps_archived: 15,
      tasks_skipped: 0,
      locked_row_by_row: false,
    });
    const counts = ['steps', 'transitions', 'edges', 'step_transitions', 'dlq_entries'].map(
      (k) => `${k}_archived`,
    ) as (keyof typeof real)[];
    for (const k of counts) expect(real[k]).toBe(dry[k]);
    expect(await archivedTaskUuids(db.pool)).toEqual([...tasks].sort());
    expect(await totalCounts(db.pool)).toEqual(totals);
  });

  it('a leaf row held elsewhere: the batch gives up the fast path at once, skips that task whole, and the lock_timeout it set is gone', async () => {
    const tasks = await graphs(4);
    const victim = tasks[2]!;
    const before = await graphRows(db.pool, 'live', [victim]);
    const holder = await holding(
      `SELECT 1 FROM tasker_workflow_step_transitions
        WHERE workflow_step_uuid IN (SELECT workflow_step_uuid FROM tasker_workflow_steps WHERE task_uuid = $1)
        LIMIT 1 FOR UPDATE`,
      [victim],
    );
    const archiver = await db.connect();
    try {
      await archiver.query('BEGIN');
      await archiver.query("SET LOCAL lock_timeout = '7s'");
      const r = await batch(archiver);
      expect(r).toMatchObject({ tasks_archived: 3, tasks_skipped: 1, locked_row_by_row: true });
      expect(r.task_uuids).not.toContain(victim);
      // the fast path's 1 ms lock_timeout was undone with its subtransaction
      expect((await archiver.query('SHOW lock_timeout')).rows[0].lock_timeout).toBe('7s');
      await archiver.query('COMMIT');
    } finally {
      await archiver.end();
      await holder.query('ROLLBACK');
      await holder.end();
    }
    expect(await graphRows(db.pool, 'live', [victim])).toEqual(before);
    expect(await tasksInBoth(db.pool)).toEqual([]);
    // nothing held any more: the next batch takes the fast path and the task
    expect(await batch(db.pool)).toMatchObject({ task_uuids: [victim], locked_row_by_row: false });
  });

  it('after a batch that took the fast path, the session keeps its own lock_timeout', async () => {
    await graphs(2);
    const archiver = await db.connect();
    try {
      await archiver.query('BEGIN');
      await archiver.query("SET LOCAL lock_timeout = '3s'");
      expect(await batch(archiver)).toMatchObject({ tasks_archived: 2, locked_row_by_row: false });
      expect((await archiver.query('SHOW lock_timeout')).rows[0].lock_timeout).toBe('3s');
      await archiver.query('COMMIT');
    } finally {
      await archiver.end();
    }
  });

  it('the engine adding a step transition to a finished graph (uncommitted): the task is skipped, then archived with it, no foreign key error', async () => {
    const tasks = await graphs(3);
    const victim = tasks[1]!;
    // the engine's insert takes FOR KEY SHARE on the step (the foreign key check) until it commits
    const engine = await holding(
      `INSERT INTO tasker_workflow_step_transitions (workflow_step_uuid, to_state, from_state, sort_key, most_recent)
       SELECT workflow_step_uuid, 'complete', 'complete', 99, false
         FROM tasker_workflow_steps WHERE task_uuid = $1 ORDER BY workflow_step_uuid LIMIT 1`,
      [victim],
    );
    let committed = false;
    try {
      const first = await runArchival(
        { pool: db.pool, now: NOW, logger: silentLogger(), signal: new AbortController().signal },
        OPTIONS,
      );
      expect(first).toMatchObject({ tasks_archived: 2, tasks_skipped: 1, timeouts: 0 });
      await engine.query('COMMIT');
      committed = true;
    } finally {
      if (!committed) await engine.query('ROLLBACK');
      await engine.end();
    }
    const totals = await totalCounts(db.pool);
    const second = await runArchival(
      { pool: db.pool, now: NOW, logger: silentLogger(), signal: new AbortController().signal },
      OPTIONS,
    );
    // 3 steps x 3 transitions + the engine's
    expect(second).toMatchObject({ tasks_archived: 1, step_transitions_archived: 10, tasks_skipped: 0 });
    expect(await archivedTaskUuids(db.pool)).toEqual([...tasks].sort());
    expect(await totalCounts(db.pool)).toEqual(totals);
  });

  it('two archivers in one instant on separate connections: disjoint tasks, both on the fast path, each task once', async () => {
    const tasks = await graphs(40);
    const totals = await totalCounts(db.pool);
    const a = await db.connect();
    const b = await db.connect();
    try {
      await a.query('BEGIN');
      await b.query('BEGIN');
      const ra = await archiveBatch(a, {
        now: NOW,
        dryRun: false,
        retentionDays: 30,
        batchSize: 25,
        policies: POLICIES,
      });
      const rb = await archiveBatch(b, {
        now: NOW,
        dryRun: false,
        retentionDays: 30,
        batchSize: 25,
        policies: POLICIES,
      });
      await a.query('COMMIT');
      await b.query('COMMIT');
      expect(ra).toMatchObject({ tasks_archived: 25, locked_row_by_row: false });
      expect(rb).toMatchObject({ tasks_archived: 15, tasks_skipped: 25, locked_row_by_row: false });
      expect(ra.task_uuids.filter((t) => rb.task_uuids.includes(t))).toEqual([]);
    } finally {
      await a.end();
      await b.end();
    }
    expect(await archivedTaskUuids(db.pool)).toEqual([...tasks].sort());
    expect(await tasksInBoth(db.pool)).toEqual([]);
    expect(await totalCounts(db.pool)).toEqual(totals);
  });
});

describe('batches sized to batch_target_ms', () => {
  it('sizeForTarget: the last pace scaled to the target, at most double, within 1..batch_size; a short batch keeps its size', () => {
    const o = { batch_size: 1000, batch_target_ms: 500 };
    expect(sizeForTarget(1000, 1000, 1000, o)).toBe(500);
    expect(sizeForTarget(1000, 1000, 250, o)).toBe(1000);
    expect(sizeForTarget(200, 200, 50, o)).toBe(400);
    expect(sizeForTarget(400, 400, 2000, o)).toBe(100);
    expect(sizeForTarget(3, 3, 100_000, o)).toBe(1);
    expect(sizeForTarget(500, 120, 2000, o)).toBe(500);
  });

  it('the first batch, with no pace to go by, assumes half a graph per millisecond', () => {
    expect(firstBatchSize({ batch_size: 1000, batch_target_ms: 500 })).toBe(250);
    expect(firstBatchSize({ batch_size: 100, batch_target_ms: 500 })).toBe(100);
    expect(firstBatchSize({ batch_size: 1000, batch_target_ms: 10 })).toBe(5);
    expect(firstBatchSize({ batch_size: 1000, batch_target_ms: 600_000 })).toBe(1000);
  });

  it('a run starts at the first batch size and grows by pace, at most doubling, up to batch_size', async () => {
    await graphs(700);
    const sizes: number[] = [];
    const result = await runArchival(
      { pool: db.pool, now: NOW, logger: silentLogger(), signal: new AbortController().signal },
      { ...OPTIONS, batch_size: 1000, batch_target_ms: 200 },
      (p) => {
        if (p.kind === 'batch') sizes.push(p.batch_size);
      },
    );
    expect(result.tasks_archived).toBe(700);
    expect(sizes[0]).toBe(100);
    for (let i = 1; i < sizes.length; i++) expect(sizes[i]!).toBeLessThanOrEqual(2 * sizes[i - 1]!);
  });

  it('a target far below what a batch takes: batches shrink, and every task still moves once', async () => {
    const tasks = await graphs(120);
    const totals = await totalCounts(db.pool);
    const sizes: number[] = [];
    const result = await runArchival(
      { pool: db.pool, now: NOW, logger: silentLogger(), signal: new AbortController().signal },
      // 60 graphs take far longer than 10 ms on any machine (the first batch: 5 at 0.5/ms)
      { ...OPTIONS, batch_size: 60, batch_target_ms: 10 },
      (p) => {
        if (p.kind === 'batch') sizes.push(p.batch_size);
      },
    );
    expect(sizes[0]).toBe(5);
    expect(Math.max(...sizes)).toBeLessThan(60);
    expect(result).toMatchObject({ tasks_archived: 120, stopped_by: 'no_more_candidates', timeouts: 0 });
    expect(result.final_batch_size).toBeLessThan(60);
    expect(await archivedTaskUuids(db.pool)).toEqual([...tasks].sort());
    expect(await totalCounts(db.pool)).toEqual(totals);
  });
});
