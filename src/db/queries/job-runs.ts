import type { Db } from '../pool.ts';

/** Queries on tasker_job_runs (migrations/0020_job_runs.sql). */

export interface RunStartRow {
  run_id: string;
  job_name: string;
  trigger: string;
  pgboss_job_id: string | null;
  worker: string;
  started_at: Date;
  options: unknown;
}

export async function insertRun(db: Db, r: RunStartRow): Promise<void> {
  await db.query(
    `INSERT INTO tasker_job_runs (run_id, job_name, trigger, pgboss_job_id, worker, started_at, options)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [r.run_id, r.job_name, r.trigger, r.pgboss_job_id, r.worker, r.started_at, JSON.stringify(r.options)],
  );
}

export interface RunEndRow {
  run_id: string;
  finished_at: Date;
  outcome: 'completed' | 'failed';
  duration_ms: number;
  counts: unknown;
  error: string | null;
}

export async function finishRun(db: Db, r: RunEndRow): Promise<void> {
  await db.query(
    `UPDATE tasker_job_runs SET finished_at = $2, outcome = $3, duration_ms = $4, counts = $5, error = $6
      WHERE run_id = $1`,
    [
      r.run_id,
      r.finished_at,
      r.outcome,
      r.duration_ms,
      r.counts === undefined ? null : JSON.stringify(r.counts),
      r.error,
    ],
  );
}

/** Deletes up to `limit` runs of a job older than `before` (idx_job_runs_job_started). */
export async function pruneRuns(db: Db, jobName: string, before: Date, limit = 500): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM tasker_job_runs WHERE run_id IN (
       SELECT run_id FROM tasker_job_runs WHERE job_name = $1 AND started_at < $2 ORDER BY started_at LIMIT $3)`,
    [jobName, before, limit],
  );
  return rowCount ?? 0;
}

export interface RunRow extends RunStartRow, Partial<Omit<RunEndRow, 'run_id'>> {}

/** The most recent runs of a job, newest first (idx_job_runs_job_started). */
export async function recentRuns(db: Db, jobName: string, limit: number): Promise<RunRow[]> {
  const { rows } = await db.query<RunRow>(
    `SELECT run_id, job_name, trigger, pgboss_job_id, worker, started_at, finished_at, outcome, duration_ms, counts, error, options
       FROM tasker_job_runs WHERE job_name = $1 ORDER BY started_at DESC LIMIT $2`,
    [jobName, limit],
  );
  return rows;
}
