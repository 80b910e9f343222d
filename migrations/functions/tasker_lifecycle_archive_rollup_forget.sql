-- Takes the months [p_from, p_to) of archive table p_archive out of the monthly rollup, when
-- retention has dropped that table's partition for them (jobs/archive-finished-tasks.ts, retention: in the DROP's
-- transaction). The column of that table is zeroed in tasker_archive_months (tasker_tasks_archive:
-- its per-template rows go too) in every delta row of those months, and rows left with nothing are
-- deleted. p_from NULL: every month before p_to (the adopted partition). Reads both tables through
-- idx_archive_months_month and idx_archive_month_templates_month. Nothing else writes those months
-- meanwhile: archival writes its run's month, and a restore of one waits for the detach before.
CREATE OR REPLACE FUNCTION tasker_lifecycle_archive_rollup_forget(p_archive text, p_from timestamptz, p_to timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_from date := coalesce((p_from AT TIME ZONE 'UTC')::date, '-infinity'::date);
  v_to date := (p_to AT TIME ZONE 'UTC')::date;
BEGIN
  IF p_archive = 'tasker_tasks_archive' THEN
    DELETE FROM tasker_archive_month_templates WHERE archive_month >= v_from AND archive_month < v_to;
    UPDATE tasker_archive_months SET tasks = 0 WHERE archive_month >= v_from AND archive_month < v_to;
  ELSIF p_archive = 'tasker_workflow_steps_archive' THEN
    UPDATE tasker_archive_months SET steps = 0 WHERE archive_month >= v_from AND archive_month < v_to;
  ELSIF p_archive = 'tasker_task_transitions_archive' THEN
    UPDATE tasker_archive_months SET transitions = 0 WHERE archive_month >= v_from AND archive_month < v_to;
  ELSIF p_archive = 'tasker_workflow_step_edges_archive' THEN
    UPDATE tasker_archive_months SET edges = 0 WHERE archive_month >= v_from AND archive_month < v_to;
  ELSIF p_archive = 'tasker_workflow_step_transitions_archive' THEN
    UPDATE tasker_archive_months SET step_transitions = 0 WHERE archive_month >= v_from AND archive_month < v_to;
  ELSIF p_archive = 'tasker_tasks_dlq_archive' THEN
    UPDATE tasker_archive_months SET dlq_entries = 0 WHERE archive_month >= v_from AND archive_month < v_to;
  ELSE
    RAISE EXCEPTION 'not an archive table: %', p_archive USING ERRCODE = '22023';
  END IF;
  DELETE FROM tasker_archive_months
   WHERE archive_month >= v_from AND archive_month < v_to
     AND tasks = 0 AND steps = 0 AND transitions = 0 AND edges = 0 AND step_transitions = 0 AND dlq_entries = 0;
END
$$;
