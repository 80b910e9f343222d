/**
 * Detection cost against table size: one detection pass (the job's run() with the shipped defaults:
 * batches of 100, so 10 batches) that finds and acts on 1,000 stale tasks, among 100,000 and
 * among 1,000,000 live tasks. Target: pass(1M) / pass(100k) <= 2, and pass(1M) < 1 s.
 *
 * Live tasks: 2 % in flight and fresh (non-terminal, entered their state minutes ago), the rest
 * finished (90 % complete, 7 % error, 3 % cancelled), each with its transitions; the stale ones
 * have 3 steps each so the reason lookup has work to do. Sizes: BENCH_DETECT_SIZES=100000,1000000.
 */
import type pg from 'pg';
import detectStaleTasks, { detectionOptionsFromConfig } from '../jobs/detect-stale-tasks.ts';
import { ConfigSchema } from '../src/config/schema.ts';
import { databaseNow } from '../src/db/queries/server.ts';
import { silentLogger } from '../src/telemetry/logger.ts';
import { type BenchServer, timed } from './db.ts';

const STALE = 1000;
const REPEATS = 3;

export default async function detectBench(server: BenchServer): Promise<void> {
  const sizes = (process.env.BENCH_DETECT_SIZES ?? '100000,1000000').split(',').map(Number);
  console.log(`server: ${server.description}`);
  const medians: number[] = [];
  for (const size of sizes) {
    const db = await server.createDatabase();
    try {
      const load = await timed(() => loadLiveTasks(db.pool, size));
      const passes: number[] = [];
      for (let i = 0; i < REPEATS; i++) {
        await insertStaleTasks(db.pool, STALE);
        await db.pool.query('ANALYZE');
        const now = await databaseNow(db.pool);
        const { ms, result } = await timed(() =>
          detectStaleTasks.run(
            { pool: db.pool, now, logger: silentLogger(), signal: new AbortController().signal },
            // The shipped defaults: thresholds 60/30/30 min, 24 h, batches of 100, at most 10 per run.
            detectionOptionsFromConfig(ConfigSchema.parse({})),
          ),
        );
        if (result.tasks_detected !== STALE || result.dlq_entries_created !== STALE) {
          throw new Error(
            `expected ${STALE} stale tasks acted on, got ${JSON.stringify({ ...result, tasks: undefined })}`,
          );
        }
        passes.push(ms);
      }
      const median = [...passes].sort((a, b) => a - b)[Math.floor(REPEATS / 2)]!;
      medians.push(median);
      console.log(
        `live tasks ${size.toLocaleString('en')}: loaded in ${(load.ms / 1000).toFixed(1)} s; ` +
          `pass over ${STALE} stale tasks: ${passes.map((p) => p.toFixed(0)).join(' / ')} ms (median ${median.toFixed(0)} ms, ${(median / 10).toFixed(1)} ms per batch of 100)`,
      );
    } finally {
      await db.drop();
    }
  }
  if (medians.length >= 2) {
    const ratio = medians.at(-1)! / medians[0]!;
    console.log(
      `ratio pass(${sizes.at(-1)!.toLocaleString('en')}) / pass(${sizes[0]!.toLocaleString('en')}) = ${ratio.toFixed(2)} (target <= 2); ` +
        `pass at ${sizes.at(-1)!.toLocaleString('en')}: ${medians.at(-1)!.toFixed(0)} ms (target < 1000 ms)`,
    );
  }
}

/** size live tasks: 2 % in flight (created under 20 minutes ago), the rest finished days ago. */
async function loadLiveTasks(pool: pg.Pool, size: number): Promise<void> {
  await pool.query(`INSERT INTO tasker_named_steps (name) VALUES ('fetch'), ('transform'), ('store')`);
  await pool.query(`INSERT INTO tasker_task_namespaces (name) VALUES ('bench')`);
  await pool.query(`
    INSERT INTO tasker_named_tasks (task_namespace_uuid, name, configuration)
    SELECT task_namespace_uuid, 'template_' || g,
           CASE WHEN g % 3 = 0 THEN '{"lifecycle": {"max_waiting_for_retry_minutes": 45}}'::jsonb ELSE '{}'::jsonb END
      FROM tasker_task_namespaces, generate_series(1, 20) g`);
  const chunk = 100_000;
  for (let start = 0; start < size; start += chunk) {
    const n = Math.min(chunk, size - start);
    await pool.query(
      `WITH templates AS (SELECT array_agg(named_task_uuid) AS ids FROM tasker_named_tasks),
       tasks AS (
         INSERT INTO tasker_tasks (task_uuid, named_task_uuid, identity_hash, complete, created_at, updated_at, requested_at)
         SELECT gen_random_uuid(), ids[1 + g % 20], md5(g::text),
                (g % 100) < 88,
                now() - CASE WHEN (g % 100) < 2 THEN make_interval(mins => g % 20) ELSE make_interval(days => 1 + g % 20) END,
                now(), now()
           FROM templates, generate_series($1::int, $1::int + $2::int - 1) g
         RETURNING task_uuid, created_at, (hashtext(task_uuid::text) & 2147483647) % 100 AS bucket, complete)
       INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
       SELECT task_uuid, 'pending', NULL, 0, false, created_at, created_at FROM tasks
       UNION ALL
       SELECT task_uuid,
              CASE WHEN now() - created_at < interval '1 hour'
                     THEN (ARRAY['waiting_for_dependencies', 'waiting_for_retry', 'steps_in_process', 'evaluating_results'])[1 + bucket % 4]
                   WHEN complete THEN 'complete'
                   WHEN bucket % 10 < 7 THEN 'error' ELSE 'cancelled' END,
              'pending', 1, true, created_at + interval '1 minute', created_at + interval '1 minute'
         FROM tasks`,
      [start, n],
    );
  }
  await pool.query('VACUUM ANALYZE');
}

/** n tasks stuck 2 to 10 hours in a waiting state, with 3 steps each. */
async function insertStaleTasks(pool: pg.Pool, n: number): Promise<void> {
  await pool.query(
    `WITH templates AS (SELECT array_agg(named_task_uuid) AS ids FROM tasker_named_tasks),
     tasks AS (
       INSERT INTO tasker_tasks (named_task_uuid, identity_hash, created_at, updated_at, requested_at)
       SELECT ids[1 + g % 20], md5(random()::text), now() - interval '11 hours', now(), now()
         FROM templates, generate_series(1, $1::int) g
       RETURNING task_uuid, created_at),
     numbered AS (SELECT task_uuid, created_at, row_number() OVER () AS i FROM tasks),
     transitions AS (
       INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
       SELECT task_uuid, 'pending', NULL, 0, false, created_at, created_at FROM numbered
       UNION ALL
       SELECT task_uuid,
              (ARRAY['waiting_for_dependencies', 'waiting_for_retry', 'steps_in_process'])[1 + i % 3],
              'pending', 1, true, now() - make_interval(mins => 120 + (i % 480)::int), now()
         FROM numbered)
     INSERT INTO tasker_workflow_steps (task_uuid, named_step_uuid, attempts, max_attempts)
     SELECT n.task_uuid, s.named_step_uuid, 1, 3
       FROM numbered n
      CROSS JOIN (SELECT named_step_uuid FROM tasker_named_steps ORDER BY name LIMIT 3) s`,
    [n],
  );
}
