-- 0050: a run can end `interrupted` as well as completed or failed.
--
-- Interrupted: the run did not fail for a reason of its own. Its worker was lost (SIGKILL, a lost
-- host, connections cut long enough to miss its heartbeat) and another worker's recovery pass
-- requeued it, or the worker was asked to stop (SIGTERM) and the run handed the rest of its work to
-- another run. Such runs are retried without using up worker.retry_limit; `status`, the logs and
-- the tasker_job_runs_total{outcome} metric tell them apart from failures.

ALTER TABLE tasker_job_runs DROP CONSTRAINT tasker_job_runs_outcome_check;
ALTER TABLE tasker_job_runs
  ADD CONSTRAINT tasker_job_runs_outcome_check CHECK (outcome IN ('completed', 'failed', 'interrupted'));
-- Unfinished runs, for the recovery pass that settles the history of runs whose worker was lost.
CREATE INDEX idx_job_runs_unfinished ON tasker_job_runs (pgboss_job_id) WHERE outcome IS NULL;
