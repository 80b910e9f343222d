/**
 * Concurrency: several detection passes at once, in separate processes and on separate
 * connections, with the engine changing task states underneath. Each stale task must end with
 * exactly one error transition and one pending investigation, and a task that moved on before it
 * was locked must get neither.
 */
import { beforeEach, expect, it } from '@jest/globals';
import { databaseNow } from '../../src/db/queries/server.ts';
import { detectStaleTasksBatch } from '../../src/db/queries/staleness.ts';
import { runCli } from '../helpers/cli-process.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { defaultOptions } from '../helpers/detection.ts';
import { insertTask, insertTemplate, minutesBefore, type Template } from '../helpers/factories.ts';

const db = useTestDatabase();
let t: Template;

beforeEach(async () => {
  await resetTables(db.pool);
  t = await insertTemplate(db.pool);
});

async function insertStaleTasks(n: number, now: Date): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    ids.push(
      await insertTask(db.pool, {
        template: t,
        state: 'waiting_for_retry',
        enteredAt: minutesBefore(now, 180 + (i % 50)),
      }),
    );
  }
  return ids;
}

/** Per task: error transitions, pending entries, current rows, duplicate sort keys. */
async function invariants() {
  const { rows } = await db.pool.query(`
    SELECT t.task_uuid,
           (SELECT count(*) FROM tasker_task_transitions x WHERE x.task_uuid = t.task_uuid AND x.to_state = 'error') AS errors,
           (SELECT count(*) FROM tasker_task_transitions x WHERE x.task_uuid = t.task_uuid AND x.most_recent) AS current_rows,
           (SELECT count(*) - count(DISTINCT sort_key) FROM tasker_task_transitions x WHERE x.task_uuid = t.task_uuid) AS dup_keys,
           (SELECT count(*) FROM tasker_tasks_dlq d WHERE d.task_uuid = t.task_uuid AND d.resolution_status = 'pending') AS entries,
           (SELECT x.from_state FROM tasker_task_transitions x WHERE x.task_uuid = t.task_uuid AND x.to_state = 'error' LIMIT 1) AS errored_from,
           (SELECT d.original_state FROM tasker_tasks_dlq d WHERE d.task_uuid = t.task_uuid LIMIT 1) AS entry_state
      FROM tasker_tasks t`);
  return rows;
}

it('four detection processes at once: every stale task gets exactly one error transition and one entry', async () => {
  const now = await databaseNow(db.pool);
  const ids = await insertStaleTasks(400, now);
  const env = { DATABASE_URL: db.url, TASKER__logging__level: '"error"' };
  const runs = await Promise.all(
    [1, 2, 3, 4].map(() =>
      runCli(['detect-stale', '--batch-size', '15', '--max-batches', '100', '--json'], env),
    ),
  );
  for (const r of runs) expect(r).toMatchObject({ code: 0, stderr: '' });
  const results = runs.map((r) => JSON.parse(r.stdout));
  const seen = results.flatMap((r) => r.tasks.map((x: { task_uuid: string }) => x.task_uuid));
  expect(seen.sort()).toEqual([...ids].sort()); // disjoint, and together all of them
  expect(results.every((r) => r.failures === 0)).toBe(true);
  for (const row of await invariants()) {
    expect(row).toMatchObject({
      errors: 1,
      current_rows: 1,
      dup_keys: 0,
      entries: 1,
      errored_from: 'waiting_for_retry',
      entry_state: 'waiting_for_retry',
    });
  }
});

it('passes on separate connections while the engine moves tasks on: nothing is written for a task that left its state', async () => {
  const now = await databaseNow(db.pool);
  const ids = await insertStaleTasks(300, now);
  const options = defaultOptions();
  const settings = {
    waiting_for_dependencies_minutes: options.waiting_for_dependencies_minutes,
    waiting_for_retry_minutes: options.waiting_for_retry_minutes,
    steps_in_process_minutes: options.steps_in_process_minutes,
    task_max_lifetime_hours: options.task_max_lifetime_hours,
    auto_transition_to_error: true,
    auto_move_to_dlq: true,
    enabled_reasons: options.enabled_reasons,
    event_channel: null,
  };
  const page = { now, settings, after: null, statementTimeoutMs: 60_000 };
  const detectors = await Promise.all([1, 2, 3].map(() => db.connect()));
  const engine = await Promise.all([1, 2].map(() => db.connect()));
  let engineMoves = 0;
  const detect = async (i: number) => {
    const c = detectors[i]!;
    for (;;) {
      const { tasks } = await detectStaleTasksBatch(c, { ...page, dryRun: false, batchSize: 7 });
      if (tasks.length === 0) return;
    }
  };
  // The engine walks the tasks in a shuffled order and moves each one it still finds waiting.
  const shuffled = [...ids].sort(() => Math.random() - 0.5);
  const move = async (i: number) => {
    const c = engine[i]!;
    for (let k = i; k < shuffled.length; k += 2) {
      const { rows } = await c.query(
        `SELECT transition_task_state_atomic($1, 'waiting_for_retry', 'enqueuing_steps', NULL, '{}') AS moved`,
        [shuffled[k]],
      );
      if (rows[0].moved) engineMoves += 1;
    }
  };
  await Promise.all([detect(0), detect(1), detect(2), move(0), move(1)]);
  // Pick up whatever the engine's last moves left behind unlocked: nothing is stale any more.
  expect(
    (await detectStaleTasksBatch(db.pool, { ...page, dryRun: true, batchSize: 1000 })).tasks,
  ).toHaveLength(0);
  let errored = 0;
  for (const row of await invariants()) {
    expect(row.current_rows).toBe(1);
    expect(row.dup_keys).toBe(0);
    if (row.errors === 1) {
      errored += 1;
      expect(row).toMatchObject({
        entries: 1,
        errored_from: 'waiting_for_retry',
        entry_state: 'waiting_for_retry',
      });
    } else {
      expect(row).toMatchObject({ errors: 0, entries: 0 }); // moved on by the engine first: nothing written
    }
  }
  expect(errored + engineMoves).toBe(ids.length);
  expect(errored).toBeGreaterThan(0);
  expect(engineMoves).toBeGreaterThan(0);
});
