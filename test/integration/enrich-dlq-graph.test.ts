/**
 * The diagnosis is linear in the graph's size (steps + edges): 10,000-step graphs of several shapes
 * are enriched well within the default statement timeout, with what a chain or a cycle of that size
 * must show; and on hundreds of random small graphs (cycles, self-loops, duplicate edges, edges to
 * another task's steps, every step state) it gives exactly the output of the quadratic diagnosis it
 * replaced (test/helpers/diagnosis-reference.ts).
 */
import { beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import enrichJob, {
  EnrichDlqSnapshotsOptions,
  enrichmentOptionsFromConfig,
} from '../../jobs/enrich-dlq-snapshots.ts';
import { ConfigSchema } from '../../src/config/schema.ts';
import type { FullEnrichedSnapshot } from '../../src/domain/dlq-enrichment.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import type { JobContext } from '../../src/worker/job.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { DIAGNOSIS_REFERENCE_SQL } from '../helpers/diagnosis-reference.ts';
import { readEntry } from '../helpers/enrichment-factories.ts';
import { insertDlqEntry, insertTask, insertTemplate, minutesBefore, NOW } from '../helpers/factories.ts';
import { insertStepChain } from '../helpers/graphs.ts';
import { planWork } from '../helpers/plan-work.ts';

const db = useTestDatabase();
const defaults = enrichmentOptionsFromConfig(ConfigSchema.parse({}));

beforeAll(async () => {
  await db.pool.query(DIAGNOSIS_REFERENCE_SQL);
});

beforeEach(async () => {
  await resetTables(db.pool);
});

const ctx = (): JobContext => ({
  pool: db.pool,
  now: NOW,
  logger: silentLogger(),
  signal: new AbortController().signal,
});

async function taskWithEntry(): Promise<{ task: string; entry: string }> {
  const template = await insertTemplate(db.pool);
  const task = await insertTask(db.pool, { template, state: 'error', enteredAt: minutesBefore(NOW, 10) });
  const entry = await insertDlqEntry(db.pool, {
    task,
    reason: 'staleness_timeout',
    at: minutesBefore(NOW, 10),
  });
  return { task, entry };
}

/** Enriches one entry with the default options (statement timeout 10 s); returns result, snapshot, time. */
async function enrichTimed(entry: string) {
  const started = performance.now();
  const result = await enrichJob.run(
    ctx(),
    EnrichDlqSnapshotsOptions.parse({ ...defaults, entry_uuids: [entry] }),
  );
  const ms = performance.now() - started;
  const snap = (await readEntry(db.pool, entry)).task_snapshot as FullEnrichedSnapshot;
  return { result, snap, ms };
}

describe("one entry reads its own task's rows", () => {
  it("a 5-step task's snapshot handles rows in proportion to its graph, not to the 20,000 steps of 4,000 other tasks", async () => {
    // The diagnosis once joined its listed steps to tasker_workflow_steps for their errors; the
    // planner, which estimates hundreds of listed steps, hashed the whole steps table for every
    // entry (10 ms an entry on a 20,000-step table instead of 1). Counted, not timed: planWork.
    const { task } = await taskWithEntry();
    await insertStepChain(db.pool, task, 5);
    // The third step is out of retries with an error: it is listed as blocking and as exhausted.
    await db.pool.query(
      `WITH third AS (SELECT workflow_step_uuid FROM tasker_workflow_steps WHERE task_uuid = $1
                       ORDER BY workflow_step_uuid OFFSET 2 LIMIT 1),
            step AS (UPDATE tasker_workflow_steps s SET attempts = 3, max_attempts = 3, retryable = false,
                            results = '{"error": {"message": "connection refused"}}'
                       FROM third WHERE s.workflow_step_uuid = third.workflow_step_uuid)
       UPDATE tasker_workflow_step_transitions t SET to_state = 'error'
         FROM third WHERE t.workflow_step_uuid = third.workflow_step_uuid`,
      [task],
    );
    // Beside it, 4,000 other tasks of 5 steps each (many small tasks: the planner's estimates per
    // task are a production's).
    await db.pool.query(
      `WITH tasks AS (
         INSERT INTO tasker_tasks (named_task_uuid, identity_hash)
         SELECT named_task_uuid, md5(random()::text) FROM tasker_tasks, generate_series(1, 4000)
          WHERE task_uuid = $1
         RETURNING task_uuid),
       steps AS (
         INSERT INTO tasker_workflow_steps (task_uuid, named_step_uuid, attempts, max_attempts, retryable)
         SELECT t.task_uuid, ws.named_step_uuid, 0, 3, true
           FROM tasks t CROSS JOIN (SELECT named_step_uuid FROM tasker_workflow_steps WHERE task_uuid = $1) ws
         RETURNING workflow_step_uuid)
       INSERT INTO tasker_workflow_step_transitions (workflow_step_uuid, to_state, sort_key, most_recent)
       SELECT workflow_step_uuid, 'pending', 0, true FROM steps`,
      [task],
    );
    await db.pool.query('ANALYZE');
    const client = await db.connect();
    try {
      const snapshot = `SELECT dlq_enriched_snapshot('{}'::jsonb, $1, $2, true, 500, 200, 16384, 1048576,
                                                     'staleness_timeout', 'steps_in_process') AS s`;
      await client.query(snapshot, [task, NOW]); // plans once; the count is of a warm call
      const work = await planWork<{ s: FullEnrichedSnapshot }>(client, snapshot, [task, NOW]);
      expect(work.rows[0]!.s.counts).toMatchObject({ steps: 5, edges: 4 });
      expect(work.rows[0]!.s.diagnosis.exhausted_retries.total).toBe(1);
      expect(work.plans).toBeGreaterThan(10); // the snapshot's statements and its functions'
      expect(work.rowsHandled).toBeLessThan(1_000); // a hash of the steps table handles 20,000
    } finally {
      await client.end();
    }
  });
});

describe('large graphs', () => {
  it('a 10,000-step chain is enriched in full detail well within its statement timeout', async () => {
    expect(defaults.batch_statement_timeout_ms).toBe(10_000);
    const { task, entry } = await taskWithEntry();
    await insertStepChain(db.pool, task, 10_000);
    await db.pool.query('ANALYZE');
    const { result, snap, ms } = await enrichTimed(entry);
    expect(result).toMatchObject({ enriched: 1, failed: 0 });
    // About 0.6 s on a 2-core machine (docs/benchmarks.md); the quadratic walk never finished.
    expect(ms).toBeLessThan(defaults.batch_statement_timeout_ms / 2);
    expect(snap.enrichment).toMatchObject({ detail_level: 'full' });
    expect(snap.counts).toMatchObject({ steps: 10_000, unfinished_steps: 10_000, edges: 9_999 });
    const d = snap.diagnosis;
    expect(d.cycle).toEqual({
      detected: false,
      steps: { total: 0, items: [], truncated: false, omitted: 0 },
    });
    // Progress stops at the first link; everything else is downstream of it.
    expect(d.blocking_steps.total).toBe(1);
    expect(d.blocking_steps.items[0]).toMatchObject({
      waits_on_total: 0,
      blocks_total: 1,
      downstream_unfinished: 9_999,
    });
    expect(snap.steps).toMatchObject({ total: 10_000, truncated: true });
  });

  it('a 10,000-step cycle: every step on it and blocking, each with 9,999 unfinished downstream', async () => {
    const { task, entry } = await taskWithEntry();
    await insertStepChain(db.pool, task, 10_000, { cycle: true });
    await db.pool.query('ANALYZE');
    const { result, snap, ms } = await enrichTimed(entry);
    expect(result).toMatchObject({ enriched: 1, failed: 0 });
    expect(ms).toBeLessThan(defaults.batch_statement_timeout_ms / 2);
    const d = snap.diagnosis;
    expect(d.cycle).toMatchObject({ detected: true, steps: { total: 10_000, truncated: true } });
    expect(d.blocking_steps).toMatchObject({ total: 10_000, truncated: true });
    expect(d.blocking_steps.items).toHaveLength(20);
    for (const b of d.blocking_steps.items) {
      expect(b).toMatchObject({
        on_cycle: true,
        waits_on_total: 1,
        blocks_total: 1,
        downstream_unfinished: 9_999,
      });
    }
    expect(d.summary).toMatch(
      /^0 of 10000 steps finished; dependency cycle among chain_link, .* and 9995 more/,
    );
  });

  it('a 10,000-step star and a 100 x 100 layered graph are enriched well within the timeout', async () => {
    const star = await taskWithEntry();
    const layers = await taskWithEntry();
    for (const { task } of [star, layers]) await insertStepChain(db.pool, task, 10_000, { edges: false });
    // The star's first step points at every other; each layer's step at 3 of the next layer.
    await db.pool.query(
      `WITH o AS (SELECT workflow_step_uuid AS id, row_number() OVER (ORDER BY workflow_step_uuid) - 1 AS n
                    FROM tasker_workflow_steps WHERE task_uuid = $1)
       INSERT INTO tasker_workflow_step_edges (from_step_uuid, to_step_uuid)
       SELECT a.id, b.id FROM o a JOIN o b ON a.n = 0 AND b.n > 0`,
      [star.task],
    );
    await db.pool.query(
      `WITH o AS (SELECT workflow_step_uuid AS id, row_number() OVER (ORDER BY workflow_step_uuid) - 1 AS n
                    FROM tasker_workflow_steps WHERE task_uuid = $1)
       INSERT INTO tasker_workflow_step_edges (from_step_uuid, to_step_uuid)
       SELECT a.id, b.id FROM o a JOIN o b ON b.n / 100 = a.n / 100 + 1 AND (b.n - a.n) % 100 IN (0, 1, 2)`,
      [layers.task],
    );
    await db.pool.query('ANALYZE');
    const s = await enrichTimed(star.entry);
    expect(s.ms).toBeLessThan(defaults.batch_statement_timeout_ms / 2);
    expect(s.snap.counts).toMatchObject({ steps: 10_000, edges: 9_999 });
    expect(s.snap.diagnosis.blocking_steps.items[0]).toMatchObject({
      blocks_total: 9_999,
      downstream_unfinished: 9_999,
    });
    expect(s.snap.diagnosis.blocking_steps.items[0]!.blocks).toHaveLength(10);
    const l = await enrichTimed(layers.entry);
    expect(l.ms).toBeLessThan(defaults.batch_statement_timeout_ms / 2);
    expect(l.snap.counts).toMatchObject({ steps: 10_000, edges: 29_700 });
    // The first layer blocks; each first-layer step reaches 3, 5, 7, ... steps of the layers below.
    expect(l.snap.diagnosis.blocking_steps.total).toBe(100);
  });
});

describe('the same output as the quadratic diagnosis', () => {
  it('on 300 random small graphs with cycles, self-loops, duplicate and foreign edges, at two sets of limits', async () => {
    // Set-based and seeded: the same graphs every run.
    await db.pool.query(
      `SELECT setseed(0.42);
       INSERT INTO tasker_task_namespaces (name) VALUES ('random') ON CONFLICT DO NOTHING;
       INSERT INTO tasker_named_tasks (task_namespace_uuid, name, configuration)
         SELECT task_namespace_uuid, 'random', '{}' FROM tasker_task_namespaces WHERE name = 'random';
       INSERT INTO tasker_named_steps (name) SELECT 'random_' || g FROM generate_series(1, 6) g
         ON CONFLICT DO NOTHING;
       DO $$
       DECLARE
         t uuid; n integer; ids uuid[]; sid uuid; k integer;
         states text[] := ARRAY['pending', 'enqueued', 'in_progress', 'complete', 'error', 'resolved_manually',
                                'cancelled', 'waiting_for_retry', 'enqueued_for_orchestration'];
       BEGIN
         FOR r IN 1..300 LOOP
           INSERT INTO tasker_tasks (named_task_uuid, identity_hash)
             SELECT named_task_uuid, 'random-' || r FROM tasker_named_tasks WHERE name = 'random'
             RETURNING task_uuid INTO t;
           n := (random() * 25)::integer;
           ids := '{}';
           FOR i IN 1..n LOOP
             k := 1 + (random() * 5)::integer;
             INSERT INTO tasker_workflow_steps (task_uuid, named_step_uuid, attempts, max_attempts, retryable,
                                                created_at, results)
             SELECT t, (SELECT named_step_uuid FROM tasker_named_steps WHERE name = 'random_' || k),
                    CASE WHEN random() < 0.2 THEN NULL ELSE (random() * 4)::integer END,
                    CASE WHEN random() < 0.2 THEN NULL ELSE (random() * 4)::integer END,
                    random() < 0.7, '2025-01-01'::timestamptz - random() * interval '3 hours',
                    CASE WHEN random() < 0.3 THEN jsonb_build_object('error', 'boom ' || i) END
             RETURNING workflow_step_uuid INTO sid;
             ids := ids || sid;
             IF random() < 0.9 THEN
               INSERT INTO tasker_workflow_step_transitions (workflow_step_uuid, to_state, sort_key, most_recent,
                                                             created_at)
               VALUES (sid, states[1 + (random() * 8)::integer], 1, true,
                       '2025-01-01'::timestamptz - random() * interval '2 hours');
             END IF;
           END LOOP;
           FOR i IN 1..(random() * n * 2)::integer LOOP
             -- Mostly forward (a DAG), sometimes back (cycles), to itself, or to another task's step.
             k := 1 + (random() * (n - 1))::integer;
             INSERT INTO tasker_workflow_step_edges (from_step_uuid, to_step_uuid)
             VALUES (ids[k], CASE WHEN random() < 0.05 THEN ids[k]
                                  WHEN random() < 0.05 THEN (SELECT workflow_step_uuid FROM tasker_workflow_steps
                                                              WHERE task_uuid <> t LIMIT 1)
                                  WHEN random() < 0.15 THEN ids[1 + (random() * (n - 1))::integer]
                                  ELSE ids[least(n, k + 1 + (random() * 3)::integer)] END);
           END LOOP;
         END LOOP;
       END $$;
       ANALYZE;`,
    );
    const { rows } = await db.pool.query<{
      tasks: number;
      same_default: number;
      same_small: number;
      with_cycle: number;
      with_blocking: number;
      with_downstream: number;
    }>(
      `SELECT count(*)::integer AS tasks,
              count(*) FILTER (WHERE d.linear = d.reference)::integer AS same_default,
              count(*) FILTER (WHERE dlq_enrichment_diagnosis(t.task_uuid, $1, 2, 1, 300) - 'blocking_errors'
                                     = test_diagnosis_reference(t.task_uuid, $1, 2, 1, 300))::integer AS same_small,
              count(*) FILTER (WHERE d.linear #>> '{diagnosis,cycle,detected}' = 'true')::integer AS with_cycle,
              count(*) FILTER (WHERE (d.linear #>> '{diagnosis,blocking_steps,total}')::integer > 0)::integer AS with_blocking,
              count(*) FILTER (WHERE d.linear @? '$.diagnosis.blocking_steps.items[*] ? (@.downstream_unfinished > 1)')::integer AS with_downstream
         FROM tasker_tasks t
        CROSS JOIN LATERAL (SELECT dlq_enrichment_diagnosis(t.task_uuid, $1, 20, 10, 1024) - 'blocking_errors' AS linear,
                                   test_diagnosis_reference(t.task_uuid, $1, 20, 10, 1024) AS reference) d`,
      [NOW],
    );
    expect(rows[0]).toEqual({
      tasks: 300,
      same_default: 300,
      same_small: 300,
      with_cycle: expect.any(Number),
      with_blocking: expect.any(Number),
      with_downstream: expect.any(Number),
    });
    // The sample exercises what matters: cycles, blocking steps, long downstream walks.
    expect(rows[0]!.with_cycle).toBeGreaterThan(50);
    expect(rows[0]!.with_blocking).toBeGreaterThan(200);
    expect(rows[0]!.with_downstream).toBeGreaterThan(50);
  });
});
