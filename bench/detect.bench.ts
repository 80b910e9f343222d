/**
 * Detection cost against the number of tasks in flight: one detection pass (the job's run() with
 * the shipped defaults: batches of 100, at most 10 per run) that finds and acts on 1,000 stale
 * tasks, among 100,000 and among 1,000,000 tasks in flight, and a pass when nothing is stale.
 * Targets (issue 10): pass(1M) / pass(100k) <= 2; a nothing-stale pass at 1M under 250 ms.
 *
 * Shape, per size N (BENCH_DETECT_SIZES=100000,1000000):
 * - N tasks IN FLIGHT and fresh: created up to 20 h ago (under the 24 h lifetime), in a
 *   non-terminal state entered up to 25 minutes ago (under the smallest threshold, 30 min), spread
 *   over the states detection judges and the others (pending, evaluating_results, ...);
 * - N / 2 finished tasks around them (BENCH_DETECT_FINISHED_PERCENT, default 50), created 1-20
 *   days ago: 90 % complete (complete = true), 7 % error, 3 % cancelled (complete = false, as the
 *   engine leaves them: the lifetime scan reads these until archival moves them);
 * - 20 templates, a third overriding max_waiting_for_retry_minutes (45);
 * - per repeat, 1,000 stale tasks with 3 steps each: 800 stale by time in state (entered 2-10 h
 *   ago), 200 stale only by lifetime (created 25 h ago, state entered 1 minute ago). Tasks acted on
 *   stay behind as error tasks (complete = false), as in production.
 * Each figure is the median of BENCH_DETECT_REPEATS (default 5) passes, all passes shown.
 */
import type pg from 'pg';
import detectStaleTasks, {
  type DetectStaleTasksOptions,
  detectionOptionsFromConfig,
} from '../jobs/detect-stale-tasks.ts';
import { ConfigSchema } from '../src/config/schema.ts';
import { databaseNow } from '../src/db/queries/server.ts';
import { silentLogger } from '../src/telemetry/logger.ts';
import { type BenchServer, timed } from './db.ts';

const STALE = 1000;
const LIFETIME_STALE = 200;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const list = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(' / ');

export default async function detectBench(server: BenchServer): Promise<void> {
  const sizes = (process.env.BENCH_DETECT_SIZES ?? '100000,1000000').split(',').map(Number);
  const finishedPercent = Number(process.env.BENCH_DETECT_FINISHED_PERCENT ?? '50');
  const repeats = Number(process.env.BENCH_DETECT_REPEATS ?? '5');
  console.log(`server: ${server.description}`);
  const options = detectionOptionsFromConfig(ConfigSchema.parse({})); // 60/30/30 min, 24 h, 100 x 10
  const results: { size: number; pass: number; idle: number }[] = [];
  for (const size of sizes) {
    const db = await server.createDatabase();
    try {
      const finished = Math.round((size * finishedPercent) / 100);
      const load = await timed(() => loadTasks(db.pool, size, finished));
      const passes: number[] = [];
      const idles: number[] = [];
      const pages: string[] = [];
      const idlePages: string[] = [];
      // One pass: runs of the job, each going on where the previous one stopped (as a worker hands
      // the rest on), until the pass is through.
      const run = async () =>
        timed(async () => {
          const now = await databaseNow(db.pool);
          let resume: DetectStaleTasksOptions['resume'] = null;
          let tasks_detected = 0;
          let dlq_entries_created = 0;
          let batches = 0;
          let runs = 0;
          do {
            const r = await detectStaleTasks.run(
              { pool: db.pool, now, logger: silentLogger(), signal: new AbortController().signal },
              { ...options, resume },
            );
            tasks_detected += r.tasks_detected;
            dlq_entries_created += r.dlq_entries_created;
            batches += r.batches;
            runs += 1;
            resume = r.resume;
          } while (resume);
          return { tasks_detected, dlq_entries_created, batches, runs };
        });
      for (let i = 0; i < repeats; i++) {
        await insertStaleTasks(db.pool, STALE);
        await db.pool.query('ANALYZE');
        const { ms, result } = await run();
        if (result.tasks_detected !== STALE || result.dlq_entries_created !== STALE) {
          throw new Error(
            `expected ${STALE} stale tasks acted on, got ${JSON.stringify({ ...result, tasks: undefined })}`,
          );
        }
        passes.push(ms);
        pages.push(`${result.batches}/${result.runs}`);
        const idle = await run();
        idlePages.push(`${idle.result.batches}/${idle.result.runs}`);
        if (idle.result.tasks_detected !== 0) {
          throw new Error(`expected nothing stale, got ${idle.result.tasks_detected}`);
        }
        idles.push(idle.ms);
      }
      results.push({ size, pass: median(passes), idle: median(idles) });
      console.log(
        `in flight ${size.toLocaleString('en')} (+ ${finished.toLocaleString('en')} finished): loaded in ${(load.ms / 1000).toFixed(1)} s\n` +
          `  pass acting on ${STALE} stale (${STALE - LIFETIME_STALE} by state, ${LIFETIME_STALE} by lifetime): ` +
          `${list(passes)} ms (median ${median(passes).toFixed(0)} ms; pages/runs ${pages.join(' ')})\n` +
          `  pass with nothing stale: ${list(idles)} ms (median ${median(idles).toFixed(0)} ms, target < 250 ms; pages/runs ${idlePages.join(' ')})`,
      );
    } finally {
      await db.drop();
    }
  }
  if (results.length >= 2) {
    const first = results[0]!;
    const last = results.at(-1)!;
    console.log(
      `ratio pass(${last.size.toLocaleString('en')}) / pass(${first.size.toLocaleString('en')}) = ` +
        `${(last.pass / first.pass).toFixed(2)} (target <= 2); nothing-stale ratio ${(last.idle / first.idle).toFixed(2)}`,
    );
  }
}

/** inFlight fresh in-flight tasks and finished tasks around them (see the header). */
export async function loadTasks(pool: pg.Pool, inFlight: number, finished: number): Promise<void> {
  await pool.query(`INSERT INTO tasker_named_steps (name) VALUES ('fetch'), ('transform'), ('store')`);
  await pool.query(`INSERT INTO tasker_task_namespaces (name) VALUES ('bench')`);
  await pool.query(`
    INSERT INTO tasker_named_tasks (task_namespace_uuid, name, configuration)
    SELECT task_namespace_uuid, 'template_' || g,
           CASE WHEN g % 3 = 0 THEN '{"lifecycle": {"max_waiting_for_retry_minutes": 45}}'::jsonb ELSE '{}'::jsonb END
      FROM tasker_task_namespaces, generate_series(1, 20) g`);
  const chunk = 100_000;
  for (let start = 0; start < inFlight; start += chunk) {
    await pool.query(
      `WITH templates AS (SELECT array_agg(named_task_uuid) AS ids FROM tasker_named_tasks),
       tasks AS (
         INSERT INTO tasker_tasks (task_uuid, named_task_uuid, identity_hash, complete, created_at, updated_at, requested_at)
         SELECT gen_random_uuid(), ids[1 + g % 20], md5(g::text), false,
                now() - make_interval(secs => 1800 + ((g::bigint * 7919) % 70000)::int), now(), now()
           FROM templates, generate_series($1::int, $1::int + $2::int - 1) g
         RETURNING task_uuid, created_at, (hashtext(task_uuid::text) & 2147483647) % 1500 AS s)
       INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
       SELECT task_uuid, 'pending', NULL, 0, false, created_at, created_at FROM tasks
       UNION ALL
       SELECT task_uuid,
              (ARRAY['waiting_for_dependencies', 'waiting_for_retry', 'steps_in_process', 'evaluating_results',
                     'enqueuing_steps', 'blocked_by_failures'])[1 + s % 6],
              'pending', 1, true, now() - make_interval(secs => s), now() - make_interval(secs => s)
         FROM tasks`,
      [start, Math.min(chunk, inFlight - start)],
    );
  }
  for (let start = 0; start < finished; start += chunk) {
    await pool.query(
      `WITH templates AS (SELECT array_agg(named_task_uuid) AS ids FROM tasker_named_tasks),
       tasks AS (
         INSERT INTO tasker_tasks (task_uuid, named_task_uuid, identity_hash, complete, created_at, updated_at, requested_at)
         SELECT gen_random_uuid(), ids[1 + g % 20], md5(g::text), (g % 100) < 90,
                now() - make_interval(days => 1 + g % 20), now(), now()
           FROM templates, generate_series($1::int, $1::int + $2::int - 1) g
         RETURNING task_uuid, created_at, complete, (hashtext(task_uuid::text) & 2147483647) % 10 AS bucket)
       INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
       SELECT task_uuid, 'pending', NULL, 0, false, created_at, created_at FROM tasks
       UNION ALL
       SELECT task_uuid, CASE WHEN complete THEN 'complete' WHEN bucket < 7 THEN 'error' ELSE 'cancelled' END,
              'pending', 1, true, created_at + interval '1 hour', created_at + interval '1 hour'
         FROM tasks`,
      [start, Math.min(chunk, finished - start)],
    );
  }
  await pool.query('VACUUM ANALYZE');
}

/** n stale tasks with 3 steps each: n - LIFETIME_STALE by time in state, LIFETIME_STALE by lifetime only. */
export async function insertStaleTasks(pool: pg.Pool, n: number): Promise<void> {
  await pool.query(
    `WITH templates AS (SELECT array_agg(named_task_uuid) AS ids FROM tasker_named_tasks),
     tasks AS (
       INSERT INTO tasker_tasks (named_task_uuid, identity_hash, created_at, updated_at, requested_at)
       SELECT ids[1 + g % 20], md5(random()::text),
              CASE WHEN g <= $2::int THEN now() - interval '25 hours' ELSE now() - interval '11 hours' END,
              now(), now()
         FROM templates, generate_series(1, $1::int) g
       RETURNING task_uuid, created_at),
     numbered AS (SELECT task_uuid, created_at, row_number() OVER () AS i FROM tasks),
     transitions AS (
       INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
       SELECT task_uuid, 'pending', NULL, 0, false, created_at, created_at FROM numbered
       UNION ALL
       SELECT task_uuid,
              (ARRAY['waiting_for_dependencies', 'waiting_for_retry', 'steps_in_process'])[1 + i % 3],
              'pending', 1, true,
              CASE WHEN created_at < now() - interval '24 hours' THEN now() - interval '1 minute'
                   ELSE now() - make_interval(mins => 120 + (i % 480)::int) END,
              now()
         FROM numbered)
     INSERT INTO tasker_workflow_steps (task_uuid, named_step_uuid, attempts, max_attempts)
     SELECT n.task_uuid, s.named_step_uuid, 1, 3
       FROM numbered n
      CROSS JOIN (SELECT named_step_uuid FROM tasker_named_steps ORDER BY name LIMIT 3) s`,
    [n, LIFETIME_STALE],
  );
}
