import type pg from 'pg';
import type { Db } from '../pool.ts';

/**
 * Queries on pg-boss's job table (schema `pgboss`, pg-boss 12.38.0, pinned) for what pg-boss does
 * not do for interrupted runs: requeue them without losing them to a queue-policy conflict.
 *
 * pg-boss fails a job by deleting it and re-inserting it as `retry` with ON CONFLICT DO NOTHING
 * (plans.js failJobsBody); when that conflicts (a `stately` queue allows one job per key in each of
 * created, retry and active, and another run already waits in `retry`), the job goes to `failed` and
 * to its dead-letter queue at once, whatever its retry count. requeueRun instead moves the run to a
 * free slot (retry, else created), or merges it into the run already waiting (which does the same
 * work): a run is never lost to a conflict. The moves keep pg-boss's own bookkeeping: the next fetch
 * of a requeued job increments retry_count (started_on is kept), so a late settle from the lost
 * attempt is refused by pg-boss's attempt fence (state = active and id:retry_count).
 */

const SCHEMA = 'pgboss';

export interface ActiveRun {
  id: string;
  name: string;
  singleton_key: string | null;
  retry_count: number;
  retry_limit: number;
  data: Record<string, unknown> | null;
}

/** Active jobs of these queues whose last heartbeat is older than lostAfterSeconds (pg-boss's clock). */
export async function findLostRuns(
  db: Db,
  queues: readonly string[],
  lostAfterSeconds: number,
): Promise<ActiveRun[]> {
  const { rows } = await db.query<ActiveRun>(
    `SELECT id, name, singleton_key, retry_count, retry_limit, data FROM ${SCHEMA}.job
      WHERE name = ANY($1::text[]) AND state = 'active'
        AND heartbeat_on < ${SCHEMA}.job_now() - $2 * interval '1 second'
      ORDER BY started_on`,
    [queues, lostAfterSeconds],
  );
  return rows;
}

/** Whether another job of the queue with this key waits in `retry` (the slot a failure would need). */
export async function retryWaiting(
  db: Db,
  name: string,
  key: string | null,
  exceptId: string,
): Promise<boolean> {
  const { rows } = await db.query(
    `SELECT 1 FROM ${SCHEMA}.job
      WHERE name = $1 AND state = 'retry' AND COALESCE(singleton_key, '') = COALESCE($2, '') AND id <> $3
      LIMIT 1`,
    [name, key, exceptId],
  );
  return rows.length > 0;
}

export interface RequeueRequest {
  name: string;
  id: string;
  /** The attempt being requeued (pg-boss's retry_count when it was fetched); another attempt is left alone. */
  retryCount: number;
  /** When it may run again. */
  delaySeconds: number;
  /** Raise retry_limit by one: the attempt does not count against the run's retries (an interruption). */
  extendLimit: boolean;
  /** The job's new data (the run request, with its interruption count). */
  data: Record<string, unknown>;
  /** Stored as the job's output, like pg-boss stores a failure's. */
  output: Record<string, unknown>;
  /** Only act when the retry slot is taken (else pg-boss's own fail does the right thing). */
  onlyIfRetryTaken?: boolean;
}

export type RequeueOutcome =
  | { placed: 'retry' | 'created' }
  | { placed: 'merged'; into: string }
  /** The attempt is no longer active (settled meanwhile, or requeued by another worker). */
  | { placed: 'gone' }
  /** No retries left: nothing done (pg-boss fails it for good, to the dead-letter queue). */
  | { placed: 'exhausted' }
  /** onlyIfRetryTaken and the retry slot is free: nothing done. */
  | { placed: 'retry_free' };

/**
 * Moves an active run back to the queue: into `retry` when that slot of its key is free, else into
 * `created`, else (both taken) it is cancelled as merged into the waiting run, which is started at
 * once. Serialized per queue by a transaction advisory lock, so two recovery passes never race for
 * one slot.
 */
export async function requeueRun(pool: pg.Pool, r: RequeueRequest): Promise<RequeueOutcome> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(
      `SELECT pg_advisory_xact_lock(hashtextextended('tasker-lifecycle requeue ' || $1, 0))`,
      [r.name],
    );
    const { rows: target } = await client.query<{ singleton_key: string | null; retries_left: boolean }>(
      `SELECT singleton_key, retry_count < retry_limit + $4 AS retries_left FROM ${SCHEMA}.job
        WHERE name = $1 AND id = $2 AND state = 'active' AND retry_count = $3 FOR UPDATE`,
      [r.name, r.id, r.retryCount, r.extendLimit ? 1 : 0],
    );
    const done = async (outcome: RequeueOutcome) => {
      await client.query('ROLLBACK');
      return outcome;
    };
    if (target.length === 0) return done({ placed: 'gone' });
    if (!target[0]!.retries_left) return done({ placed: 'exhausted' });
    const { rows: waiting } = await client.query<{ id: string; state: 'created' | 'retry' }>(
      `SELECT id, state FROM ${SCHEMA}.job
        WHERE name = $1 AND state IN ('created', 'retry') AND COALESCE(singleton_key, '') = COALESCE($2, '')
        ORDER BY created_on FOR UPDATE`,
      [r.name, target[0]!.singleton_key],
    );
    const taken = new Set(waiting.map((w) => w.state));
    if (r.onlyIfRetryTaken && !taken.has('retry')) return done({ placed: 'retry_free' });
    let outcome: RequeueOutcome;
    if (!taken.has('retry') || !taken.has('created')) {
      const state = taken.has('retry') ? 'created' : 'retry';
      await client.query(
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
      outcome = { placed: state };
    } else {
      const into = waiting.find((w) => w.state === 'created')!.id;
      await client.query(
        `UPDATE ${SCHEMA}.job
            SET state = 'cancelled', completed_on = ${SCHEMA}.job_now(), heartbeat_on = NULL, output = $3::jsonb
          WHERE name = $1 AND id = $2`,
        [r.name, r.id, JSON.stringify({ ...r.output, merged_into: into })],
      );
      await client.query(
        `UPDATE ${SCHEMA}.job SET start_after = LEAST(start_after, ${SCHEMA}.job_now()) WHERE name = $1 AND id = $2`,
        [r.name, into],
      );
      outcome = { placed: 'merged', into };
    }
    await client.query('COMMIT');
    return outcome;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined); // the original error is the one worth reporting
    throw err;
  } finally {
    client.release();
  }
}

/** The id of the run of a queue waiting (created) with this key, if any. */
export async function waitingRun(db: Db, name: string, key: string): Promise<string | null> {
  const { rows } = await db.query(
    `SELECT id FROM ${SCHEMA}.job WHERE name = $1 AND state = 'created' AND singleton_key = $2 ORDER BY created_on LIMIT 1`,
    [name, key],
  );
  return rows[0]?.id ?? null;
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
