import type { Db } from '../pool.ts';
import type { RunRow } from './job-runs.ts';

/** The history rows (tasker_job_runs) of one pg-boss job, oldest first (idx_job_runs_pgboss_job). */
export async function runsOfBossJob(db: Db, pgbossJobId: string, limit = 20): Promise<RunRow[]> {
  const { rows } = await db.query<RunRow>(
    `SELECT run_id, job_name, trigger, pgboss_job_id, worker, started_at, finished_at, outcome, duration_ms, counts, error, options
       FROM tasker_job_runs WHERE pgboss_job_id = $1 ORDER BY started_at LIMIT $2`,
    [pgbossJobId, limit],
  );
  return rows;
}

/**
 * The history rows of several pg-boss jobs (the links of one run), oldest first, at most `limit`
 * (idx_job_runs_pgboss_job, one probe per id).
 */
export async function runsOfBossJobs(
  db: Db,
  pgbossJobIds: readonly string[],
  limit: number,
): Promise<RunRow[]> {
  const { rows } = await db.query<RunRow>(
    `SELECT run_id, job_name, trigger, pgboss_job_id, worker, started_at, finished_at, outcome, duration_ms, counts, error, options
       FROM tasker_job_runs WHERE pgboss_job_id = ANY ($1::uuid[]) ORDER BY started_at LIMIT $2`,
    [pgbossJobIds, limit],
  );
  return rows;
}
