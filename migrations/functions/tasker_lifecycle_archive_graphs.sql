-- The move both paths end with: the graphs of p_ids (whose steps are p_step_ids) from the live
-- tables to the archive tables, children first, every column (tasker_lifecycle_archive_rows), in
-- the caller's transaction and under its locks; rows moved per table. Indexes:
-- idx_step_transitions_uuid_sort_key, idx_step_edges_from_step_uuid + idx_step_edges_to_step_uuid,
-- idx_workflow_steps_task_uuid, idx_task_transitions_uuid_sort_key, idx_dlq_task_lookup,
-- tasker_tasks_pkey. Pending DLQ entries never move (a task with one is not a candidate).
CREATE OR REPLACE FUNCTION tasker_lifecycle_archive_graphs(
  p_ids uuid[], p_step_ids uuid[], p_archived_at timestamptz,
  OUT step_transitions integer, OUT edges integer, OUT steps integer, OUT transitions integer,
  OUT dlq_entries integer, OUT tasks integer
)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
AS $$
BEGIN
  step_transitions := tasker_lifecycle_archive_rows(
    'tasker_workflow_step_transitions', 'tasker_workflow_step_transitions_archive',
    'x.workflow_step_uuid = ANY ($1)', p_step_ids, p_archived_at);
  edges := tasker_lifecycle_archive_rows(
    'tasker_workflow_step_edges', 'tasker_workflow_step_edges_archive',
    'x.from_step_uuid = ANY ($1) OR x.to_step_uuid = ANY ($1)', p_step_ids, p_archived_at);
  steps := tasker_lifecycle_archive_rows(
    'tasker_workflow_steps', 'tasker_workflow_steps_archive', 'x.task_uuid = ANY ($1)', p_ids, p_archived_at);
  transitions := tasker_lifecycle_archive_rows(
    'tasker_task_transitions', 'tasker_task_transitions_archive', 'x.task_uuid = ANY ($1)', p_ids,
    p_archived_at);
  dlq_entries := tasker_lifecycle_archive_rows(
    'tasker_tasks_dlq', 'tasker_tasks_dlq_archive',
    $w$x.task_uuid = ANY ($1) AND x.resolution_status <> 'pending'$w$, p_ids, p_archived_at);
  tasks := tasker_lifecycle_archive_rows(
    'tasker_tasks', 'tasker_tasks_archive', 'x.task_uuid = ANY ($1)', p_ids, p_archived_at);
END
$$;
