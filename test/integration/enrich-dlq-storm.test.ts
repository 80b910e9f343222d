/**
 * A stale storm through real worker processes: 3,000 tasks go stale at once; one detection run
 * (batches of 250) errors them and opens an investigation each, and sends one enrichment request
 * per batch carrying that batch's entries; three workers take those requests at once, and every
 * entry is enriched exactly once (a trigger records every write of an enriched snapshot). pg-boss
 * holds one enrichment request per detection batch: 12 rows for 3,000 entries, not 3,000.
 */
import { beforeAll, expect, it } from '@jest/globals';
import { databaseNow } from '../../src/db/queries/server.ts';
import { runCli } from '../helpers/cli-process.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { insertTemplate } from '../helpers/factories.ts';
import { waitFor } from '../helpers/wait.ts';
import {
  FAST_WORKER_ENV,
  installFor,
  runsOf,
  startWorkerProcess,
  waitForWorkers,
} from '../helpers/workers.ts';

const ENRICH = 'tasker.enrich-dlq-snapshots';
const TASKS = 3000;
const DETECTION_BATCH = 250;
const ENV = {
  // Detection runs when the test asks; the enrichment sweep stays scheduled (it may take a few).
  TASKER__staleness_detection__enabled: 'false',
  // Small enrichment transactions, so each request keeps its worker busy for a while and the
  // requests are served side by side.
  TASKER__dlq__enrichment__batch_size: '10',
};

const db = useTestDatabase();
beforeAll(async () => {
  await installFor(db.url, ENV);
});

it('3,000 entries from one detection run are enriched once each by three workers, from one pg-boss request per detection batch', async () => {
  const now = await databaseNow(db.pool);
  const template = await insertTemplate(db.pool);
  // The storm: tasks in waiting_for_retry for 5 hours (threshold: minutes), 3 steps each.
  await db.pool.query(
    `WITH t AS (
       INSERT INTO tasker_tasks (named_task_uuid, identity_hash, created_at)
       SELECT $1, 'storm-' || g, $2::timestamptz - interval '6 hours' FROM generate_series(1, $3::int) g
       RETURNING task_uuid),
     tr AS (
       INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at)
       SELECT task_uuid, s.state, s.prev, s.k, s.k = 1, $2::timestamptz - s.ago
         FROM t, (VALUES (0, 'pending', NULL, interval '6 hours'),
                         (1, 'waiting_for_retry', 'pending', interval '5 hours')) s(k, state, prev, ago)),
     named AS (
       INSERT INTO tasker_named_steps (name) VALUES ('storm_step') ON CONFLICT (name) DO UPDATE
         SET name = EXCLUDED.name RETURNING named_step_uuid),
     steps AS (
       INSERT INTO tasker_workflow_steps (task_uuid, named_step_uuid, attempts, max_attempts)
       SELECT t.task_uuid, named.named_step_uuid, 1, 3 FROM t, named, generate_series(1, 3)
       RETURNING workflow_step_uuid)
     INSERT INTO tasker_workflow_step_transitions (workflow_step_uuid, to_state, sort_key, most_recent)
     SELECT workflow_step_uuid, 'waiting_for_retry', 1, true FROM steps`,
    [template.named_task_uuid, now, TASKS],
  );
  // Every write of an enriched snapshot, whoever makes it.
  await db.pool.query(
    `CREATE TABLE test_enrichment_writes (dlq_entry_uuid uuid NOT NULL);
     CREATE FUNCTION test_record_enrichment() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       INSERT INTO test_enrichment_writes VALUES (NEW.dlq_entry_uuid);
       RETURN NEW;
     END $$;
     CREATE TRIGGER test_record_enrichment AFTER UPDATE ON tasker_tasks_dlq
       FOR EACH ROW WHEN (NEW.task_snapshot -> 'enrichment' ? 'enriched_at')
       EXECUTE FUNCTION test_record_enrichment();
     ANALYZE;`,
  );

  const workers = [1, 2, 3].map(() => startWorkerProcess(db.url, ENV));
  try {
    await waitForWorkers(db.pool, 3);
    const detection = await runCli(
      [
        'enqueue',
        'detect-stale',
        '--batch-size',
        String(DETECTION_BATCH),
        '--max-batches',
        '100',
        '--wait',
        '--json',
      ],
      { DATABASE_URL: db.url, ...FAST_WORKER_ENV, ...ENV },
    );
    expect(detection.code).toBe(0);
    expect(JSON.parse(detection.stdout)).toMatchObject({
      state: 'completed',
      output: { tasks_detected: TASKS, dlq_entries_created: TASKS },
    });
    await waitFor(
      'every entry enriched',
      async () => {
        const { rows } = await db.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM tasker_tasks_dlq WHERE task_snapshot -> 'enrichment' ? 'enriched_at'`,
        );
        return rows[0]!.n === TASKS ? true : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );

    // Exactly once: one write per entry, every entry written.
    const { rows: writes } = await db.pool.query<{ entries: number; writes: number; most: number }>(
      `SELECT count(DISTINCT dlq_entry_uuid)::int AS entries, count(*)::int AS writes,
              (SELECT max(n)::int FROM (SELECT count(*) AS n FROM test_enrichment_writes GROUP BY dlq_entry_uuid) x) AS most
         FROM test_enrichment_writes`,
    );
    expect(writes[0]).toEqual({ entries: TASKS, writes: TASKS, most: 1 });

    // pg-boss: one request per detection batch, each carrying that batch's entries, all served.
    const { rows: requests } = await db.pool.query<{ ids: number; state: string; key: string }>(
      `SELECT jsonb_array_length(data->'options'->'entry_uuids') AS ids, state, singleton_key AS key
         FROM pgboss.job WHERE name = $1 AND data->>'trigger' = 'event'`,
      [ENRICH],
    );
    expect(requests).toHaveLength(TASKS / DETECTION_BATCH);
    expect(requests.every((r) => r.ids === DETECTION_BATCH && /^dlq-entries:/.test(r.key))).toBe(true);
    await waitFor('every request settled', async () => {
      const { rows } = await db.pool.query(
        `SELECT count(*) FILTER (WHERE state <> 'completed')::int AS open FROM pgboss.job
          WHERE name = $1 AND data->>'trigger' = 'event'`,
        [ENRICH],
      );
      return rows[0].open === 0 ? true : undefined;
    });
    const { rows: all } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1`,
      [ENRICH],
    );
    expect(all[0]!.n).toBeLessThan(TASKS / DETECTION_BATCH + 5); // the requests, and a sweep or two

    // Served side by side: runs of the requests on more than one worker, some of them at once.
    const runs = (await runsOf(db.pool, ENRICH)).filter((r) => r.trigger === 'event');
    expect(new Set(runs.map((r) => r.worker)).size).toBeGreaterThanOrEqual(2);
    const overlapping = runs.some((a) =>
      runs.some(
        (b) =>
          a.worker !== b.worker &&
          a.started_at < (b.finished_at ?? new Date()) &&
          b.started_at < (a.finished_at ?? new Date()),
      ),
    );
    expect(overlapping).toBe(true);
    const enrichedByRuns = (await runsOf(db.pool, ENRICH)).reduce(
      (n, r) => n + Number(r.counts?.enriched ?? 0),
      0,
    );
    expect(enrichedByRuns).toBe(TASKS);
  } finally {
    for (const w of workers) w.kill('SIGTERM');
    for (const w of workers) expect((await w.done).code).toBe(0);
  }
}, 180_000);
