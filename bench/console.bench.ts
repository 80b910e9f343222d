/**
 * The console's queue reads (src/db/queries/dlq-console.ts) with BENCH_CONSOLE_ENTRIES (default
 * 100,000) DLQ entries, about half pending, spread over four reasons, four namespaces and ten days:
 * page 1 and page 100 (25 rows) without a filter, page 1 with a namespace and a reason, and the
 * filter's choices. Each figure is the median (and max) of 7 reads. Target: page 1 under 50 ms.
 */
import { consoleQueuePage, queueFilterChoices } from '../src/db/queries/dlq-console.ts';
import type { BenchServer } from './db.ts';

export default async function consoleBench(server: BenchServer): Promise<void> {
  const n = Number(process.env.BENCH_CONSOLE_ENTRIES ?? '100000');
  console.log(`server: ${server.description}`);
  const db = await server.createDatabase();
  const pool = db.pool;
  try {
    await pool.query(`INSERT INTO tasker_task_namespaces (name) VALUES ('ns0'), ('ns1'), ('ns2'), ('ns3')`);
    await pool.query(`INSERT INTO tasker_named_tasks (task_namespace_uuid, name, configuration)
                      SELECT task_namespace_uuid, 't', '{}' FROM tasker_task_namespaces`);
    await pool.query(
      `INSERT INTO tasker_tasks (named_task_uuid, identity_hash, priority, requested_at, created_at, updated_at)
       SELECT (SELECT named_task_uuid FROM tasker_named_tasks LIMIT 1), md5(i::text), 0, now(), now(), now()
         FROM generate_series(1, $1) i`,
      [n],
    );
    await pool.query(
      `INSERT INTO tasker_tasks_dlq (task_uuid, original_state, dlq_reason, dlq_timestamp, resolution_status, task_snapshot,
                                     created_at, updated_at, resolution_timestamp, resolved_by)
       SELECT task_uuid, 'steps_in_process',
              (ARRAY['staleness_timeout','max_retries_exceeded','worker_unavailable','dependency_cycle_detected'])[1 + (row_number() OVER () % 4)]::dlq_reason,
              now() - make_interval(mins => (random() * 14400)::int),
              CASE WHEN r < 0.5 THEN 'pending' ELSE 'manually_resolved' END::dlq_resolution_status,
              jsonb_build_object('namespace', 'ns' || (random() * 3)::int, 'task_name', 't'), now(), now(),
              CASE WHEN r < 0.5 THEN NULL ELSE now() END, CASE WHEN r < 0.5 THEN NULL ELSE 'bench' END
         FROM (SELECT task_uuid, random() AS r FROM tasker_tasks) t`,
    );
    await pool.query('ANALYZE');
    const { rows } = await pool.query(
      `SELECT count(*) FILTER (WHERE resolution_status = 'pending') AS pending, count(*) AS total FROM tasker_tasks_dlq`,
    );
    console.log(`entries: ${rows[0].total}, pending: ${rows[0].pending}`);
    const time = async (label: string, f: () => Promise<unknown>) => {
      const ms: number[] = [];
      for (let i = 0; i < 7; i++) {
        const t = performance.now();
        await f();
        ms.push(performance.now() - t);
      }
      ms.sort((x, y) => x - y);
      console.log(`${label}: median ${ms[3]!.toFixed(1)} ms, max ${ms[6]!.toFixed(1)} ms`);
    };
    const now = new Date();
    await time('queue page 1, no filter', () => consoleQueuePage(pool, {}, { limit: 25, offset: 0 }, now));
    await time('queue page 1, namespace and reason', () =>
      consoleQueuePage(
        pool,
        { namespace: 'ns1', reason: 'max_retries_exceeded' },
        { limit: 25, offset: 0 },
        now,
      ),
    );
    await time('queue page 100, no filter', () =>
      consoleQueuePage(pool, {}, { limit: 25, offset: 2475 }, now),
    );
    await time('filter choices', () => queueFilterChoices(pool, 200));
  } finally {
    await db.drop();
  }
}
