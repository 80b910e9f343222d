/**
 * The HTTP API under load (issue 11): a real `web` process (one, with the shipped defaults:
 * database.pool_max 10) in front of 100,000 DLQ entries, driven by autocannon with 50 connections
 * for BENCH_API_SECONDS (default 10) per endpoint:
 *   GET /v1/dlq                       (newest first, default limit 50: idx_dlq_timestamp)
 *   GET /v1/dlq/investigation-queue   (pending, most urgent first, default limit 100)
 * Target: p99 under 50 ms. Prints requests/s, latency p50/p99/max, errors, and the machine's load
 * average before and after (the machine may be shared: the figures mean little without it).
 *
 * Shape: BENCH_API_ENTRIES (default 100,000) entries, each on its own task in `error`;
 * BENCH_API_PENDING_PERCENT (default 10) of them pending, the rest resolved (manually_resolved,
 * permanently_failed, cancelled), spread over the five reasons and the last 30 days.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { JOBS } from '../jobs/index.ts';
import { ConfigSchema } from '../src/config/schema.ts';
import { installPgBoss } from '../src/install/pgboss.ts';
import { createToken } from '../src/operations/tokens.ts';
import { projectRoot } from '../src/paths.ts';
import { silentLogger } from '../src/telemetry/logger.ts';
import { type BenchServer, timed } from './db.ts';

export default async function apiBench(server: BenchServer): Promise<void> {
  const entries = Number(process.env.BENCH_API_ENTRIES ?? '100000');
  const pendingPercent = Number(process.env.BENCH_API_PENDING_PERCENT ?? '10');
  const seconds = Number(process.env.BENCH_API_SECONDS ?? '10');
  const connections = Number(process.env.BENCH_API_CONNECTIONS ?? '50');
  console.log(`server: ${server.description}`);
  const db = await server.createDatabase();
  let web: ReturnType<typeof spawn> | undefined;
  try {
    await installPgBoss(ConfigSchema.parse({}), db.url, silentLogger(), JOBS);
    const load = await timed(() => loadEntries(db.pool, entries, pendingPercent));
    console.log(
      `loaded ${entries} DLQ entries (${pendingPercent} % pending) in ${(load.ms / 1000).toFixed(1)} s`,
    );
    const { token } = await createToken(db.pool, {
      name: 'bench',
      permissions: ['dlq:read'],
      actor: { kind: 'cli', name: 'bench' },
      now: new Date(),
    });

    web = spawn(process.execPath, [join(projectRoot, 'src', 'cli', 'main.ts'), 'web'], {
      cwd: projectRoot,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        DATABASE_URL: db.url,
        TASKER__web__port: '0',
        TASKER__logging__format: '"json"',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const port = await new Promise<number>((resolve, reject) => {
      let log = '';
      web!.stderr!.on('data', (d) => {
        log += d;
        const line = log.split('\n').find((l) => l.includes('web: listening on'));
        if (line) resolve(JSON.parse(line).port);
      });
      web!.on('exit', (code) => reject(new Error(`web exited (${code}): ${log}`)));
    });

    console.log(
      `${cpus().length} CPUs; load average before: ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
    for (const path of ['/v1/dlq', '/v1/dlq/investigation-queue']) {
      const url = `http://127.0.0.1:${port}${path}`;
      // Warm up (plans, connections), then measure.
      await autocannon({ url, connections: 10, duration: 2, headers: { authorization: `Bearer ${token}` } });
      const cpuBefore = cpuMs(web.pid!);
      const r = await autocannon({
        url,
        connections,
        duration: seconds,
        headers: { authorization: `Bearer ${token}` },
      });
      const cpuPerRequest = (cpuMs(web.pid!) - cpuBefore) / Math.max(1, r.requests.total);
      const target = r.latency.p99 < 50 ? 'under' : 'OVER';
      console.log(
        `GET ${path}: ${r.requests.average.toFixed(0)} req/s, latency p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms (${target} the 50 ms target), max ${r.latency.max} ms; ${r.non2xx} non-2xx, ${r.errors} errors, ${r.timeouts} timeouts (${connections} connections, ${seconds} s); web process CPU ${cpuPerRequest.toFixed(2)} ms per request`,
      );
    }
    console.log(
      `load average after: ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
  } finally {
    if (web && web.exitCode === null) {
      const exited = new Promise((resolve) => web!.on('exit', resolve));
      web.kill('SIGTERM');
      await exited;
    }
    await db.drop();
  }
}

/** CPU time (user + system) a Linux process has used, in ms (/proc/<pid>/stat, 100 ticks a second). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

export async function loadEntries(pool: import('pg').Pool, n: number, pendingPercent: number): Promise<void> {
  await pool.query(`INSERT INTO tasker_task_namespaces (name) VALUES ('bench')`);
  await pool.query(`
    INSERT INTO tasker_named_tasks (task_namespace_uuid, name, configuration)
    SELECT task_namespace_uuid, 'template_' || g, '{}'::jsonb FROM tasker_task_namespaces, generate_series(1, 20) g`);
  const chunk = 50_000;
  for (let start = 0; start < n; start += chunk) {
    await pool.query(
      `WITH templates AS (SELECT array_agg(named_task_uuid) AS ids FROM tasker_named_tasks),
       tasks AS (
         INSERT INTO tasker_tasks (task_uuid, named_task_uuid, identity_hash, complete, created_at, updated_at, requested_at)
         SELECT gen_random_uuid(), ids[1 + g % 20], md5(g::text), false,
                now() - make_interval(mins => 60 + (g::bigint * 7919 % 43200)::int), now(), now()
           FROM templates, generate_series($1::int, $1::int + $2::int - 1) g
         RETURNING task_uuid, created_at, named_task_uuid),
       transitions AS (
         INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
         SELECT task_uuid, 'error', 'steps_in_process', 1, true, created_at + interval '30 minutes', created_at + interval '30 minutes'
           FROM tasks)
       INSERT INTO tasker_tasks_dlq (task_uuid, original_state, dlq_reason, dlq_timestamp, resolution_status,
                                     resolution_timestamp, resolved_by, resolution_notes, task_snapshot, metadata,
                                     created_at, updated_at)
       SELECT t.task_uuid, 'steps_in_process',
              (ARRAY['staleness_timeout', 'max_retries_exceeded', 'dependency_cycle_detected', 'worker_unavailable',
                     'manual_dlq'])[1 + (hashtext(t.task_uuid::text) & 2147483647) % 5]::dlq_reason,
              t.created_at + interval '30 minutes', s.status::dlq_resolution_status,
              CASE WHEN s.status = 'pending' THEN NULL ELSE t.created_at + interval '2 hours' END,
              CASE WHEN s.status = 'pending' THEN NULL ELSE 'bench' END,
              CASE WHEN s.status = 'pending' THEN NULL ELSE 'resolved by the benchmark' END,
              jsonb_build_object('namespace', 'bench', 'task_name', 'template', 'current_state', 'error'),
              jsonb_build_object('time_in_state_minutes', 45, 'detection_method', 'staleness'),
              t.created_at + interval '30 minutes', t.created_at + interval '30 minutes'
         FROM tasks t
        CROSS JOIN LATERAL (
          SELECT CASE WHEN (hashtext(t.task_uuid::text || 'p') & 2147483647) % 100 < $3::int THEN 'pending'
                      ELSE (ARRAY['manually_resolved', 'permanently_failed', 'cancelled'])[1 + (hashtext(t.task_uuid::text) & 2147483647) % 3]
                 END AS status) s`,
      [start, Math.min(chunk, n - start), pendingPercent],
    );
  }
  await pool.query('VACUUM ANALYZE');
}
