/**
 * Dry runs lock nothing and page like real runs; what detection writes is stamped with the
 * statement's clock while staleness is judged at the run's time; every batch is bounded by a
 * statement timeout, and the cycle check is linear in the task's graph. Concurrency claims use
 * separate real connections with lock_timeout, so a lock shows up as an error, not a hang.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import type pg from 'pg';
import { databaseNow } from '../../src/db/queries/server.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { defaultOptions, detect } from '../helpers/detection.ts';
import {
  currentState,
  insertTask,
  insertTemplate,
  minutesBefore,
  NOW,
  type Template,
} from '../helpers/factories.ts';
import { insertStepChain } from '../helpers/graphs.ts';
import { planWork } from '../helpers/plan-work.ts';

const db = useTestDatabase();
let t: Template;

beforeEach(async () => {
  await resetTables(db.pool);
  t = await insertTemplate(db.pool, { name: 'plain' });
});

function stale(minutes = 100, now = NOW): Promise<string> {
  return insertTask(db.pool, {
    template: t,
    state: 'waiting_for_retry',
    enteredAt: minutesBefore(now, minutes),
  });
}

/** One dry-run batch, as the job calls it, in `client`'s open transaction (BEGIN first). */
async function dryBatchInTransaction(client: pg.Client, batchSize: number): Promise<string[]> {
  const { rows } = await client.query(
    `SELECT task_uuid FROM detect_stale_tasks_batch($1, true, $2, 60, 30, 30, 24, true, true,
       enum_range(NULL::dlq_reason), NULL)`,
    [NOW, batchSize],
  );
  return rows.map((r) => r.task_uuid);
}

async function withLockTimeout(): Promise<pg.Client> {
  const client = await db.connect();
  await client.query(`SET lock_timeout = '500ms'`);
  return client;
}

describe('dry runs lock nothing', () => {
  it("a dry run does not block the engine's compare-and-swap on the tasks it reports", async () => {
    const ids = [await stale(100), await stale(90)];
    const dry = await db.connect();
    await dry.query('BEGIN');
    try {
      expect((await dryBatchInTransaction(dry, 10)).sort()).toEqual([...ids].sort());
      // The dry run's transaction is still open: the engine moves both tasks regardless.
      const engine = await withLockTimeout();
      for (const id of ids) {
        const { rows } = await engine.query(
          `SELECT transition_task_state_atomic($1, 'waiting_for_retry', 'enqueuing_steps', NULL, '{}') AS moved`,
          [id],
        );
        expect(rows[0].moved).toBe(true);
      }
    } finally {
      await dry.query('ROLLBACK');
    }
  });

  it('a dry run neither waits for nor skips a task the engine holds mid-transition', async () => {
    const held = await stale(100);
    const free = await stale(90);
    const engine = await db.connect();
    await engine.query('BEGIN');
    await engine.query(
      'SELECT 1 FROM tasker_task_transitions WHERE task_uuid = $1 AND most_recent = true FOR UPDATE',
      [held],
    );
    try {
      const dry = await withLockTimeout();
      await dry.query('BEGIN');
      expect((await dryBatchInTransaction(dry, 10)).sort()).toEqual([held, free].sort());
      await dry.query('ROLLBACK');
      // A real detector in the meantime skips the held task and takes the other one.
      const real = await detect(db, defaultOptions({ event_channel: null }));
      expect(real.tasks.map((x) => x.task_uuid)).toEqual([free]);
    } finally {
      await engine.query('ROLLBACK');
    }
  });

  it('a real batch in flight does not block a dry run, and the dry run does not block it', async () => {
    const ids = [await stale(100), await stale(90), await stale(80)];
    const detector = await db.connect();
    await detector.query('BEGIN');
    const { rows } = await detector.query(
      `SELECT task_uuid FROM detect_stale_tasks_batch($1, false, 10, 60, 30, 30, 24, true, true,
         enum_range(NULL::dlq_reason), NULL)`,
      [NOW],
    );
    expect(rows).toHaveLength(3);
    try {
      // Uncommitted: the dry run still sees the tasks as stale (the real batch may yet roll back).
      const dry = await withLockTimeout();
      await dry.query('BEGIN');
      expect((await dryBatchInTransaction(dry, 10)).sort()).toEqual([...ids].sort());
      await dry.query('ROLLBACK');
    } finally {
      await detector.query('COMMIT');
    }
    for (const id of ids) expect(await currentState(db.pool, id)).toBe('error');
  });
});

describe('dry runs page like real runs', () => {
  it.each([
    [3, 10, 3, 7],
    [3, 2, 2, 6],
    [7, 10, 2, 7],
  ])(
    'batch_size %i, max_batches %i: %i batches and %i tasks, dry and real alike',
    async (batchSize, maxBatches, batches, count) => {
      for (let i = 0; i < 7; i++) await stale(100 - i);
      await stale(20); // not stale
      const options = defaultOptions({ batch_size: batchSize, max_batches: maxBatches, event_channel: null });
      const dry = await detect(db, { ...options, dry_run: true });
      const real = await detect(db, options);
      expect({ batches: dry.batches, tasks: dry.tasks_detected }).toEqual({ batches, tasks: count });
      expect({ batches: real.batches, tasks: real.tasks_detected }).toEqual({ batches, tasks: count });
      expect(dry.tasks.map((x) => x.task_uuid).sort()).toEqual(real.tasks.map((x) => x.task_uuid).sort());
    },
  );

  it('the cursor is exact to the microsecond: tasks entered within one millisecond are each seen once', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await stale(100));
    // Five state entries inside the same millisecond, microseconds apart (two share one instant).
    await db.pool.query(
      `UPDATE tasker_task_transitions tr
          SET created_at = $2::timestamptz + make_interval(secs => least(o.n, 4) * 0.000001)
         FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM unnest($1::uuid[]) id) o
        WHERE tr.task_uuid = o.id AND tr.most_recent`,
      [ids, minutesBefore(NOW, 100)],
    );
    const dry = await detect(db, defaultOptions({ dry_run: true, batch_size: 1, max_batches: 100 }));
    expect(dry.tasks.map((x) => x.task_uuid).sort()).toEqual([...ids].sort());
    expect(dry.batches).toBe(6); // five pages of one, then an empty one
    const real = await detect(db, defaultOptions({ batch_size: 1, max_batches: 100, event_channel: null }));
    expect(real.tasks_detected).toBe(5);
  });
});

describe('clocks', () => {
  it('judges staleness at the run time, stamps writes with the statement clock, never before the previous transition', async () => {
    const clock = await databaseNow(db.pool);
    const runNow = minutesBefore(clock, 5); // the run began five minutes ago
    // Moved by the engine one minute ago (after the run began); alive for 48 h, so stale by lifetime.
    const moved = await insertTask(db.pool, {
      template: t,
      state: 'waiting_for_retry',
      enteredAt: minutesBefore(clock, 1),
      createdAt: minutesBefore(clock, 48 * 60),
    });
    // 62 minutes in waiting_for_dependencies by the clock, 57 at the run's time: not stale yet.
    const notYet = await insertTask(db.pool, {
      template: t,
      state: 'waiting_for_dependencies',
      enteredAt: minutesBefore(clock, 62),
      createdAt: minutesBefore(clock, 70),
    });
    const result = await detect(db, defaultOptions({ event_channel: null }), runNow);
    expect(result.tasks.map((x) => x.task_uuid)).toEqual([moved]);
    expect(result.tasks[0]).toMatchObject({ stale_by: 'task_lifetime', time_in_state_minutes: 0 });
    expect(await currentState(db.pool, notYet)).toBe('waiting_for_dependencies');

    const { rows } = await db.pool.query(
      `SELECT to_state, created_at, (transition_metadata ->> 'time_in_state_minutes')::integer AS minutes
         FROM tasker_task_transitions WHERE task_uuid = $1 ORDER BY sort_key`,
      [moved],
    );
    const [, previous, error] = rows;
    expect(error.to_state).toBe('error');
    expect(error.created_at.getTime()).toBeGreaterThanOrEqual(previous.created_at.getTime());
    expect(error.created_at.getTime()).toBeGreaterThanOrEqual(clock.getTime());
    expect(error.minutes).toBeGreaterThanOrEqual(0);
    const entry = await db.pool.query('SELECT dlq_timestamp FROM tasker_tasks_dlq WHERE task_uuid = $1', [
      moved,
    ]);
    expect(entry.rows[0].dlq_timestamp.getTime()).toBeGreaterThanOrEqual(previous.created_at.getTime());
  });
});

describe('bounded batches', () => {
  it('a 5,000-step chain and a 5,000-step loop are judged in one batch: staleness and a dependency cycle', async () => {
    // How much work the cycle check does is counted by the next test; a wall-clock limit here
    // would only measure how loaded the machine is.
    const chain = await stale(100);
    await insertStepChain(db.pool, chain, 5000);
    const loop = await stale(90);
    await insertStepChain(db.pool, loop, 5000, { cycle: true });
    const result = await detect(
      db,
      defaultOptions({ batch_statement_timeout_ms: 60_000, event_channel: null }),
    );
    const reasons = Object.fromEntries(result.tasks.map((x) => [x.task_uuid, x.dlq_reason]));
    expect(reasons).toEqual({ [chain]: 'staleness_timeout', [loop]: 'dependency_cycle_detected' });
  });

  it('the cycle check stays linear whatever join method the planner picks (CI once saw nested loops: 5 s)', async () => {
    // A planner that misjudges a graph's size may join with nested loops; where one side cannot use
    // an index, a 5,000-step chain then costs 25 million comparisons per join. Forbid hash and
    // merge joins on one connection to force that choice. The check counts the rows the function's
    // plans handle (planWork), not the time it took: a timed limit failed on a loaded CI machine
    // at 40 ms typical.
    const chain = await stale(100);
    await insertStepChain(db.pool, chain, 5000);
    const loop = await stale(90);
    await insertStepChain(db.pool, loop, 5000, { cycle: true });
    const client = await db.connect();
    try {
      await client.query('SET enable_hashjoin = off');
      await client.query('SET enable_mergejoin = off');
      await client.query(`SET statement_timeout = '60s'`); // a quadratic plan takes seconds, not forever
      const work = await planWork<{ chain: boolean; loop: boolean }>(
        client,
        'SELECT task_has_dependency_cycle($1) AS chain, task_has_dependency_cycle($2) AS loop',
        [chain, loop],
      );
      expect(work.rows[0]).toEqual({ chain: false, loop: true });
      const graphRows = 2 * (5000 + 5000); // two tasks' steps and edges
      expect(work.plans).toBeGreaterThanOrEqual(3); // both functions' reads and the outer SELECT
      expect(work.rowsHandled).toBeGreaterThanOrEqual(graphRows); // the count sees the reads at all
      expect(work.rowsHandled).toBeLessThan(20 * graphRows); // a quadratic join handles over 25,000,000
    } finally {
      await client.end();
    }
  });

  it('a batch that exceeds batch_statement_timeout_ms is rolled back and fails the run, naming the batch', async () => {
    const first = await stale(100);
    const second = await stale(90);
    // An uncommitted pending entry for the second task makes the second batch wait on the unique index.
    const blocker = await db.connect();
    await blocker.query('BEGIN');
    await blocker.query(
      `INSERT INTO tasker_tasks_dlq (task_uuid, original_state, dlq_reason, task_snapshot)
       VALUES ($1, 'waiting_for_retry', 'manual_dlq', '{}')`,
      [second],
    );
    try {
      await expect(
        detect(db, defaultOptions({ batch_size: 1, batch_statement_timeout_ms: 300, event_channel: null })),
      ).rejects.toThrow(
        /detection batch 2 .*batch_statement_timeout_ms \(300 ms\).*1 task\(s\) were handled/,
      );
    } finally {
      await blocker.query('ROLLBACK');
    }
    expect(await currentState(db.pool, first)).toBe('error'); // batch 1 committed
    expect(await currentState(db.pool, second)).toBe('waiting_for_retry'); // batch 2 rolled back
  });
});
