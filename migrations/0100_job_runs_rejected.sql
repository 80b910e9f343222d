-- 0100: a run can end `rejected`: its request or options failed validation (a ZodError) before it
-- started. Such runs are observed like any other (log line, this row, tasker_job_runs_total with
-- outcome="rejected"), so a bad ad-hoc request or configuration is seen, not silently retried.

ALTER TABLE tasker_job_runs DROP CONSTRAINT tasker_job_runs_outcome_check;
ALTER TABLE tasker_job_runs
  ADD CONSTRAINT tasker_job_runs_outcome_check
  CHECK (outcome IN ('completed', 'failed', 'interrupted', 'rejected'));
-- The last completed run of each job, read by each worker at start for
-- tasker_job_last_success_timestamp_seconds: one index entry per job.
CREATE INDEX idx_job_runs_job_completed ON tasker_job_runs (job_name, started_at DESC) WHERE outcome = 'completed';
