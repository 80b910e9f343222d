/**
 * The stale storm (issue 20): the engine's workers were down for hours and every task in flight
 * went stale together. STORM_STALE tasks (default 1,000,000) are stale by their time in state,
 * among STORM_HEALTHY (default 1,000,000) healthy tasks in flight; each stale task has 2 steps.
 *
 * 1. Baseline: the previous build's detection (migrations/functions at commit 5ffe197, installed
 *    in a schema of their own from git), BASELINE_BATCHES (default 3) real batches of 1,000: each
 *    page gathered every candidate up to the smallest threshold and the lifetime array.
 * 2. This build: the detection job's run() drains the rest in batches of 1,000 (one run, no batch
 *    limit), every batch timed: the first, the middle and the last, and the drain rate (tasks/s,
 *    each an error transition and a DLQ entry).
 * 3. Enrichment: STORM_ENRICH_RUNS (default 2, the cores) runs of the enrichment job's sweep at
 *    once, until no entry awaits enrichment; the rate.
 * Then it checks that every stale task has exactly one error transition and one entry.
 *
 * Targets: last batch <= 1.5 x the first; drain >= 2,000 tasks/s; enrichment within 2 x the
 * detection drain time.
 *
 *   npm run bench -- storm                       (STORM_STALE=200000 STORM_HEALTHY=200000 for a quicker look)
 */
import { execFileSync } from 'node:child_process';
import type pg from 'pg';
import detectStaleTasks, { detectionOptionsFromConfig } from '../jobs/detect-stale-tasks.ts';
import enrichDlqSnapshots from '../jobs/enrich-dlq-snapshots.ts';
import { ConfigSchema } from '../src/config/schema.ts';
import { databaseNow } from '../src/db/queries/server.ts';
import { projectRoot } from '../src/paths.ts';
import { silentLogger } from '../src/telemetry/logger.ts';
import { type BenchServer, timed } from './db.ts';
import { loadTasks } from './detect.bench.ts';

const STALE = Number(process.env.STORM_STALE ?? 1_000_000);
const HEALTHY = Number(process.env.STORM_HEALTHY ?? 1_000_000);
const BASELINE_BATCHES = Number(process.env.BASELINE_BATCHES ?? 3);
const BATCH = 1000;
const ENRICH_RUNS = Number(process.env.STORM_ENRICH_RUNS ?? 2);
const PREVIOUS = '5ffe197ab757246e3e74fc5f00f25e87c93ad4d1';

export default async function storm(server: BenchServer): Promise<void> {
  console.log(`server: ${server.description}`);
  const db = await server.createDatabase();
  try {
    const load = await timed(async () => {
      await loadTasks(db.pool, HEALTHY, 0);
      await loadStale(db.pool, STALE);
      await db.pool.query('VACUUM ANALYZE');
    });
    console.log(
      `loaded ${STALE.toLocaleString('en')} stale + ${HEALTHY.toLocaleString('en')} healthy tasks in flight in ${(load.ms / 1000).toFixed(0)} s`,
    );
    const config = ConfigSchema.parse({});
    const options = {
      ...detectionOptionsFromConfig(config),
      batch_size: BATCH,
      max_batches: 1000,
      batch_statement_timeout_ms: 600_000,
      event_channel: null,
    };
    const now = await databaseNow(db.pool);

    // 1. The previous build's pages, from git.
    const baseline = await baselineBatches(db.pool, now);
    if (baseline.length > 0)
      console.log(
        `previous build (${PREVIOUS.slice(0, 7)}): ${baseline.length} batches of ${BATCH}: ${baseline.map((ms) => ms.toFixed(0)).join(' / ')} ms each, with ${STALE.toLocaleString('en')} stale waiting (${(BATCH / (median(baseline) / 1000)).toFixed(0)} tasks/s)`,
      );

    // 2. This build's drain.
    const batchMs: number[] = [];
    let last = performance.now();
    let detected = 0;
    const drained = await timed(async () => {
      for (;;) {
        const result = await detectStaleTasks.run(
          {
            pool: db.pool,
            now,
            logger: silentLogger(),
            signal: new AbortController().signal,
            progress: () => {
              const t = performance.now();
              batchMs.push(t - last);
              last = t;
            },
          },
          options,
        );
        detected += result.tasks_detected;
        if (!result.more) return;
      }
    });
    const first = batchMs[0]!;
    const middle = batchMs[Math.floor(batchMs.length / 2)]!;
    const lastBatch = batchMs.at(-1)!;
    const fullBatches = batchMs.slice(0, Math.max(1, batchMs.length - 2));
    const rate = detected / (drained.ms / 1000);
    console.log(
      `this build: drained ${detected.toLocaleString('en')} in ${(drained.ms / 1000).toFixed(1)} s over ${batchMs.length} batches: ` +
        `${rate.toFixed(0)} tasks/s (target >= 2,000)\n` +
        `  batch at the start ${first.toFixed(0)} ms, middle ${middle.toFixed(0)} ms, end ${lastBatch.toFixed(0)} ms ` +
        `(last full batch ${fullBatches.at(-1)!.toFixed(0)} ms; ratio last full / first ${(fullBatches.at(-1)! / first).toFixed(2)}, target <= 1.5)`,
    );

    // 3. Enrichment of the new entries: STORM_ENRICH_RUNS sweeps at once (as that many workers
    // would take the detection batches' requests), each until no entry awaits enrichment.
    let enriched = 0;
    const enrichOptions = { ...enrichDlqSnapshots.optionsFromConfig(config), max_batches: 1000 };
    const enrichment = await timed(() =>
      Promise.all(
        Array.from({ length: ENRICH_RUNS }, async () => {
          for (;;) {
            const result = await enrichDlqSnapshots.run(
              { pool: db.pool, now, logger: silentLogger(), signal: new AbortController().signal },
              enrichOptions,
            );
            enriched += result.enriched;
            if (result.enriched === 0) return;
          }
        }),
      ),
    );
    const { rows: left } = await db.pool.query(
      `SELECT count(*)::int AS n FROM tasker_tasks_dlq WHERE NOT (task_snapshot ? 'enrichment')`,
    );
    console.log(
      `enrichment (${ENRICH_RUNS} sweeps at once): ${enriched.toLocaleString('en')} entries in ${(enrichment.ms / 1000).toFixed(1)} s: ${(enriched / (enrichment.ms / 1000)).toFixed(0)} entries/s; ` +
        `${(enrichment.ms / drained.ms).toFixed(2)} x the detection drain (target <= 2); ${left[0].n} not enriched`,
    );

    // Exactly once.
    const { rows } = await db.pool.query(
      `SELECT count(*) FILTER (WHERE errors = 1 AND entries = 1)::int AS once,
              count(*) FILTER (WHERE errors <> 1 OR entries <> 1)::int AS other
         FROM (SELECT t.task_uuid,
                      (SELECT count(*) FROM tasker_task_transitions x WHERE x.task_uuid = t.task_uuid AND x.to_state = 'error') AS errors,
                      (SELECT count(*) FROM tasker_tasks_dlq d WHERE d.task_uuid = t.task_uuid) AS entries
                 FROM tasker_tasks t WHERE t.identity_hash LIKE 'storm-%') o`,
    );
    console.log(
      `every stale task: ${rows[0].once.toLocaleString('en')} with one error transition and one entry, ${rows[0].other} otherwise`,
    );
  } finally {
    await db.drop();
  }
}

/** n tasks stale by time in state (entered 2 h ago, created 3 h ago), 2 steps each, in chunks. */
async function loadStale(pool: pg.Pool, n: number): Promise<void> {
  const chunk = 100_000;
  for (let start = 0; start < n; start += chunk) {
    await pool.query(
      `WITH templates AS (SELECT array_agg(named_task_uuid) AS ids FROM tasker_named_tasks),
       tasks AS (
         INSERT INTO tasker_tasks (named_task_uuid, identity_hash, complete, created_at, updated_at, requested_at)
         SELECT ids[1 + g % 20], 'storm-' || g, false, now() - interval '3 hours', now(), now()
           FROM templates, generate_series($1::int, $1::int + $2::int - 1) g
         RETURNING task_uuid, created_at, (hashtext(task_uuid::text) & 2147483647) % 3 AS s),
       transitions AS (
         INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
         SELECT task_uuid, 'pending', NULL, 0, false, created_at, created_at FROM tasks
         UNION ALL
         SELECT task_uuid, (ARRAY['waiting_for_dependencies', 'waiting_for_retry', 'steps_in_process'])[1 + s],
                'pending', 1, true, now() - interval '2 hours' - make_interval(secs => s), now()
           FROM tasks)
       INSERT INTO tasker_workflow_steps (task_uuid, named_step_uuid, attempts, max_attempts)
       SELECT t.task_uuid, st.named_step_uuid, 1, 3
         FROM tasks t CROSS JOIN (SELECT named_step_uuid FROM tasker_named_steps ORDER BY name LIMIT 2) st`,
      [start, Math.min(chunk, n - start)],
    );
  }
}

/**
 * The previous build's detection batches: its three changed functions from git, in a schema of
 * their own (the rest of its functions are this build's, unchanged since), called the way its job
 * called them: the lifetime candidates once, then pages from the cursor. [] when git is not there.
 */
async function baselineBatches(pool: pg.Pool, now: Date): Promise<number[]> {
  if (BASELINE_BATCHES === 0) return [];
  const files = ['get_stale_tasks_for_dlq', 'detect_stale_tasks_batch', 'stale_lifetime_candidates'];
  let sql: string[];
  try {
    sql = files.map((f) =>
      execFileSync('git', ['show', `${PREVIOUS}:migrations/functions/${f}.sql`], {
        cwd: projectRoot,
        encoding: 'utf8',
      }),
    );
  } catch (err) {
    console.log(`previous build: not measured (git: ${(err as Error).message.split('\n')[0]})`);
    return [];
  }
  const client = await pool.connect();
  try {
    await client.query('CREATE SCHEMA IF NOT EXISTS baseline');
    await client.query('SET search_path = baseline, public');
    for (const text of sql) await client.query(text);
    const t0 = performance.now();
    const { rows } = await client.query('SELECT baseline.stale_lifetime_candidates($1, 24) AS ids', [now]);
    const lifetime = rows[0].ids as string[];
    const lifetimeMs = performance.now() - t0;
    const times: number[] = [];
    let after: { at: string; task: string } | null = null;
    for (let i = 0; i < BASELINE_BATCHES; i++) {
      const started = performance.now();
      const page: pg.QueryResult<{ task_uuid: string; at: string; task: string }> = await client.query(
        `SELECT task_uuid, page_last_entered_at::text AS at, page_last_task_uuid AS task
           FROM baseline.detect_stale_tasks_batch($1, false, $2, 60, 30, 30, 24, true, true,
                                                  enum_range(NULL::dlq_reason), NULL, $3::timestamptz, $4::uuid, $5::uuid[])`,
        [now, BATCH, after?.at ?? null, after?.task ?? null, lifetime],
      );
      times.push(performance.now() - started + (i === 0 ? lifetimeMs : 0));
      const lastRow: { at: string; task: string } | undefined = page.rows[0];
      after = lastRow ? { at: lastRow.at, task: lastRow.task } : null;
    }
    return times;
  } finally {
    await client.query('RESET search_path').catch(() => undefined);
    await client.query('DROP SCHEMA IF EXISTS baseline CASCADE').catch(() => undefined);
    client.release();
  }
}

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}
