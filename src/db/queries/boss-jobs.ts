import type pg from 'pg';
import type { Db } from '../pool.ts';
import { withTransaction } from '../pool.ts';

/**
 * Everything this system reads or writes in pg-boss's own tables (schema `pgboss`), in one module,
 * for what pg-boss's API does not do: fence a batch's commit to the attempt that holds its run,
 * find and requeue runs whose worker was lost without losing them to a queue-policy conflict, and
 * read and settle dead-lettered runs and queue depths in our transactions. Every other module goes
 * through pg-boss's API or through here.
 *
 * Written for pg-boss 12.38.0, schema version PGBOSS_SCHEMA_VERSION: the job table's columns
 * (state, retry_count, retry_limit, heartbeat_on, heartbeat_seconds, started_on, start_after,
 * completed_on, singleton_key, data, output, source_*), its `stately` policy (one job per key in each
 * of created, retry and active), the attempt fence (a settle or heartbeat names id:retry_count, and
 * a fetch of a job that was started before increments retry_count) and job_now(). A worker checks
 * the version at start (src/worker/process.ts) and turns recovery off, loudly, on any other.
 *
 * pg-boss fails a job by deleting it and re-inserting it as `retry` with ON CONFLICT DO NOTHING
 * (plans.js failJobsBody); when that conflicts (another run of the key already waits in `retry`)
 * the job goes to `failed` and its dead-letter queue at once, whatever its retry count. requeueRun
 * instead moves the run to a free slot (retry, else created), or merges it into an identical
 * request already waiting.
 */

export const SCHEMA = 'pgboss';

/** The pg-boss schema version these queries were written and tested against (pg-boss 12.38.0). */
export const PGBOSS_SCHEMA_VERSION = 46;

/** One attempt at a run: the pg-boss job and its retry_count when this worker fetched it. */
export interface RunAttempt {
  name: string;
  id: string;
  retryCount: number;
}

/**
 * Inside a batch's transaction, as its last statement before COMMIT: whether these attempts (a
 * run's requests: one, or several for a batched job) still hold their run (each job active, at its
 * retry_count). The job rows are locked FOR SHARE until the commit, so nobody can requeue, fail,
 * expire or settle the run between this check and the batch's commit: the batch commits only while
 * its attempt holds the run. The transaction also names its attempts in `tasker.run_attempt`
 * (id:retry_count, comma-separated), for triggers and for whoever inspects it. Reads the jobs by
 * their primary key (name, id).
 */
export async function attemptsHoldRun(client: Db, attempts: readonly RunAttempt[]): Promise<boolean> {
  const label = attempts.map((a) => `${a.id}:${a.retryCount}`).join(',');
  const { rows } = await client.query(
    `SELECT set_config('tasker.run_attempt', $4, true) FROM ${SCHEMA}.job j
      WHERE (j.name, j.id, j.retry_count) IN (SELECT * FROM unnest($1::text[], $2::uuid[], $3::int[]))
        AND j.state = 'active'
      FOR SHARE OF j`,
    [attempts.map((a) => a.name), attempts.map((a) => a.id), attempts.map((a) => a.retryCount), label],
  );
  return rows.length === attempts.length;
}

export interface ActiveRun {
  id: string;
  name: string;
  singleton_key: string | null;
  retry_count: number;
  retry_limit: number;
  /** The job's own threshold: half of the heartbeat_seconds it was queued with (pg-boss's backstop). */
  lost_after_seconds: number;
  data: Record<string, unknown> | null;
}

/**
 * Active jobs of these queues whose last heartbeat is older than half their own heartbeat_seconds
 * (pg-boss's clock). The threshold is the job row's, set by `migrate` from worker.heartbeat_seconds
 * (src/install/pgboss.ts: the row holds twice it, pg-boss's own backstop), never the reading
 * worker's configuration, so workers with different settings side by side judge a run alike. A job
 * without a heartbeat setting is never judged lost here (pg-boss's expiry covers it).
 */
export async function findLostRuns(db: Db, queues: readonly string[]): Promise<ActiveRun[]> {
  const { rows } = await db.query<ActiveRun>(
    `SELECT id, name, singleton_key, retry_count, retry_limit, heartbeat_seconds / 2.0 AS lost_after_seconds, data
       FROM ${SCHEMA}.job
      WHERE name = ANY($1::text[]) AND state = 'active' AND heartbeat_seconds IS NOT NULL
        AND heartbeat_on < ${SCHEMA}.job_now() - heartbeat_seconds / 2.0 * interval '1 second'
      ORDER BY started_on`,
    [queues],
  );
  return rows;
}

export interface RequeueRequest extends RunAttempt {
  /** When it may run again. */
  delaySeconds: number;
  /** Raise retry_limit by one: the attempt does not count against the run's retries (an interruption). */
  extendLimit: boolean;
  /** The job's new data (the run request, with its interruption count). */
  data: Record<string, unknown>;
  /** Stored as the job's output, like pg-boss stores a failure's. */
  output: Record<string, unknown>;
  /**
   * Recovery of a lost run: act only if its heartbeat is still this old, re-checked under the
   * row's lock (a live worker's heartbeat since the look means it is not lost).
   */
  onlyIfHeartbeatOlderThanSeconds?: number;
  /** Only act when the retry slot is taken (else pg-boss's own fail does the right thing). */
  onlyIfRetryTaken?: boolean;
  /** lock_timeout of the transaction, in milliseconds (its statement_timeout is twice it). */
  timeoutMs: number;
}

export type RequeueOutcome =
  | { placed: 'retry' | 'created' }
  /** An identical request already waits: this run is cancelled as merged into it, which starts at once. */
  | { placed: 'merged'; into: string }
  /** A scheduled tick waited in `created`: it is cancelled (the schedule fires again), this run takes its place. */
  | { placed: 'replaced'; replaced: string }
  /**
   * Both slots hold other requests with other options: this run is cancelled, its request named
   * in its output, and must be sent again (nothing is merged into a request that differs).
   */
  | { placed: 'dropped'; waiting: string[] }
  /** The attempt is no longer active (settled meanwhile, or requeued by another worker). */
  | { placed: 'gone' }
  /** onlyIfHeartbeatOlderThanSeconds: its worker is alive (a heartbeat since): nothing done. */
  | { placed: 'alive' }
  /** No retries left: nothing done (pg-boss fails it for good, to the dead-letter queue). */
  | { placed: 'exhausted' }
  /** onlyIfRetryTaken and the retry slot is free: nothing done. */
  | { placed: 'retry_free' };

/**
 * Moves an active run back to the queue: into `retry` when that slot of its key is free, else into
 * `created`; when both are taken, it is merged into the waiting request if that one carries the
 * same options and the same extras (tasker_run_request_extras: this run only, detection's resume), takes the place of a waiting scheduled tick, or else is dropped with its request
 * in its output. Serialized per queue by a transaction advisory lock, so two recovery passes never
 * race for one slot; bounded by lock_timeout and statement_timeout (timeoutMs), so a held row makes
 * it fail fast (the next pass tries again) instead of hanging. Reads the job by its primary key and
 * the waiting jobs of the key through pg-boss's (name, state) index.
 */
export async function requeueRun(pool: pg.Pool, r: RequeueRequest): Promise<RequeueOutcome> {
  return withTransaction(pool, async (client) => {
    await client.query(
      `SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)`,
      [`${r.timeoutMs}ms`, `${2 * r.timeoutMs}ms`],
    );
    await client.query(
      `SELECT pg_advisory_xact_lock(hashtextextended('tasker-lifecycle requeue ' || $1, 0))`,
      [r.name],
    );
    const { rows: target } = await client.query<{
      singleton_key: string | null;
      retries_left: boolean;
      stale: boolean;
    }>(
      `SELECT singleton_key, retry_count < retry_limit + $4 AS retries_left,
                $5::numeric IS NULL OR heartbeat_on < ${SCHEMA}.job_now() - $5::numeric * interval '1 second' AS stale
           FROM ${SCHEMA}.job
          WHERE name = $1 AND id = $2 AND state = 'active' AND retry_count = $3 FOR UPDATE`,
      [r.name, r.id, r.retryCount, r.extendLimit ? 1 : 0, r.onlyIfHeartbeatOlderThanSeconds ?? null],
    );
    if (target.length === 0) return { placed: 'gone' } as const;
    if (!target[0]!.stale) return { placed: 'alive' } as const;
    if (!target[0]!.retries_left) return { placed: 'exhausted' } as const;
    const { rows: waiting } = await client.query<{
      id: string;
      state: 'created' | 'retry';
      same_options: boolean;
      scheduled_tick: boolean;
    }>(
      `SELECT id, state,
                coalesce(data -> 'options', '{}'::jsonb) = coalesce($3::jsonb -> 'options', '{}'::jsonb)
                AND coalesce((SELECT x.extras FROM tasker_run_request_extras x WHERE x.pgboss_job_id = j.id), '{}'::jsonb)
                  = coalesce((SELECT x.extras FROM tasker_run_request_extras x WHERE x.pgboss_job_id = $4::uuid), '{}'::jsonb)
                AS same_options,
                data ->> 'trigger' = 'schedule' AND coalesce(data -> 'options', '{}'::jsonb) = '{}'::jsonb AS scheduled_tick
           FROM ${SCHEMA}.job j
          WHERE name = $1 AND state IN ('created', 'retry') AND COALESCE(singleton_key, '') = COALESCE($2, '')
          ORDER BY created_on FOR UPDATE OF j`,
      [r.name, target[0]!.singleton_key, JSON.stringify(r.data), r.id],
    );
    const taken = new Set(waiting.map((w) => w.state));
    if (r.onlyIfRetryTaken && !taken.has('retry')) return { placed: 'retry_free' } as const;
    const moveTo = async (state: 'retry' | 'created') =>
      client.query(
        `UPDATE ${SCHEMA}.job
              SET state = $3::${SCHEMA}.job_state,
                  start_after = ${SCHEMA}.job_now() + $4 * interval '1 second',
                  heartbeat_on = NULL,
                  retry_limit = retry_limit + $5,
                  data = $6::jsonb,
                  output = $7::jsonb
            WHERE name = $1 AND id = $2`,
        [
          r.name,
          r.id,
          state,
          r.delaySeconds,
          r.extendLimit ? 1 : 0,
          JSON.stringify(r.data),
          JSON.stringify(r.output),
        ],
      );
    const cancel = async (id: string, output: Record<string, unknown>) =>
      client.query(
        `UPDATE ${SCHEMA}.job
              SET state = 'cancelled', completed_on = ${SCHEMA}.job_now(), heartbeat_on = NULL, output = $3::jsonb
            WHERE name = $1 AND id = $2`,
        [r.name, id, JSON.stringify(output)],
      );
    if (!taken.has('retry') || !taken.has('created')) {
      const state = taken.has('retry') ? 'created' : 'retry';
      await moveTo(state);
      return { placed: state } as const;
    }
    const created = waiting.find((w) => w.state === 'created')!;
    if (created.same_options) {
      await cancel(r.id, { ...r.output, merged_into: created.id });
      await client.query(
        `UPDATE ${SCHEMA}.job SET start_after = LEAST(start_after, ${SCHEMA}.job_now()) WHERE name = $1 AND id = $2`,
        [r.name, created.id],
      );
      return { placed: 'merged', into: created.id } as const;
    }
    if (created.scheduled_tick) {
      await cancel(created.id, {
        superseded_by: r.id,
        message: 'a scheduled tick, replaced by an interrupted run',
      });
      await moveTo('created');
      return { placed: 'replaced', replaced: created.id } as const;
    }
    await cancel(r.id, {
      ...r.output,
      dropped: true,
      message: `${r.output.message ?? 'interrupted'}; not requeued: runs ${waiting.map((w) => w.id).join(' and ')} with other options already wait (send it again)`,
      request: r.data,
    });
    return { placed: 'dropped', waiting: waiting.map((w) => w.id) } as const;
  });
}

/** The run of a queue waiting (created) with this key, if any: its id and its request. */
export async function waitingRun(
  db: Db,
  name: string,
  key: string,
): Promise<{ id: string; data: Record<string, unknown> | null } | null> {
  const { rows } = await db.query(
    `SELECT id, data FROM ${SCHEMA}.job WHERE name = $1 AND state = 'created' AND singleton_key = $2 ORDER BY created_on LIMIT 1`,
    [name, key],
  );
  return rows[0] ?? null;
}

/** A pg-boss job's state and output, or null when it no longer exists. */
export async function bossJobState(
  db: Db,
  name: string,
  id: string,
): Promise<{ state: string; output: Record<string, unknown> | null } | null> {
  const { rows } = await db.query(`SELECT state, output FROM ${SCHEMA}.job WHERE name = $1 AND id = $2`, [
    name,
    id,
  ]);
  return rows[0] ?? null;
}

/** Of these jobs, the ids still active (the others are settled, requeued or gone). Primary key. */
export async function activeJobIds(
  db: Db,
  jobs: readonly { name: string; id: string }[],
): Promise<Set<string>> {
  if (jobs.length === 0) return new Set();
  const { rows } = await db.query<{ id: string }>(
    `SELECT j.id FROM ${SCHEMA}.job j
       JOIN unnest($1::text[], $2::uuid[]) AS t(name, id) ON j.name = t.name AND j.id = t.id
      WHERE j.state = 'active'`,
    [jobs.map((j) => j.name), jobs.map((j) => j.id)],
  );
  return new Set(rows.map((r) => r.id));
}

// Dead-lettered runs -----------------------------------------------------------------------------
//
// pg-boss puts in a job's dead-letter queue (`<job>.failed`) a copy of each run that exhausted its
// retries: the same data, the failed run's id in source_id and its last output (the error) in
// source_output. Nothing works these queues; a copy stays `created` until it is retried or pg-boss
// deletes it. pg-boss's job table is indexed by (name, id) (its primary key) and by name and state.

export interface DeadLetteredJob {
  id: string;
  queue: string;
  /** The failed run in the job's own queue. */
  source_id: string | null;
  data: Record<string, unknown> | null;
  /** The failed run's last output: pg-boss stores the error there ({ message, stack, ... }). */
  error: unknown;
  retry_count: number | null;
  created_on: Date;
  state: string;
}

const DEAD_LETTER_COLUMNS = `id, name AS queue, source_id, data, source_output AS error, source_retry_count AS retry_count,
  created_on, state::text AS state`;

/** Dead-lettered runs still waiting (state created), newest first, at most limit. */
export async function listDeadLettered(db: Db, queue: string, limit: number): Promise<DeadLetteredJob[]> {
  const { rows } = await db.query<DeadLetteredJob>(
    `SELECT ${DEAD_LETTER_COLUMNS} FROM ${SCHEMA}.job WHERE name = $1 AND state = 'created' ORDER BY created_on DESC LIMIT $2`,
    [queue, limit],
  );
  return rows;
}

/** One dead-lettered run, locked for the caller's transaction (primary key). */
export async function lockDeadLettered(
  db: Db,
  queue: string,
  id: string,
): Promise<DeadLetteredJob | undefined> {
  const { rows } = await db.query<DeadLetteredJob>(
    `SELECT ${DEAD_LETTER_COLUMNS} FROM ${SCHEMA}.job WHERE name = $1 AND id = $2 FOR UPDATE`,
    [queue, id],
  );
  return rows[0];
}

/** Marks a dead-lettered run as retried: completed, with the new run's id as its output. */
export async function markDeadLetterRetried(
  db: Db,
  queue: string,
  id: string,
  output: Record<string, unknown>,
): Promise<void> {
  await db.query(
    `UPDATE ${SCHEMA}.job SET state = 'completed', completed_on = ${SCHEMA}.job_now(), output = $3::jsonb
      WHERE name = $1 AND id = $2`,
    [queue, id, JSON.stringify(output)],
  );
}

export interface QueueDepth {
  queue: string;
  /** Waiting to start (created or retry). */
  queued: number;
  active: number;
  /** Failed for good, kept until pg-boss deletes them. */
  failed: number;
}

/**
 * Jobs of each queue by state, counted now (pg-boss's getQueues reports counts its monitor cached,
 * up to a monitor interval old). Only the unsettled states and failed: job_common_i14 (name, state,
 * ...) WHERE state IN (created, retry, active, failed).
 */
export async function queueDepths(db: Db, queues: readonly string[]): Promise<Map<string, QueueDepth>> {
  const { rows } = await db.query<QueueDepth>(
    `SELECT name AS queue,
            count(*) FILTER (WHERE state IN ('created', 'retry')) AS queued,
            count(*) FILTER (WHERE state = 'active') AS active,
            count(*) FILTER (WHERE state = 'failed') AS failed
       FROM ${SCHEMA}.job
      WHERE name = ANY ($1::text[]) AND state IN ('created', 'retry', 'active', 'failed')
      GROUP BY name`,
    [queues],
  );
  const depths = new Map(rows.map((r) => [r.queue, r]));
  for (const q of queues) if (!depths.has(q)) depths.set(q, { queue: q, queued: 0, active: 0, failed: 0 });
  return depths;
}

/** pg-boss's installed schema version (pgboss.version), or null where pg-boss is not installed. */
export async function installedSchemaVersion(db: Db): Promise<number | null> {
  const { rows: present } = await db.query<{ present: boolean }>(
    `SELECT to_regclass('${SCHEMA}.version') IS NOT NULL AS present`,
  );
  if (!present[0]?.present) return null;
  const { rows } = await db.query<{ version: number }>(
    `SELECT version::int AS version FROM ${SCHEMA}.version LIMIT 1`,
  );
  return rows[0]?.version ?? null;
}

/** A pg-boss instance (a worker process) registered in pgboss.instance. */
export interface LiveInstance {
  host: string;
  pid: number;
  /** Its pg-boss package version. */
  version: string;
  application_name: string | null;
  started_on: Date;
  heartbeat_on: Date;
}

/**
 * The pg-boss instances alive now, as pg-boss judges them (getInstances' `live`): not stopped, and
 * a heartbeat within 3 of their intervals. Only workers register (src/worker/boss.ts). null where
 * pg-boss's schema has no instance registry to read.
 */
export async function liveInstances(db: Db): Promise<LiveInstance[] | null> {
  const { rows: present } = await db.query<{ present: boolean }>(
    `SELECT to_regclass('${SCHEMA}.instance') IS NOT NULL AS present`,
  );
  if (!present[0]?.present) return null;
  const { rows } = await db.query<LiveInstance>(
    `SELECT host, pid, version, application_name, started_on, heartbeat_on
       FROM ${SCHEMA}.instance
      WHERE stopped_on IS NULL AND heartbeat_on >= now() - heartbeat_seconds * 3 * interval '1 second'
      ORDER BY started_on`,
  );
  return rows;
}
