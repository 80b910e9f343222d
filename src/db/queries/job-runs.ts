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
  outcome: 'completed' | 'failed' | 'interrupted' | 'rejected';
  duration_ms: number | null;
  counts: unknown;
  error: string | null;
  /** Leave a row that already has an outcome alone. */
  onlyIfUnfinished?: boolean;
}

export async function finishRun(db: Db, r: RunEndRow): Promise<void> {
  await db.query(
    `UPDATE tasker_job_runs SET finished_at = $2, outcome = $3, duration_ms = $4, counts = $5, error = $6
      WHERE run_id = $1 AND (NOT $7 OR outcome IS NULL)`,
    [
      r.run_id,
      r.finished_at,
      r.outcome,
      r.duration_ms,
      r.counts === undefined ? null : JSON.stringify(r.counts),
      r.error,
      r.onlyIfUnfinished === true,
    ],
  );
}

/** The counts so far of a run still going (updated after each batch). */
export async function updateRunCounts(db: Db, runId: string, counts: unknown): Promise<void> {
  await db.query('UPDATE tasker_job_runs SET counts = $2 WHERE run_id = $1 AND outcome IS NULL', [
    runId,
    JSON.stringify(counts),
  ]);
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

/**
 * Unfinished runs (outcome NULL) of a pg-boss job: the history of an attempt whose worker was lost
 * (idx_job_runs_unfinished).
 */
export async function unfinishedRunsOf(db: Db, pgbossJobId: string): Promise<RunStartRow[]> {
  const { rows } = await db.query<RunStartRow>(
    `SELECT run_id, job_name, trigger, pgboss_job_id, worker, started_at, options
       FROM tasker_job_runs WHERE pgboss_job_id = $1 AND outcome IS NULL`,
    [pgbossJobId],
  );
  return rows;
}

/**
 * Unfinished runs that came through pg-boss and started more than graceSeconds ago, oldest first,
 * at most limit (idx_job_runs_unfinished): candidates whose end may never be written.
 */
export async function unfinishedBossRuns(
  db: Db,
  graceSeconds: number,
  limit = 100,
): Promise<{ run_id: string; job_name: string; pgboss_job_id: string }[]> {
  const { rows } = await db.query(
    `SELECT run_id, job_name, pgboss_job_id FROM tasker_job_runs
      WHERE outcome IS NULL AND pgboss_job_id IS NOT NULL AND started_at < now() - $1 * interval '1 second'
      ORDER BY started_at LIMIT $2`,
    [graceSeconds, limit],
  );
  return rows;
}

/**
 * Marks these unfinished runs interrupted (their pg-boss job is no longer active: their end was
 * never written, and nothing will write it now), each by one caller: the UPDATE claims them. Returns
 * those it marked. Primary key.
 */
export async function settleOrphanedRuns(
  db: Db,
  runIds: readonly string[],
  error: string,
): Promise<RunStartRow[]> {
  if (runIds.length === 0) return [];
  const { rows } = await db.query<RunStartRow>(
    `UPDATE tasker_job_runs SET outcome = 'interrupted', finished_at = now(), error = $2
      WHERE run_id = ANY($1::uuid[]) AND outcome IS NULL
      RETURNING run_id, job_name, trigger, pgboss_job_id, worker, started_at, options`,
    [runIds, error],
  );
  return rows;
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

/** When the last completed run of a job finished, or null (idx_job_runs_job_completed). */
export async function lastCompletedRun(db: Db, jobName: string): Promise<Date | null> {
  const { rows } = await db.query<{ finished_at: Date | null }>(
    `SELECT finished_at FROM tasker_job_runs WHERE job_name = $1 AND outcome = 'completed'
      ORDER BY started_at DESC LIMIT 1`,
    [jobName],
  );
  return rows[0]?.finished_at ?? null;
}

/**
 * What a job's runs did lately: the sum of one of their counts (e.g. "enriched") over the runs
 * started since `since`, finished or still going (a run's counts are written as its batches
 * commit). Reads idx_job_runs_job_started from `since` on, at most `limit` runs.
 */
export async function recentWork(
  db: Db,
  jobName: string,
  since: Date,
  countKey: string,
  limit = 10_000,
): Promise<{ runs: number; work: number }> {
  const { rows } = await db.query<{ runs: number; work: number }>(
    `SELECT count(*)::integer AS runs, coalesce(sum((r.counts ->> $3)::bigint), 0)::bigint AS work
       FROM (SELECT counts FROM tasker_job_runs
              WHERE job_name = $1 AND started_at >= $2
              ORDER BY started_at DESC LIMIT $4) r`,
    [jobName, since, countKey, limit],
  );
  return { runs: rows[0]!.runs, work: Number(rows[0]!.work) };
}
