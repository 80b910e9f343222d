-- Moves one archived graph back to the live tables exactly as it was (archived_at dropped), parents
-- first, every column (a column the engine added since archival comes back with the default
-- `migrate` gave the archived rows when it added the column to the archive, as the live rows got
-- it), and returns the rows moved per table. Refuses, moving nothing, while the archive tables
-- differ from the live ones (SQLSTATE TL003: run `tasker-lifecycle migrate`; TL001: an archive
-- column to change by hand); it never changes a table itself. A task that is not archived is an error with SQLSTATE P0002
-- (no_data_found) whose message says whether the task is live or unknown. Two restores of the same
-- task: the second waits for the first and then finds nothing to restore. A row whose value sits
-- in an archive column the live table no longer has is refused (SQLSTATE TL002), not dropped.
-- The archive tables are partitioned by archived_at (0210) and a task's key there includes it: the
-- newest archived copy of the task is restored (one probe of tasker_tasks_archive_pkey per
-- partition finds it), and every table is read in that copy's partition only. The monthly rollup
-- loses what moved back (tasker_lifecycle_archive_rollup), in this transaction; the six archive
-- tables are locked ROW EXCLUSIVE first, in archival's order, so that the rollup's start is seen.
-- Reads tasker_tasks_archive_pkey, idx_steps_archive_task_uuid, idx_task_transitions_archive_task_uuid,
-- idx_dlq_archive_task_uuid, idx_step_edges_archive_from_step / _to_step,
-- idx_step_transitions_archive_step_uuid.
CREATE OR REPLACE FUNCTION restore_archived_task(p_task_uuid uuid)
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
  v_task uuid[] := ARRAY[p_task_uuid];
  v_step_ids uuid[];
  v_state varchar;
  v_at timestamptz;
BEGIN
  PERFORM tasker_lifecycle_refuse_archive_moves('restore');
  LOCK TABLE tasker_workflow_step_transitions_archive, tasker_workflow_step_edges_archive,
             tasker_workflow_steps_archive, tasker_task_transitions_archive, tasker_tasks_dlq_archive,
             tasker_tasks_archive IN ROW EXCLUSIVE MODE;

  -- the newest copy (tasker_tasks_archive_pkey in each partition), locked against a second restore
  SELECT a.archived_at INTO v_at FROM tasker_tasks_archive a
   WHERE a.task_uuid = p_task_uuid ORDER BY a.archived_at DESC LIMIT 1 FOR UPDATE;

  IF v_at IS NOT NULL THEN
    SELECT coalesce(array_agg(s.workflow_step_uuid), ARRAY[]::uuid[]) INTO v_step_ids
      FROM tasker_workflow_steps_archive s WHERE s.task_uuid = p_task_uuid AND s.archived_at = v_at;
    PERFORM tasker_lifecycle_archive_rollup(
      v_task, v_at, -1,
      (SELECT count(*) FROM tasker_workflow_steps_archive x WHERE x.task_uuid = p_task_uuid AND x.archived_at = v_at),
      (SELECT count(*) FROM tasker_task_transitions_archive x WHERE x.task_uuid = p_task_uuid AND x.archived_at = v_at),
      (SELECT count(*) FROM tasker_workflow_step_edges_archive x
        WHERE (x.from_step_uuid = ANY (v_step_ids) OR x.to_step_uuid = ANY (v_step_ids)) AND x.archived_at = v_at),
      (SELECT count(*) FROM tasker_workflow_step_transitions_archive x
        WHERE x.workflow_step_uuid = ANY (v_step_ids) AND x.archived_at = v_at),
      (SELECT count(*) FROM tasker_tasks_dlq_archive x WHERE x.task_uuid = p_task_uuid AND x.archived_at = v_at));
  END IF;

  tasks_restored := tasker_lifecycle_restore_rows(
    'tasker_tasks_archive', 'tasker_tasks', 'x.task_uuid = ANY ($1) AND x.archived_at = $2', v_task, v_at);

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

  transitions_restored := tasker_lifecycle_restore_rows(
    'tasker_task_transitions_archive', 'tasker_task_transitions', 'x.task_uuid = ANY ($1) AND x.archived_at = $2',
    v_task, v_at);
  dlq_entries_restored := tasker_lifecycle_restore_rows(
    'tasker_tasks_dlq_archive', 'tasker_tasks_dlq', 'x.task_uuid = ANY ($1) AND x.archived_at = $2', v_task, v_at);

  -- the steps' ids were read above (idx_steps_archive_task_uuid)
  steps_restored := tasker_lifecycle_restore_rows(
    'tasker_workflow_steps_archive', 'tasker_workflow_steps', 'x.task_uuid = ANY ($1) AND x.archived_at = $2',
    v_task, v_at);
  edges_restored := tasker_lifecycle_restore_rows(
    'tasker_workflow_step_edges_archive', 'tasker_workflow_step_edges',
    '(x.from_step_uuid = ANY ($1) OR x.to_step_uuid = ANY ($1)) AND x.archived_at = $2', v_step_ids, v_at);
  step_transitions_restored := tasker_lifecycle_restore_rows(
    'tasker_workflow_step_transitions_archive', 'tasker_workflow_step_transitions',
    'x.workflow_step_uuid = ANY ($1) AND x.archived_at = $2', v_step_ids, v_at);

  RETURN NEXT;
END
$$;
