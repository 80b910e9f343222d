-- 0170: what a run request carries beside its pg-boss job's data (issue 21, rolling upgrades).
--
-- The previous release's workers check a request's data with strict schemas: a field or option
-- they do not know (detection's `resume`, `this_run_only`) makes them refuse the request and
-- dead-letter it at once. During a rolling upgrade they fetch this build's requests too, so this
-- build sends such parts here, keyed by the pg-boss job's id, and keeps the job's data in the
-- previous release's format. This build's workers read them back before the run; the previous
-- release's never look, and run the request as that release would (a handed-on detection pass
-- starts over; a run it takes is not "this run only"). Rows older than worker.run_history_days are
-- pruned with the run history.
CREATE TABLE tasker_run_request_extras (
  pgboss_job_id uuid PRIMARY KEY,
  job_name text NOT NULL,
  extras jsonb NOT NULL CHECK (jsonb_typeof(extras) = 'object'),
  created_at timestamptz NOT NULL DEFAULT now()
);
-- Pruning: the oldest rows first.
CREATE INDEX idx_run_request_extras_created_at ON tasker_run_request_extras (created_at);
