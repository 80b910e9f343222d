-- 0141: entries that earlier builds marked failed for good get another attempt (issue 20).
--
-- Before 0140 an entry whose enrichment failed once was never tried again. Most of those failures
-- were the diagnosis's quadratic walk running past the statement timeout on a task with thousands
-- of steps, which is now linear (dlq_enrichment_step_graph). So each pending entry with such a
-- record (failed, without the failed_attempts that 0140's records carry) counts as one failed
-- attempt whose next attempt is due now: the next sweep tries it, and if it fails again it follows
-- the retry rules (dlq.enrichment.max_attempts, backoff) like any other.
--
-- A separate migration from 0140, so that this scan of the pending entries (their snapshots are
-- read to find the failed ones) runs without 0140's table lock: it locks only the rows it changes.
UPDATE tasker_tasks_dlq
   SET enrichment_next_attempt_at = now(),
       task_snapshot = jsonb_set(task_snapshot, '{enrichment}',
                                 (task_snapshot -> 'enrichment')
                                 || jsonb_build_object('failed_attempts', 1, 'next_attempt_at', now(), 'gave_up', false))
 WHERE resolution_status = 'pending'
   AND enrichment_next_attempt_at IS NULL
   AND (task_snapshot -> 'enrichment' ->> 'failed') = 'true'
   AND NOT (task_snapshot -> 'enrichment' ? 'failed_attempts');
