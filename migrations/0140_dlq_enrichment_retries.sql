-- 0140: a failed enrichment is tried again later, with backoff, a bounded number of times (issue 20).
--
-- Until now an entry whose enrichment failed on its own (an error, or past its statement timeout)
-- was marked failed for good (task_snapshot.enrichment.failed) and every later sweep passed it by.
-- Many such failures are passing: a database under a stale storm's load, a lock, a deploy. Now the
-- failure record also says how many attempts failed and when the next one is due, and the sweep
-- tries it again once that time has passed, until dlq.enrichment.max_attempts attempts have failed;
-- then the entry is marked failed for good as before.
--
-- When the next attempt is due is a column, not only a key of the snapshot, so that the sweep can
-- find the due entries in order through an index (a timestamp in JSONB cannot be indexed in
-- order: its text-to-timestamptz cast is not immutable). The snapshot keeps the record people read
-- (failed_attempts, next_attempt_at, error); both are written by the same statement.
--
--   enrichment_next_attempt_at   NULL: not waiting for another attempt (never tried, enriched, or
--                                resolved); a time: the last attempt failed and the next is due
--                                then; 'infinity': the last allowed attempt failed (given up).
--   idx_dlq_enrichment_retries   pending entries waiting for another attempt or given up, by when
--                                it is due: the sweep's retries read the range up to now, the
--                                gauges count the range before 'infinity' (retrying) and at it
--                                (given up). It holds only entries whose enrichment failed, so it
--                                stays as small as the failures.
--
-- The archive table gets the column from sync_archive_tables (run by migrate), like any column the
-- live table gains. Adding a nullable column without a default rewrites nothing; the index build
-- reads the table once under this migration's lock (the DLQ table: one row per investigation).
ALTER TABLE tasker_tasks_dlq ADD COLUMN enrichment_next_attempt_at timestamptz;

CREATE INDEX idx_dlq_enrichment_retries ON tasker_tasks_dlq (enrichment_next_attempt_at, dlq_entry_uuid)
  WHERE resolution_status = 'pending' AND enrichment_next_attempt_at IS NOT NULL;
