import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { migrationsDir } from '../../src/paths.ts';

/**
 * The workflow engine at work, for `migrate` beside it: a database whose engine tables came first
 * (0001's SQL run by hand, without this system's indexes), loaded with tasks, and a writer that
 * changes task states the way the engine does (transition_task_state_atomic, then the task row, in
 * one transaction; every tenth transaction a new task), in a connection of its own, timing each
 * transaction. A transaction that waits on a lock `migrate` holds or waits for takes that long.
 */

export const CORE_SQL = readFileSync(join(migrationsDir, '0001_core_tables.sql'), 'utf8');

/** 0001's tables, functions and indexes, less the indexes this system adds to the engine's tables. */
export const ENGINE_ONLY = `${CORE_SQL};
  DROP INDEX idx_task_transitions_in_flight; -- ours, not the engine's`;

const IN_FLIGHT = ['steps_in_process', 'waiting_for_dependencies', 'waiting_for_retry', 'evaluating_results'];

/**
 * `inFlight` tasks in flight (two transitions each: pending, then their state) and `finished`
 * complete ones, over 20 templates, inserted set-based in chunks; then VACUUM ANALYZE.
 */
export async function loadEngineTasks(db: pg.Pool, inFlight: number, finished: number): Promise<void> {
  await db.query(`INSERT INTO tasker_task_namespaces (name) VALUES ('engine')`);
  await db.query(`
    INSERT INTO tasker_named_tasks (task_namespace_uuid, name, configuration)
    SELECT task_namespace_uuid, 'template_' || g, '{}'::jsonb
      FROM tasker_task_namespaces, generate_series(1, 20) g`);
  const chunk = 100_000;
  for (const [count, done] of [
    [inFlight, false],
    [finished, true],
  ] as const) {
    for (let start = 0; start < count; start += chunk) {
      await db.query(
        `WITH templates AS (SELECT array_agg(named_task_uuid) AS ids FROM tasker_named_tasks),
         tasks AS (
           INSERT INTO tasker_tasks (task_uuid, named_task_uuid, identity_hash, complete, created_at, updated_at, requested_at)
           SELECT gen_random_uuid(), ids[1 + g % 20], md5(g::text || $3::boolean::text), $3::boolean,
                  now() - make_interval(secs => 600 + (g % 50000)), now(), now()
             FROM templates, generate_series($1::int, $1::int + $2::int - 1) g
           RETURNING task_uuid, created_at, (hashtext(task_uuid::text) & 2147483647) % 4 AS s)
         INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
         SELECT task_uuid, 'pending', NULL, 0, false, created_at, created_at FROM tasks
         UNION ALL
         SELECT task_uuid, CASE WHEN $3::boolean THEN 'complete' ELSE ($4::text[])[1 + s] END, 'pending', 1, true,
                created_at + interval '1 minute', created_at + interval '1 minute'
           FROM tasks`,
        [start, Math.min(chunk, count - start), done, IN_FLIGHT],
      );
    }
  }
  await db.query('VACUUM ANALYZE');
}

export interface WriterSample {
  /** performance.now() when the transaction began, and how long it took, in milliseconds. */
  at: number;
  ms: number;
}

export interface EngineWriter {
  /** Transactions so far. */
  samples(): readonly WriterSample[];
  /** Stops after the transaction in hand and closes the connection. */
  stop(): Promise<void>;
}

/**
 * Starts the writer: one transaction after another (no pause), each moving one task of a sample
 * of `tasks` in-flight tasks to another in-flight state and touching its task row; every tenth
 * also creates a task. Its connection is named `application_name`.
 */
export async function startEngineWriter(
  url: string,
  o: { tasks?: number; applicationName?: string } = {},
): Promise<EngineWriter> {
  const client = new pg.Client({
    connectionString: url,
    application_name: o.applicationName ?? 'engine-writer',
  });
  await client.connect();
  const { rows } = await client.query<{ task_uuid: string; to_state: string; named_task_uuid: string }>(
    `SELECT tr.task_uuid, tr.to_state, t.named_task_uuid
       FROM tasker_task_transitions tr JOIN tasker_tasks t USING (task_uuid)
      WHERE tr.most_recent AND tr.to_state = ANY ($1::text[])
      LIMIT $2`,
    [IN_FLIGHT, o.tasks ?? 5000],
  );
  if (rows.length === 0) throw new Error('the engine writer found no task in flight to move');
  const states = new Map(rows.map((r) => [r.task_uuid, r.to_state]));
  const uuids = [...states.keys()];
  const template = rows[0]!.named_task_uuid;
  const samples: WriterSample[] = [];
  let running = true;
  let n = 0;
  const loop = (async () => {
    while (running) {
      const task = uuids[n % uuids.length]!;
      const from = states.get(task)!;
      const to = IN_FLIGHT[(IN_FLIGHT.indexOf(from) + 1) % IN_FLIGHT.length]!;
      const at = performance.now();
      await client.query('BEGIN');
      const { rows: moved } = await client.query<{ ok: boolean }>(
        `SELECT transition_task_state_atomic($1, $2, $3, NULL, '{"by": "engine-writer"}') AS ok`,
        [task, from, to],
      );
      await client.query('UPDATE tasker_tasks SET updated_at = now() WHERE task_uuid = $1', [task]);
      if (n % 10 === 0) {
        await client.query(
          `WITH t AS (
             INSERT INTO tasker_tasks (named_task_uuid, identity_hash, created_at, updated_at, requested_at)
             VALUES ($1, md5(random()::text), now(), now(), now()) RETURNING task_uuid)
           INSERT INTO tasker_task_transitions (task_uuid, to_state, sort_key, most_recent)
           SELECT task_uuid, 'pending', 0, true FROM t`,
          [template],
        );
      }
      await client.query('COMMIT');
      samples.push({ at, ms: performance.now() - at });
      if (moved[0]!.ok) states.set(task, to);
      n++;
    }
  })();
  return {
    samples: () => samples,
    async stop() {
      running = false;
      await loop;
      await client.end();
    },
  };
}

/** The longest and the 99th percentile of the transactions that overlapped [from, to], and how many. */
export function waitsDuring(
  samples: readonly WriterSample[],
  from: number,
  to: number,
): { count: number; longestMs: number; p99Ms: number } {
  const during = samples.filter((s) => s.at + s.ms >= from && s.at <= to).map((s) => s.ms);
  if (during.length === 0) return { count: 0, longestMs: 0, p99Ms: 0 };
  const sorted = [...during].sort((a, b) => a - b);
  return {
    count: during.length,
    longestMs: sorted.at(-1)!,
    p99Ms: sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))]!,
  };
}

export interface LockWaitSample {
  at: number;
  /** pg_stat_activity.wait_event_type / wait_event of the writer ("Lock", "relation"; "IO", …). */
  waitEventType: string | null;
  waitEvent: string | null;
  /** Who it waited for (pg_blocking_pids): application_name and query of the first. */
  blocker: string | null;
}

export interface LockWaitSampler {
  stop(): Promise<readonly LockWaitSample[]>;
}

/**
 * Samples, every `everyMs` from a connection of its own, what the session named `applicationName`
 * is waiting for, and who holds it up: so a slow writer transaction can be told apart as a lock
 * wait (something it queued behind) or something else (the disk, the CPU).
 */
export async function startLockWaitSampler(
  url: string,
  applicationName: string,
  everyMs = 20,
): Promise<LockWaitSampler> {
  const client = new pg.Client({ connectionString: url, application_name: 'lock-wait-sampler' });
  await client.connect();
  const samples: LockWaitSample[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const at = performance.now();
      const { rows } = await client.query<{ t: string | null; e: string | null; blocker: string | null }>(
        `SELECT a.wait_event_type AS t, a.wait_event AS e,
                (SELECT b.application_name || ': ' || left(b.query, 120)
                   FROM pg_stat_activity b WHERE b.pid = (pg_blocking_pids(a.pid))[1]) AS blocker
           FROM pg_stat_activity a WHERE a.application_name = $1 AND a.state = 'active' LIMIT 1`,
        [applicationName],
      );
      samples.push({
        at,
        waitEventType: rows[0]?.t ?? null,
        waitEvent: rows[0]?.e ?? null,
        blocker: rows[0]?.blocker ?? null,
      });
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  })();
  let stopped: Promise<void> | undefined;
  return {
    async stop() {
      running = false;
      stopped ??= loop.then(() => client.end());
      await stopped;
      return samples;
    },
  };
}

/**
 * The longest stretch of consecutive samples in [from, to] with the session waiting on a lock (an
 * upper bound: from the sample before the stretch to the one after), and who it waited for.
 */
export function longestLockWait(
  samples: readonly LockWaitSample[],
  from: number,
  to: number,
): { ms: number; blocker: string | null } {
  let longest = { ms: 0, blocker: null as string | null };
  let start: number | null = null;
  let blocker: string | null = null;
  const within = samples.filter((s) => s.at >= from && s.at <= to);
  within.forEach((s, i) => {
    if (s.waitEventType === 'Lock') {
      if (start === null) {
        start = i > 0 ? within[i - 1]!.at : s.at;
        blocker = s.blocker;
      }
    } else if (start !== null) {
      if (s.at - start > longest.ms) longest = { ms: s.at - start, blocker };
      start = null;
    }
  });
  if (start !== null && to - start > longest.ms) longest = { ms: to - start, blocker };
  return longest;
}
