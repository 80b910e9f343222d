/**
 * Enrichment cost (issue 20): (a) one entry's enrichment against the size of its task's graph, the
 * diagnosis now (linear in steps + edges) and before (the transitive closure it replaced, from
 * test/helpers/diagnosis-reference.ts, only on the sizes it can finish); (b) the sweep's throughput
 * over a backlog of entries of small tasks, one run alone and several runs at once, each entry
 * enriched exactly once.
 *
 * Shape:
 * - (a) per size in BENCH_ENRICH_CHAIN_SIZES (default 1000,5000,10000): a task whose steps form
 *   one chain (every step pending, so every step but the first waits on its predecessor and the
 *   first has all the others downstream); the whole enriched snapshot (dlq_enriched_snapshot,
 *   detail "full", the shipped limits) and the diagnosis alone, median of 3. The quadratic
 *   diagnosis on BENCH_ENRICH_BASELINE_SIZES (default 250,500,1000), once each, under a 120 s
 *   statement timeout.
 * - (b) BENCH_ENRICH_ENTRIES (default 20000) pending entries, each of a task with 5 chained steps
 *   (2 complete, 1 in error with a result, 2 pending) and 7 transitions; the enrichment job's
 *   sweep with the shipped options (batches of 50) but max_batches high enough to drain it, as
 *   1 run, then (the snapshots reset) as BENCH_ENRICH_CONCURRENCY (default 4) runs at once.
 */
import type pg from 'pg';
import enrichJob, { enrichmentOptionsFromConfig } from '../jobs/enrich-dlq-snapshots.ts';
import { ConfigSchema } from '../src/config/schema.ts';
import { databaseNow } from '../src/db/queries/server.ts';
import { silentLogger } from '../src/telemetry/logger.ts';
import { DIAGNOSIS_REFERENCE_SQL } from '../test/helpers/diagnosis-reference.ts';
import { type BenchServer, timed } from './db.ts';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sizesOf = (name: string, fallback: string) => (process.env[name] ?? fallback).split(',').map(Number);

export default async function enrichBench(server: BenchServer): Promise<void> {
  console.log(`server: ${server.description}`);
  const db = await server.createDatabase();
  try {
    await db.pool.query(DIAGNOSIS_REFERENCE_SQL);
    await graphSizes(db.pool);
    await sweepThroughput(db.pool);
  } finally {
    await db.drop();
  }
}

async function chainTask(pool: pg.Pool, length: number): Promise<string> {
  const { rows } = await pool.query<{ task_uuid: string }>(
    `WITH ns AS (INSERT INTO tasker_task_namespaces (name) VALUES ('bench') ON CONFLICT (name) DO UPDATE
                   SET name = EXCLUDED.name RETURNING task_namespace_uuid),
     nt AS (INSERT INTO tasker_named_tasks (task_namespace_uuid, name, configuration)
            SELECT task_namespace_uuid, 'chain_' || $1::int || '_' || md5(random()::text), '{}' FROM ns
            RETURNING named_task_uuid)
     INSERT INTO tasker_tasks (named_task_uuid, identity_hash) SELECT named_task_uuid, md5(random()::text) FROM nt
     RETURNING task_uuid`,
    [length],
  );
  const task = rows[0]!.task_uuid;
  await pool.query(
    `INSERT INTO tasker_task_transitions (task_uuid, to_state, sort_key, most_recent) VALUES ($1, 'error', 1, true)`,
    [task],
  );
  await pool.query(
    `WITH named AS (INSERT INTO tasker_named_steps (name) VALUES ('chain_link') ON CONFLICT (name) DO UPDATE
                      SET name = EXCLUDED.name RETURNING named_step_uuid),
     steps AS (INSERT INTO tasker_workflow_steps (task_uuid, named_step_uuid, attempts, max_attempts, retryable)
               SELECT $1, named_step_uuid, 0, 3, true FROM named, generate_series(1, $2) RETURNING workflow_step_uuid)
     INSERT INTO tasker_workflow_step_transitions (workflow_step_uuid, to_state, sort_key, most_recent)
     SELECT workflow_step_uuid, 'pending', 0, true FROM steps`,
    [task, length],
  );
  await pool.query(
    `WITH o AS (SELECT workflow_step_uuid AS id, row_number() OVER (ORDER BY workflow_step_uuid) AS n
                  FROM tasker_workflow_steps WHERE task_uuid = $1)
     INSERT INTO tasker_workflow_step_edges (from_step_uuid, to_step_uuid)
     SELECT a.id, b.id FROM o a JOIN o b ON b.n = a.n + 1`,
    [task],
  );
  return task;
}

async function graphSizes(pool: pg.Pool): Promise<void> {
  const limits = enrichmentOptionsFromConfig(ConfigSchema.parse({}));
  console.log('(a) one entry against its graph: a chain of N pending steps');
  for (const size of sizesOf('BENCH_ENRICH_CHAIN_SIZES', '1000,5000,10000')) {
    const task = await chainTask(pool, size);
    await pool.query('ANALYZE');
    const snapshot: number[] = [];
    const diagnosis: number[] = [];
    for (let i = 0; i < 3; i++) {
      snapshot.push(
        (
          await timed(() =>
            pool.query(`SELECT dlq_enriched_snapshot('{}', $1, now(), true, $2, $3, $4, $5)`, [
              task,
              limits.max_list_items,
              limits.max_history_rows,
              limits.max_payload_bytes,
              limits.max_snapshot_bytes,
            ]),
          )
        ).ms,
      );
      diagnosis.push(
        (await timed(() => pool.query(`SELECT dlq_enrichment_diagnosis($1, now(), 20, 10, 1024)`, [task])))
          .ms,
      );
    }
    console.log(
      `  ${size.toLocaleString('en')} steps: whole snapshot ${median(snapshot).toFixed(0)} ms, diagnosis ${median(diagnosis).toFixed(0)} ms (median of 3)`,
    );
  }
  console.log('  before (the transitive closure), diagnosis alone, 120 s statement timeout:');
  for (const size of sizesOf('BENCH_ENRICH_BASELINE_SIZES', '250,500,1000')) {
    const task = await chainTask(pool, size);
    await pool.query('ANALYZE');
    const client = await pool.connect();
    try {
      await client.query(`SET statement_timeout = '120s'`);
      const { ms } = await timed(async () => {
        try {
          await client.query(`SELECT test_diagnosis_reference($1, now(), 20, 10, 1024)`, [task]);
          return true;
        } catch {
          return false;
        }
      });
      console.log(
        `  ${size.toLocaleString('en')} steps: ${ms >= 120_000 ? 'timed out at 120 s' : `${ms.toFixed(0)} ms`}`,
      );
    } finally {
      await client.query('RESET statement_timeout');
      client.release();
    }
  }
}

async function sweepThroughput(pool: pg.Pool): Promise<void> {
  const entries = Number(process.env.BENCH_ENRICH_ENTRIES ?? '20000');
  const concurrency = Number(process.env.BENCH_ENRICH_CONCURRENCY ?? '4');
  console.log(`(b) the sweep over ${entries.toLocaleString('en')} entries of 5-step tasks`);
  await pool.query(`INSERT INTO tasker_named_steps (name) VALUES ('s1'), ('s2'), ('s3'), ('s4'), ('s5')
                    ON CONFLICT (name) DO NOTHING`);
  const chunk = 10_000;
  for (let start = 0; start < entries; start += chunk) {
    await pool.query(
      `WITH nt AS (SELECT named_task_uuid FROM tasker_named_tasks LIMIT 1),
       tasks AS (
         INSERT INTO tasker_tasks (named_task_uuid, identity_hash, created_at)
         SELECT nt.named_task_uuid, md5(random()::text), now() - interval '2 hours'
           FROM nt, generate_series(1, $1::int)
         RETURNING task_uuid),
       tt AS (
         INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at)
         SELECT task_uuid, s.state, s.prev, s.k, s.k = 1, now() - interval '1 hour' + s.k * interval '1 minute'
           FROM tasks, (VALUES (0, 'pending', NULL), (1, 'error', 'steps_in_process')) s(k, state, prev)),
       steps AS (
         INSERT INTO tasker_workflow_steps (task_uuid, named_step_uuid, attempts, max_attempts, retryable, results)
         SELECT t.task_uuid, ns.named_step_uuid, CASE WHEN g = 3 THEN 3 ELSE 1 END, 3, true,
                CASE WHEN g = 3 THEN '{"error": {"message": "connection refused"}}'::jsonb END
           FROM tasks t CROSS JOIN generate_series(1, 5) g JOIN tasker_named_steps ns ON ns.name = 's' || g
         RETURNING workflow_step_uuid, task_uuid, named_step_uuid),
       st AS (
         INSERT INTO tasker_workflow_step_transitions (workflow_step_uuid, to_state, sort_key, most_recent)
         SELECT s.workflow_step_uuid, CASE ns.name WHEN 's1' THEN 'complete' WHEN 's2' THEN 'complete'
                                                   WHEN 's3' THEN 'error' ELSE 'pending' END, 1, true
           FROM steps s JOIN tasker_named_steps ns ON ns.named_step_uuid = s.named_step_uuid),
       edges AS (
         INSERT INTO tasker_workflow_step_edges (from_step_uuid, to_step_uuid)
         SELECT a.workflow_step_uuid, b.workflow_step_uuid
           FROM steps a JOIN tasker_named_steps na ON na.named_step_uuid = a.named_step_uuid
           JOIN steps b ON b.task_uuid = a.task_uuid
           JOIN tasker_named_steps nb ON nb.named_step_uuid = b.named_step_uuid
          WHERE substr(nb.name, 2)::int = substr(na.name, 2)::int + 1)
       INSERT INTO tasker_tasks_dlq (task_uuid, original_state, dlq_reason, dlq_timestamp, task_snapshot)
       SELECT task_uuid, 'steps_in_process', 'staleness_timeout', now() - interval '1 minute',
              jsonb_build_object('task_uuid', task_uuid)
         FROM tasks`,
      [Math.min(chunk, entries - start)],
    );
  }
  await pool.query('VACUUM ANALYZE');
  // Per entry on these small graphs, now and before (1,000 of them in one statement, median of 3).
  for (const [label, fn] of [
    ['now', 'dlq_enrichment_diagnosis'],
    ['before', 'test_diagnosis_reference'],
  ] as const) {
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const { ms } = await timed(() =>
        pool.query(
          `SELECT count(${fn}(d.task_uuid, now(), 20, 10, 1024))
             FROM (SELECT task_uuid FROM tasker_tasks_dlq ORDER BY dlq_entry_uuid LIMIT 1000) d`,
        ),
      );
      times.push(ms / 1000);
    }
    console.log(
      `  diagnosis of a 5-step task, ${label}: ${median(times).toFixed(2)} ms each (${times.map((t) => t.toFixed(2)).join(' / ')})`,
    );
  }
  const options = {
    ...enrichmentOptionsFromConfig(ConfigSchema.parse({})),
    max_batches: 1000, // drain: each run goes on until the backlog is empty
  };
  const runAll = async (runs: number) => {
    const now = await databaseNow(pool);
    const { ms, result } = await timed(() =>
      Promise.all(
        Array.from({ length: runs }, () =>
          enrichJob.run(
            { pool, now, logger: silentLogger(), signal: new AbortController().signal },
            { ...options, entry_uuids: [] },
          ),
        ),
      ),
    );
    const enriched = result.reduce((n, r) => n + r.enriched, 0);
    const { rows } = await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM tasker_tasks_dlq WHERE task_snapshot -> 'enrichment' ? 'enriched_at'`,
    );
    if (enriched !== entries || rows[0]!.n !== entries) {
      throw new Error(
        `expected ${entries} entries enriched once, the runs counted ${enriched}, the table ${rows[0]!.n}`,
      );
    }
    console.log(
      `  ${runs} run(s) at once: ${(ms / 1000).toFixed(1)} s, ${Math.round(entries / (ms / 1000))} entries/s ` +
        `(per run: ${result.map((r) => r.enriched).join(' / ')})`,
    );
  };
  await runAll(1);
  await pool.query(
    `UPDATE tasker_tasks_dlq SET task_snapshot = jsonb_build_object('task_uuid', task_uuid), enrichment_next_attempt_at = NULL`,
  );
  await pool.query('VACUUM ANALYZE tasker_tasks_dlq');
  await runAll(concurrency);
}
