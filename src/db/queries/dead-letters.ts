import type { Db } from '../pool.ts';

/**
 * Queries on the dead-letter queues of the jobs (`<job>.failed`, pg-boss's job table, schema
 * pgboss, 12.38.0 pinned). pg-boss puts there a copy of each run that exhausted its retries: the
 * same data, the failed run's id in source_id and its last output (the error) in source_output.
 * Nothing works these queues; a copy stays `created` until it is retried or pg-boss deletes it.
 * pg-boss's job table is indexed by (name, id) (its primary key) and by name and state.
 */

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

const COLUMNS = `id, name AS queue, source_id, data, source_output AS error, source_retry_count AS retry_count,
  created_on, state::text AS state`;

/** Dead-lettered runs still waiting (state created), newest first, at most limit. */
export async function listDeadLettered(db: Db, queue: string, limit: number): Promise<DeadLetteredJob[]> {
  const { rows } = await db.query<DeadLetteredJob>(
    `SELECT ${COLUMNS} FROM pgboss.job WHERE name = $1 AND state = 'created' ORDER BY created_on DESC LIMIT $2`,
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
    `SELECT ${COLUMNS} FROM pgboss.job WHERE name = $1 AND id = $2 FOR UPDATE`,
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
    `UPDATE pgboss.job SET state = 'completed', completed_on = pgboss.job_now(), output = $3::jsonb
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
       FROM pgboss.job
      WHERE name = ANY ($1::text[]) AND state IN ('created', 'retry', 'active', 'failed')
      GROUP BY name`,
    [queues],
  );
  const depths = new Map(rows.map((r) => [r.queue, r]));
  for (const q of queues) if (!depths.has(q)) depths.set(q, { queue: q, queued: 0, active: 0, failed: 0 });
  return depths;
}
