/**
 * Detection in a storm (issue 20): a backlog many pages deep drains in one run, each task once, and
 * a page reads what it returns, not the backlog behind it (detect_stale_tasks_page: a keyset page
 * of at most 2 x batch_size index entries). Rows are placed set-based, either side of the
 * thresholds; the page's reads are read off EXPLAIN (ANALYZE, BUFFERS).
 */
import { beforeEach, expect, it } from '@jest/globals';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { defaultOptions, detect } from '../helpers/detection.ts';
import { insertTemplate, NOW, type Template } from '../helpers/factories.ts';

const db = useTestDatabase();
let template: Template;

beforeEach(async () => {
  await resetTables(db.pool);
  template = await insertTemplate(db.pool, { name: 'storm' });
});

/**
 * n tasks in waiting_for_retry, all entered at the same instant (a tie on the cursor's key), either
 * stale (entered 2 h before NOW, past the 30-minute threshold) or healthy (5 minutes before).
 */
async function tasks(n: number, stale: boolean): Promise<void> {
  const entered = new Date(NOW.getTime() - (stale ? 120 : 5) * 60_000);
  await db.pool.query(
    `WITH t AS (
       INSERT INTO tasker_tasks (named_task_uuid, identity_hash, requested_at, created_at, updated_at)
       SELECT $1, md5(random()::text), $2, $2, $2 FROM generate_series(1, $3) RETURNING task_uuid)
     INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
     SELECT task_uuid, 'waiting_for_retry', 'pending', 1, true, $4, $4 FROM t`,
    [template.named_task_uuid, new Date(entered.getTime() - 60_000), n, entered],
  );
  await db.pool.query('ANALYZE tasker_tasks, tasker_task_transitions');
}

/** Shared buffers (hit + read) one first page of a dry run touches, from EXPLAIN (ANALYZE, BUFFERS). */
async function firstPageBuffers(batchSize: number): Promise<number> {
  const { rows } = await db.pool.query<{ 'QUERY PLAN': unknown }>(
    `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
     SELECT * FROM detect_stale_tasks_page($1, true, $2, $3, 60, 30, 30, 24, true, true,
                                           enum_range(NULL::dlq_reason), NULL, NULL)`,
    [NOW, batchSize, 2 * batchSize],
  );
  const plan = (rows[0]!['QUERY PLAN'] as [{ Plan: Record<string, number> }])[0].Plan;
  return plan['Shared Hit Blocks']! + plan['Shared Read Blocks']!;
}

it('a backlog 50 pages deep drains in one run, every stale task once, healthy ones untouched', async () => {
  await tasks(1000, true);
  await tasks(500, false);
  const result = await detect(db, defaultOptions({ batch_size: 20, max_batches: 1000, event_channel: null }));
  expect(result).toMatchObject({ tasks_detected: 1000, dlq_entries_created: 1000, more: false });
  expect(result.batches).toBeGreaterThanOrEqual(50);
  expect(result.batches).toBeLessThanOrEqual(52);
  const { rows } = await db.pool.query(
    `SELECT count(*) FILTER (WHERE errors = 1 AND entries = 1)::int AS once,
            count(*) FILTER (WHERE errors > 1 OR entries > 1)::int AS twice,
            count(*) FILTER (WHERE errors = 0 AND entries = 0)::int AS untouched
       FROM (SELECT (SELECT count(*) FROM tasker_task_transitions x WHERE x.task_uuid = t.task_uuid AND x.to_state = 'error') AS errors,
                    (SELECT count(*) FROM tasker_tasks_dlq d WHERE d.task_uuid = t.task_uuid) AS entries
               FROM tasker_tasks t) o`,
  );
  expect(rows[0]).toEqual({ once: 1000, twice: 0, untouched: 500 });
});

it('a page reads what it returns: with a backlog 50 x the batch, within a small factor of a page with none behind it', async () => {
  await tasks(5000, false); // tasks in flight that are not stale, in both cases
  await tasks(20, true); // exactly one page
  const alone = await firstPageBuffers(20);
  await tasks(980, true); // now 50 pages wait
  const backlog = await firstPageBuffers(20);
  process.stdout.write(`first page, batch 20: ${alone} buffers alone, ${backlog} with 1,000 stale waiting\n`);
  expect(backlog).toBeLessThan(3 * alone);
});

it('ended tasks past their lifetime (detection left them in error) are read past in bounded pages, and the one in flight behind them is found', async () => {
  // 2,100 error tasks created 25 h ago (complete = false, as detection and the engine leave them), then
  // one task created just after them, still in flight, stale only by its lifetime.
  const created = new Date(NOW.getTime() - 25 * 3_600_000);
  await db.pool.query(
    `WITH t AS (
       INSERT INTO tasker_tasks (named_task_uuid, identity_hash, requested_at, created_at, updated_at)
       SELECT $1, md5(random()::text), $2, $2, $2 FROM generate_series(1, 2100) RETURNING task_uuid)
     INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
     SELECT task_uuid, 'error', 'waiting_for_retry', 1, true, $3, $3 FROM t`,
    [template.named_task_uuid, created, new Date(NOW.getTime() - 60 * 60_000)],
  );
  const behind = new Date(created.getTime() + 60_000);
  const { rows } = await db.pool.query(
    `WITH t AS (
       INSERT INTO tasker_tasks (named_task_uuid, identity_hash, requested_at, created_at, updated_at)
       VALUES ($1, 'behind', $2, $2, $2) RETURNING task_uuid)
     INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
     SELECT task_uuid, 'pending', NULL, 0, true, $3, $3 FROM t RETURNING task_uuid`,
    [template.named_task_uuid, behind, new Date(NOW.getTime() - 60_000)],
  );
  await db.pool.query('ANALYZE tasker_tasks, tasker_task_transitions');
  // batch_size 2: a page examines 4 candidates and reads at most 1,000 lifetime index entries.
  const dry = await detect(db, defaultOptions({ dry_run: true, batch_size: 2, max_batches: 10 }));
  expect(dry.tasks.map((t) => t.task_uuid)).toEqual([rows[0].task_uuid]);
  expect(dry).toMatchObject({ more: false, batches: 3 }); // 1,000 + 1,000 + 101 entries
  // A run that stops after the first page hands on where it stood; the next goes on from there.
  const first = await detect(db, defaultOptions({ batch_size: 2, max_batches: 1 }));
  expect(first).toMatchObject({ tasks_detected: 0, more: true });
  expect(first.resume?.cursor).toMatchObject({ phase: 'lifetime' });
  const rest = await detect(db, defaultOptions({ batch_size: 2, max_batches: 10, resume: first.resume }));
  expect(rest).toMatchObject({ tasks_detected: 1, more: false, batches: 2 });
  expect(rest.tasks[0]).toMatchObject({ task_uuid: rows[0].task_uuid, stale_by: 'task_lifetime' });
});
