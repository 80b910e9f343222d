-- The move both paths end with: the graphs of p_ids (whose steps are p_step_ids) from the live
-- tables to the archive tables, children first, every column (tasker_lifecycle_archive_rows), in
-- the caller's transaction and under its locks; rows moved per table. Indexes:
-- idx_step_transitions_uuid_sort_key, idx_step_edges_from_step_uuid + idx_step_edges_to_step_uuid,
-- idx_workflow_steps_task_uuid, idx_task_transitions_uuid_sort_key, idx_dlq_task_lookup,
-- tasker_tasks_pkey. Pending DLQ entries never move (a task with one is not a candidate).
--
-- Partitioned archive tables (0210): a month with no partition yet is refused (SQLSTATE TL005,
-- nothing moved; the archival job and `migrate` make partitions ahead of need, never this
-- function). A partitioned table's key includes archived_at, so one archived copy per task is kept
-- here: a task that already has an archived copy (another archived_at) is refused with SQLSTATE
-- 23505, as the unpartitioned tables' primary key refused it (tasker_tasks_archive_pkey probes,
-- one per partition per task). Then the monthly rollup counts what moved
-- (tasker_lifecycle_archive_rollup), in this transaction.
CREATE OR REPLACE FUNCTION tasker_lifecycle_archive_graphs(
  p_ids uuid[], p_step_ids uuid[], p_archived_at timestamptz,
  OUT step_transitions integer, OUT edges integer, OUT steps integer, OUT transitions integer,
  OUT dlq_entries integer, OUT tasks integer
)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
AS $$
DECLARE
  v_missing text;
  v_copy uuid;
BEGIN
  SELECT string_agg(p.archive_table, ', ' ORDER BY p.archive_table) INTO v_missing
    FROM tasker_lifecycle_archive_pairs() p
    JOIN pg_class c ON c.oid = to_regclass(p.archive_table) AND c.relkind = 'p'
   WHERE NOT EXISTS (SELECT 1 FROM tasker_lifecycle_archive_partitions() x
                      WHERE x.archive_table = p.archive_table AND NOT x.detach_pending
                        AND (x.from_at IS NULL OR x.from_at <= p_archived_at)
                        AND (x.to_at IS NULL OR x.to_at > p_archived_at));
  IF v_missing IS NOT NULL THEN
    RAISE EXCEPTION 'archival refused, nothing was moved: no partition of % holds archived_at %', v_missing,
      p_archived_at
      USING ERRCODE = 'TL005',
            HINT = 'the archival job makes the partitions of the current and next month before its first batch; `tasker-lifecycle migrate` makes them too';
  END IF;
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
  -- one archived copy per task (tasker_tasks_archive_pkey, every partition)
  SELECT a.task_uuid INTO v_copy FROM tasker_tasks_archive a
   WHERE a.task_uuid = ANY (p_ids) AND a.archived_at <> p_archived_at LIMIT 1;
  IF v_copy IS NOT NULL THEN
    RAISE EXCEPTION 'task % already has an archived copy: archival refused, nothing was moved', v_copy
      USING ERRCODE = '23505', CONSTRAINT = 'tasker_tasks_archive_pkey',
            HINT = 'restore the archived copy first (restore takes the newest copy), or remove one of the two';
  END IF;
  PERFORM tasker_lifecycle_archive_rollup(p_ids, p_archived_at, 1, steps, transitions, edges, step_transitions,
                                          dlq_entries);
END
$$;
