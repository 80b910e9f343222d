-- 0081: the investigation queue without sorting every pending entry (issue 11, GET
-- /v1/dlq/investigation-queue under load).
--
-- v_dlq_investigation_queue scores each pending entry (a base per reason plus its minutes in the
-- DLQ) and sorts them all, so every call reads and sorts every pending entry. Within one reason the
-- score only grows with age, so the most urgent N overall are among the N oldest pending entries of
-- each reason: src/db/queries/dlq.ts reads those (five index scans of at most N rows) and sorts
-- at most 5 x N rows. This index serves those scans.
CREATE INDEX idx_dlq_pending_reason_timestamp ON tasker_tasks_dlq (dlq_reason, dlq_timestamp)
  WHERE resolution_status = 'pending';
