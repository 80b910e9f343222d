-- 0020: run history of the maintenance jobs, for `status` and for people reading the database.
--
-- One row per run, written by the run observer (src/worker/observe.ts) whether the run came from a
-- schedule, an ad-hoc enqueue, an event (a new DLQ entry) or the CLI. pg-boss keeps its own job
-- rows (pgboss.job) with state and output; this table adds inline CLI runs and outlives pg-boss's
-- deletion of finished jobs. Kept for worker.run_history_days, pruned in bounded batches.

CREATE TABLE tasker_job_runs (
  run_id uuid PRIMARY KEY,
  job_name text NOT NULL,
  trigger text NOT NULL CHECK (trigger IN ('schedule', 'adhoc', 'event', 'cli')),
  pgboss_job_id uuid,
  worker text NOT NULL,
  started_at timestamptz NOT NULL,
  finished_at timestamptz,
  -- NULL while the run is going (or if its process died before it could say).
  outcome text CHECK (outcome IN ('completed', 'failed')),
  duration_ms integer,
  counts jsonb,
  error text,
  options jsonb
);
-- Last runs of a job (status) and pruning by age.
CREATE INDEX idx_job_runs_job_started ON tasker_job_runs (job_name, started_at DESC);
