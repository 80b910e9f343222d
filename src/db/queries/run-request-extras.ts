import type { Db } from '../pool.ts';

/**
 * tasker_run_request_extras (migration 0170): the parts of a run request that the previous
 * release's workers would refuse, kept beside the pg-boss job (keyed by its id) instead of in its
 * data. Reads by primary key; pruning by idx_run_request_extras_created_at.
 */

export interface RequestExtras {
  /** Options only this build's jobs know (detection's `resume`). */
  options?: Record<string, unknown>;
  /** The run stops at max_batches with work left instead of handing the rest on. */
  this_run_only?: boolean;
}

/** Records (or adds to) a request's extras; in the sending transaction when `db` is its client. */
export async function saveRequestExtras(
  db: Db,
  r: { pgbossJobId: string; jobName: string; extras: RequestExtras },
): Promise<void> {
  await db.query(
    `INSERT INTO tasker_run_request_extras (pgboss_job_id, job_name, extras) VALUES ($1, $2, $3::jsonb)
     ON CONFLICT (pgboss_job_id) DO UPDATE SET extras = EXCLUDED.extras`,
    [r.pgbossJobId, r.jobName, JSON.stringify(r.extras)],
  );
}

/** The extras of these pg-boss jobs (those that have some). */
export async function requestExtras(
  db: Db,
  pgbossJobIds: readonly string[],
): Promise<Map<string, RequestExtras>> {
  if (pgbossJobIds.length === 0) return new Map();
  const { rows } = await db.query<{ pgboss_job_id: string; extras: RequestExtras }>(
    'SELECT pgboss_job_id, extras FROM tasker_run_request_extras WHERE pgboss_job_id = ANY($1::uuid[])',
    [pgbossJobIds],
  );
  return new Map(rows.map((r) => [r.pgboss_job_id, r.extras]));
}

/** Deletes a request's extras (its send was refused, so no job has that id). */
export async function deleteRequestExtras(db: Db, pgbossJobId: string): Promise<void> {
  await db.query('DELETE FROM tasker_run_request_extras WHERE pgboss_job_id = $1', [pgbossJobId]);
}

/** Deletes up to `limit` extras recorded before `before`; returns how many. */
export async function pruneRequestExtras(db: Db, before: Date, limit = 500): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM tasker_run_request_extras WHERE pgboss_job_id IN (
       SELECT pgboss_job_id FROM tasker_run_request_extras WHERE created_at < $1 ORDER BY created_at LIMIT $2)`,
    [before, limit],
  );
  return rowCount ?? 0;
}
