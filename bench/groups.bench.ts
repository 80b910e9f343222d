/**
 * Investigations grouped by cause (issue 27) at size: BENCH_GROUPS_PENDING (default 1,000,000)
 * pending entries in BENCH_GROUPS_COUNT (default 20) groups, sizes falling off as 1/rank (the
 * largest about 28 % of all), plus a tenth as many resolved ones, opened over the last two days.
 * The entries are inserted with their fingerprints, so the triggers keep the groups' counts as
 * they go in (timed per 100,000).
 *
 * Measures, each the median (and max) of 15 reads:
 *   - the reads of the groups page: listGroups (page 1 of 25; with reason and namespace; with
 *     overdue, which probes every candidate group) and ungroupedPending;
 *   - a group's page: findGroup and groupEntries, page 1 and page 100;
 *   - over HTTP, a real `web` process: the console's queue of groups (GET /) and GET
 *     /v1/dlq/groups, 30 requests one after another each;
 * and for comparison, once or thrice: the full count a page would need without the rollup
 * (GROUP BY over the pending entries) and the drift check (groupCountsDrift: every entry).
 * Then what the rollup costs the writers, on the same table: an UPDATE resolving 20,000 entries of
 * one group and an INSERT of 50,000 detection-like entries (no fingerprint), each with the
 * triggers on and off; and bulk resolve of a whole group of about 93,000 entries (dry run, then
 * resolved in one transaction). Target: the groups page under 50 ms.
 */
import { spawn } from 'node:child_process';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { JOBS } from '../jobs/index.ts';
import { ConfigSchema } from '../src/config/schema.ts';
import {
  findGroup,
  groupCountsDrift,
  groupEntries,
  listGroups,
  ungroupedPending,
} from '../src/db/queries/dlq-groups.ts';
import { installPgBoss } from '../src/install/pgboss.ts';
import { bulkResolve } from '../src/operations/investigations.ts';
import { createToken } from '../src/operations/tokens.ts';
import { projectRoot } from '../src/paths.ts';
import { silentLogger } from '../src/telemetry/logger.ts';
import { consoleSignIn } from '../test/web/web-process.ts';
import { type BenchServer, timed } from './db.ts';

const REASONS = [
  'staleness_timeout',
  'max_retries_exceeded',
  'worker_unavailable',
  'dependency_cycle_detected',
];

export default async function groupsBench(server: BenchServer): Promise<void> {
  const pending = Number(process.env.BENCH_GROUPS_PENDING ?? '1000000');
  const groups = Number(process.env.BENCH_GROUPS_COUNT ?? '20');
  const resolved = Math.round(pending / 10);
  console.log(`server: ${server.description}`);
  console.log(
    `load average at start: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const db = await server.createDatabase();
  const pool = db.pool;
  let web: ReturnType<typeof spawn> | undefined;
  try {
    await installPgBoss(ConfigSchema.parse({}), db.url, silentLogger(), JOBS);
    await pool.query(`INSERT INTO tasker_task_namespaces (name) VALUES ('shop'), ('billing')`);
    await pool.query(
      `INSERT INTO tasker_named_tasks (task_namespace_uuid, name, configuration)
       SELECT n.task_namespace_uuid, t.name, '{}' FROM tasker_task_namespaces n
        CROSS JOIN (VALUES ('order'), ('refund')) t(name)`,
    );
    // Group g: its weight 1/(g+1); entry i of the pending ones belongs to the group whose
    // cumulative share covers i / pending.
    await pool.query(
      `CREATE UNLOGGED TABLE bench_groups AS
       WITH w AS (SELECT g, 1.0 / (g + 1) AS weight FROM generate_series(0, $1 - 1) g)
       SELECT g, md5('bench group ' || g) AS fp,
              (ARRAY['shop', 'billing'])[1 + g % 2] AS ns, (ARRAY['order', 'refund'])[1 + (g / 2) % 2] AS task_name,
              ($2::text[])[1 + g % 4] AS reason, 'step_' || g AS step,
              sum(weight) OVER (ORDER BY g) / sum(weight) OVER () AS upto
         FROM w`,
      [groups, REASONS],
    );
    const loadChunk = async (from: number, to: number, status: 'pending' | 'resolved') =>
      pool.query(
        `WITH tasks AS (
           INSERT INTO tasker_tasks (named_task_uuid, identity_hash, priority, requested_at, created_at, updated_at)
           SELECT (SELECT named_task_uuid FROM tasker_named_tasks ORDER BY name LIMIT 1), md5($3 || i::text), 0, now(), now(), now()
             FROM generate_series($1::integer, $2::integer) i
           RETURNING task_uuid),
         numbered AS (SELECT task_uuid, row_number() OVER () + $1 - 1 AS i FROM tasks)
         INSERT INTO tasker_tasks_dlq (task_uuid, original_state, dlq_reason, dlq_timestamp, resolution_status,
                                       resolution_timestamp, resolved_by, task_snapshot, failure_fingerprint,
                                       created_at, updated_at)
         SELECT n.task_uuid, 'steps_in_process', g.reason::dlq_reason,
                now() - make_interval(secs => (n.i % 172800)::double precision),
                CASE WHEN $3 = 'pending' THEN 'pending' ELSE 'cancelled' END::dlq_resolution_status,
                CASE WHEN $3 = 'pending' THEN NULL ELSE now() - make_interval(secs => (n.i % 3600)::double precision) END,
                CASE WHEN $3 = 'pending' THEN NULL ELSE 'bench' END,
                jsonb_build_object(
                  'namespace', g.ns, 'task_name', g.task_name, 'current_state', 'steps_in_process',
                  'enrichment', jsonb_build_object('version', 1, 'enriched_at', now()),
                  'diagnosis', jsonb_build_object('summary', 'stuck at ' || g.step),
                  'failure_signature', jsonb_build_object(
                    'version', 1, 'fingerprint', g.fp,
                    'template', jsonb_build_object('namespace', g.ns, 'name', g.task_name, 'version', '0.1.0'),
                    'dlq_reason', g.reason, 'original_state', 'steps_in_process', 'graph', 'read',
                    'blocking', jsonb_build_array(jsonb_build_object('step', g.step, 'error', 'UpstreamError: answered <n>')),
                    'blocking_total', 1, 'summary', 'blocked at ' || g.step || ' (UpstreamError: answered <n>)')),
                g.fp, now(), now()
           FROM numbered n
           CROSS JOIN LATERAL (SELECT * FROM bench_groups b
                                WHERE b.upto >= ((n.i * 7919) % $4)::numeric / $4 ORDER BY b.g LIMIT 1) g`,
        [from, to, status, status === 'pending' ? pending : resolved],
      );
    const CHUNK = 100_000;
    const chunkMs: number[] = [];
    for (let from = 1; from <= pending; from += CHUNK) {
      const { ms } = await timed(() => loadChunk(from, Math.min(pending, from + CHUNK - 1), 'pending'));
      chunkMs.push(ms);
    }
    for (let from = 1; from <= resolved; from += CHUNK)
      await loadChunk(pending + from, pending + Math.min(resolved, from + CHUNK - 1), 'resolved');
    await pool.query('ANALYZE');
    const sizes = await pool.query<{ pending: number; resolved: number }>(
      `SELECT pending, resolved FROM tasker_dlq_groups ORDER BY pending DESC`,
    );
    console.log(
      `loaded ${pending} pending entries in ${sizes.rows.length} groups (largest ${sizes.rows[0]?.pending}, smallest ${sizes.rows.at(-1)?.pending}) and ${resolved} resolved; ` +
        `each 100,000 inserted with their groups kept by the triggers: median ${median(chunkMs).toFixed(0)} ms`,
    );

    const time = async (label: string, f: () => Promise<unknown>, runs = 15) => {
      const ms: number[] = [];
      for (let i = 0; i < runs; i++) ms.push((await timed(f)).ms);
      ms.sort((x, y) => x - y);
      console.log(`${label}: median ${median(ms).toFixed(1)} ms, max ${ms.at(-1)!.toFixed(1)} ms`);
      return median(ms);
    };
    const now = new Date();
    const page1 = await time('groups page 1 (25 groups), no filter', () =>
      listGroups(pool, {}, { limit: 25, offset: 0 }, now),
    );
    await time('groups, reason and namespace', () =>
      listGroups(
        pool,
        { reason: 'max_retries_exceeded', namespace: 'billing' },
        { limit: 25, offset: 0 },
        now,
      ),
    );
    await time('groups, overdue only (probes every group)', () =>
      listGroups(pool, { overdueOnly: true }, { limit: 25, offset: 0 }, now),
    );
    const ungrouped = await time('ungrouped pending count', () => ungroupedPending(pool, 10_000));
    const largest = (await listGroups(pool, {}, { limit: 1, offset: 0 }, now)).groups[0]!;
    await time('a group: findGroup', () => findGroup(pool, largest.fingerprint, now));
    await time("a group's entries, page 1", () =>
      groupEntries(pool, largest, { status: 'pending', limit: 25, offset: 0 }, now),
    );
    await time("a group's entries, page 100", () =>
      groupEntries(pool, largest, { status: 'pending', limit: 25, offset: 2475 }, now),
    );
    console.log(
      `the groups page's reads together (list + ungrouped): about ${(page1 + ungrouped).toFixed(1)} ms (target < 50 ms)`,
    );
    // The server's own time for the list (EXPLAIN ANALYZE of its first statement): what the
    // database does, apart from round trips and the machine's load.
    let explained = false;
    const explaining = {
      query: async (text: string, values?: unknown[]) => {
        if (!explained) {
          explained = true;
          const plan = await pool.query<{ 'QUERY PLAN': string }>(
            `EXPLAIN (ANALYZE, BUFFERS) ${text}`,
            values,
          );
          const lines = plan.rows.map((r) => r['QUERY PLAN']);
          console.log(
            `the list's statement on the server: ${lines.find((l) => l.startsWith('Execution Time'))}; ${lines.filter((l) => /Seq Scan on tasker_tasks_dlq/.test(l)).length} sequential scans of the entries`,
          );
        }
        return pool.query(text, values);
      },
    };
    await listGroups(explaining as never, {}, { limit: 25, offset: 0 }, now);

    // Over HTTP: a real web process.
    const { token } = await createToken(pool, {
      name: 'bench',
      permissions: ['dlq:read', 'dlq:update'],
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
    const http = async (label: string, path: string, headers: Record<string, string>) => {
      const get = async () => {
        const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers });
        if (res.status !== 200) throw new Error(`${path}: ${res.status}`);
        await res.text();
      };
      for (let i = 0; i < 3; i++) await get(); // warm: connections, plans
      const ms: number[] = [];
      for (let i = 0; i < 30; i++) ms.push((await timed(get)).ms);
      ms.sort((x, y) => x - y);
      console.log(
        `${label}: median ${median(ms).toFixed(1)} ms, p95 ${ms[Math.floor(ms.length * 0.95)]!.toFixed(1)} ms, max ${ms.at(-1)!.toFixed(1)} ms`,
      );
    };
    const { cookie } = await consoleSignIn(`http://127.0.0.1:${port}`, token);
    await http('HTTP GET / (the console opens on the groups)', '/', { cookie });
    await http('HTTP GET /v1/dlq/groups', '/v1/dlq/groups', { authorization: `Bearer ${token}` });
    await http(`HTTP GET /groups/{largest}`, `/groups/${largest.fingerprint}`, {
      cookie,
    });

    // Without the rollup: counting the pending entries per fingerprint.
    await time(
      'for comparison: a full count per fingerprint (GROUP BY over every pending entry)',
      () =>
        pool.query(
          `SELECT failure_fingerprint, count(*) FROM tasker_tasks_dlq WHERE resolution_status = 'pending' GROUP BY 1`,
        ),
      3,
    );
    const drift = await timed(() => groupCountsDrift(pool));
    console.log(
      `drift check (every entry counted, groups and hours): ${drift.ms.toFixed(0)} ms, ${drift.result.length} differences`,
    );

    // What the rollup costs the writers.
    const ids = async (fp: string, n: number, offset: number) =>
      (
        await pool.query<{ id: string }>(
          `SELECT dlq_entry_uuid AS id FROM tasker_tasks_dlq WHERE failure_fingerprint = $1 AND resolution_status = 'pending'
            ORDER BY dlq_timestamp LIMIT $2 OFFSET $3`,
          [fp, n, offset],
        )
      ).rows.map((r) => r.id);
    const resolveSql = `UPDATE tasker_tasks_dlq SET resolution_status = 'cancelled', resolution_timestamp = now(),
                               resolved_by = 'bench', resolution_notes = 'bench'
                         WHERE dlq_entry_uuid = ANY ($1::uuid[]) AND resolution_status = 'pending'`;
    const triggers = async (on: boolean) => {
      for (const t of ['inserts', 'updates', 'deletes'])
        await pool.query(
          `ALTER TABLE tasker_tasks_dlq ${on ? 'ENABLE' : 'DISABLE'} TRIGGER dlq_groups_follow_${t}`,
        );
    };
    const withOn = await ids(largest.fingerprint, 20_000, 0);
    const withOff = await ids(largest.fingerprint, 20_000, 20_000);
    await pool.query('CHECKPOINT');
    const upOn = await timed(() => pool.query(resolveSql, [withOn]));
    await triggers(false);
    await pool.query('CHECKPOINT');
    const upOff = await timed(() => pool.query(resolveSql, [withOff]));
    // Undone as it was done (triggers off), so the groups' counts stay true for what follows.
    await pool.query(
      `UPDATE tasker_tasks_dlq SET resolution_status = 'pending', resolution_timestamp = NULL, resolved_by = NULL,
                                   resolution_notes = NULL
        WHERE dlq_entry_uuid = ANY ($1::uuid[])`,
      [withOff],
    );
    await triggers(true);
    console.log(
      `UPDATE resolving 20,000 entries of one group: ${upOn.ms.toFixed(0)} ms with the triggers, ${upOff.ms.toFixed(0)} ms without`,
    );
    const detectLike = async (from: number) =>
      pool.query(
        `WITH tasks AS (
           INSERT INTO tasker_tasks (named_task_uuid, identity_hash, priority, requested_at, created_at, updated_at)
           SELECT (SELECT named_task_uuid FROM tasker_named_tasks ORDER BY name LIMIT 1), md5('d' || i::text), 0, now(), now(), now()
             FROM generate_series($1::integer, $1::integer + 49999) i
           RETURNING task_uuid)
         INSERT INTO tasker_tasks_dlq (task_uuid, original_state, dlq_reason, task_snapshot)
         SELECT task_uuid, 'steps_in_process', 'staleness_timeout',
                jsonb_build_object('namespace', 'shop', 'task_name', 'order', 'current_state', 'steps_in_process')
           FROM tasks`,
        [from],
      );
    await pool.query('CHECKPOINT');
    const insOn = await timed(() => detectLike(1));
    await triggers(false);
    await pool.query('CHECKPOINT');
    const insOff = await timed(() => detectLike(100_001));
    await triggers(true);
    console.log(
      `INSERT of 50,000 entries as detection opens them (tasks and entries, no fingerprint): ${insOn.ms.toFixed(0)} ms with the triggers, ${insOff.ms.toFixed(0)} ms without`,
    );

    // Bulk resolve of a whole group of under 100,000 entries.
    const target = (await listGroups(pool, {}, { limit: 25, offset: 0 }, now)).groups.find(
      (g) => g.pending <= 100_000,
    )!;
    const actor = { kind: 'cli' as const, name: 'bench' };
    const preview = await timed(() =>
      bulkResolve(pool, {
        filter: { group: target.fingerprint },
        status: 'cancelled',
        notes: 'bench',
        dryRun: true,
        previewLimit: 20,
        actor,
        now: new Date(),
      }),
    );
    const applied = await timed(() =>
      bulkResolve(pool, {
        filter: { group: target.fingerprint },
        status: 'cancelled',
        notes: 'bench',
        dryRun: false,
        previewLimit: 0,
        expectFingerprint: preview.result.fingerprint,
        actor,
        now: new Date(),
      }),
    );
    console.log(
      `bulk resolve of a group of ${preview.result.matched} entries: preview ${preview.ms.toFixed(0)} ms, resolved (one transaction, one audit row) in ${applied.ms.toFixed(0)} ms`,
    );
    const after = await timed(() => groupCountsDrift(pool));
    console.log(`drift after all of it: ${after.result.length} differences`);
    console.log(
      `load average at the end: ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
  } finally {
    web?.kill('SIGTERM');
    await db.drop();
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}
