-- 0006: the way back from the archive, and what is in it (0005_archive.sql has the archive tables
-- and archive_completed_tasks).

-- Restore -----------------------------------------------------------------------------------------
--
-- Moves one archived graph back to the live tables exactly as it was (archived_at dropped), parents
-- first, and returns the rows moved per table. A task that is not archived is an error with
-- SQLSTATE P0002 (no_data_found) whose message says whether the task is live or unknown. Two
-- restores of the same task: the second waits for the first and then finds nothing to restore.
-- Reads tasker_tasks_archive_pkey, idx_steps_archive_task_uuid, idx_task_transitions_archive_task_uuid,
-- idx_dlq_archive_task_uuid, idx_step_edges_archive_from_step / _to_step,
-- idx_step_transitions_archive_step_uuid.
CREATE FUNCTION restore_archived_task(p_task_uuid uuid)
RETURNS TABLE (
  tasks_restored integer,
  steps_restored integer,
  transitions_restored integer,
  edges_restored integer,
  step_transitions_restored integer,
  dlq_entries_restored integer
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  v_step_ids uuid[];
  v_state varchar;
BEGIN
  WITH moved AS (
    DELETE FROM tasker_tasks_archive WHERE task_uuid = p_task_uuid
    RETURNING task_uuid, named_task_uuid, complete, requested_at, completed_at, initiator, source_system,
              reason, tags, context, identity_hash, priority, correlation_id, parent_correlation_id,
              created_at, updated_at)
  INSERT INTO tasker_tasks
    (task_uuid, named_task_uuid, complete, requested_at, completed_at, initiator, source_system, reason,
     tags, context, identity_hash, priority, correlation_id, parent_correlation_id, created_at, updated_at)
  SELECT task_uuid, named_task_uuid, complete, requested_at, completed_at, initiator, source_system, reason,
         tags, context, identity_hash, priority, correlation_id, parent_correlation_id, created_at, updated_at
    FROM moved;
  GET DIAGNOSTICS tasks_restored = ROW_COUNT;

  IF tasks_restored = 0 THEN
    SELECT tr.to_state INTO v_state FROM tasker_task_transitions tr
     WHERE tr.task_uuid = p_task_uuid AND tr.most_recent = true;
    IF EXISTS (SELECT 1 FROM tasker_tasks t WHERE t.task_uuid = p_task_uuid) THEN
      RAISE EXCEPTION 'task % is not archived: it is in the live tables (current state %)',
        p_task_uuid, coalesce(v_state, 'none') USING ERRCODE = 'P0002';
    END IF;
    RAISE EXCEPTION 'task % is not archived: no task, live or archived, has this uuid', p_task_uuid
      USING ERRCODE = 'P0002';
  END IF;

  WITH moved AS (
    DELETE FROM tasker_task_transitions_archive WHERE task_uuid = p_task_uuid
    RETURNING task_transition_uuid, task_uuid, to_state, from_state, metadata, sort_key, most_recent,
              processor_uuid, transition_metadata, created_at, updated_at)
  INSERT INTO tasker_task_transitions
    (task_transition_uuid, task_uuid, to_state, from_state, metadata, sort_key, most_recent, processor_uuid,
     transition_metadata, created_at, updated_at)
  SELECT task_transition_uuid, task_uuid, to_state, from_state, metadata, sort_key, most_recent, processor_uuid,
         transition_metadata, created_at, updated_at
    FROM moved;
  GET DIAGNOSTICS transitions_restored = ROW_COUNT;

  WITH moved AS (
    DELETE FROM tasker_tasks_dlq_archive WHERE task_uuid = p_task_uuid
    RETURNING dlq_entry_uuid, task_uuid, original_state, dlq_reason, dlq_timestamp, resolution_status,
              resolution_timestamp, resolution_notes, resolved_by, task_snapshot, metadata, created_at, updated_at)
  INSERT INTO tasker_tasks_dlq
    (dlq_entry_uuid, task_uuid, original_state, dlq_reason, dlq_timestamp, resolution_status,
     resolution_timestamp, resolution_notes, resolved_by, task_snapshot, metadata, created_at, updated_at)
  SELECT dlq_entry_uuid, task_uuid, original_state, dlq_reason, dlq_timestamp, resolution_status,
         resolution_timestamp, resolution_notes, resolved_by, task_snapshot, metadata, created_at, updated_at
    FROM moved;
  GET DIAGNOSTICS dlq_entries_restored = ROW_COUNT;

  WITH moved AS (
    DELETE FROM tasker_workflow_steps_archive WHERE task_uuid = p_task_uuid
    RETURNING workflow_step_uuid, task_uuid, named_step_uuid, retryable, max_attempts, in_process, processed,
              processed_at, attempts, last_attempted_at, backoff_request_seconds, inputs, results, checkpoint,
              priority, created_at, updated_at),
  inserted AS (
    INSERT INTO tasker_workflow_steps
      (workflow_step_uuid, task_uuid, named_step_uuid, retryable, max_attempts, in_process, processed,
       processed_at, attempts, last_attempted_at, backoff_request_seconds, inputs, results, checkpoint,
       priority, created_at, updated_at)
    SELECT workflow_step_uuid, task_uuid, named_step_uuid, retryable, max_attempts, in_process, processed,
           processed_at, attempts, last_attempted_at, backoff_request_seconds, inputs, results, checkpoint,
           priority, created_at, updated_at
      FROM moved
    RETURNING workflow_step_uuid)
  SELECT coalesce(array_agg(workflow_step_uuid), ARRAY[]::uuid[]), count(*) INTO v_step_ids, steps_restored
    FROM inserted;

  WITH moved AS (
    DELETE FROM tasker_workflow_step_edges_archive
     WHERE from_step_uuid = ANY (v_step_ids) OR to_step_uuid = ANY (v_step_ids)
    RETURNING workflow_step_edge_uuid, from_step_uuid, to_step_uuid, name, created_at, updated_at)
  INSERT INTO tasker_workflow_step_edges
    (workflow_step_edge_uuid, from_step_uuid, to_step_uuid, name, created_at, updated_at)
  SELECT workflow_step_edge_uuid, from_step_uuid, to_step_uuid, name, created_at, updated_at
    FROM moved;
  GET DIAGNOSTICS edges_restored = ROW_COUNT;

  WITH moved AS (
    DELETE FROM tasker_workflow_step_transitions_archive WHERE workflow_step_uuid = ANY (v_step_ids)
    RETURNING workflow_step_transition_uuid, workflow_step_uuid, to_state, from_state, metadata, sort_key,
              most_recent, created_at, updated_at)
  INSERT INTO tasker_workflow_step_transitions
    (workflow_step_transition_uuid, workflow_step_uuid, to_state, from_state, metadata, sort_key, most_recent,
     created_at, updated_at)
  SELECT workflow_step_transition_uuid, workflow_step_uuid, to_state, from_state, metadata, sort_key,
         most_recent, created_at, updated_at
    FROM moved;
  GET DIAGNOSTICS step_transitions_restored = ROW_COUNT;

  RETURN NEXT;
END
$$;

-- Statistics --------------------------------------------------------------------------------------

-- Archived tasks per month of archival (UTC), upstream's columns first. Lifetime is from creation
-- to entering the final state. Aggregates the whole archive: for dashboards, not for hot paths
-- (the status command reads archiveTotals in src/db/queries/archive.ts instead).
CREATE VIEW v_archive_statistics AS
SELECT date_trunc('month', t.archived_at AT TIME ZONE 'UTC')::date AS archive_month,
       count(*) AS tasks_archived,
       count(DISTINCT t.named_task_uuid) AS distinct_task_templates,
       min(t.created_at) AS oldest_task_archived,
       max(t.created_at) AS newest_task_archived,
       round(avg(extract(epoch FROM tr.created_at - t.created_at) / 86400), 2) AS avg_task_lifetime_days,
       count(*) FILTER (WHERE tr.to_state = 'complete') AS completed,
       count(*) FILTER (WHERE tr.to_state = 'error') AS failed,
       count(*) FILTER (WHERE tr.to_state = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE tr.to_state = 'resolved_manually') AS resolved_manually,
       min(t.archived_at) AS first_archived_at,
       max(t.archived_at) AS last_archived_at
  FROM tasker_tasks_archive t
  LEFT JOIN tasker_task_transitions_archive tr ON tr.task_uuid = t.task_uuid AND tr.most_recent = true
 GROUP BY 1;
