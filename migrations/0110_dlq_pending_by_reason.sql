-- 0110: the console's investigation queue (issue 12) reads pending entries one reason at a time,
-- oldest first. Within one reason the queue's priority (the reason's score plus minutes waiting)
-- falls as dlq_timestamp rises, so the first N of the whole queue are among the first N of each
-- reason: five bounded range scans of this index, merged, instead of scoring every pending entry.
CREATE INDEX idx_dlq_pending_reason_age ON tasker_tasks_dlq (dlq_reason, dlq_timestamp, dlq_entry_uuid)
  WHERE resolution_status = 'pending';
