-- Adds (p_sign 1, after archival has moved them in) or takes away (p_sign -1, before a restore moves
-- them out) the archived tasks p_ids stamped p_archived_at, and the rows of the other tables given
-- as counts, to the monthly rollup (tasker_archive_months, tasker_archive_month_templates; 0210), in
-- the caller's transaction, as new delta rows: never an update of a row another batch may hold, so
-- two archivers never wait for each other here. Does nothing until the rollup has started
-- (tasker_archive_rollup_started: `migrate` counts the archive that was there and starts it in one
-- transaction holding SHARE on the archive tables); the caller must already hold ROW EXCLUSIVE on
-- the six archive tables, so that it reads that marker after any such count committed, and each row
-- is counted once. Reads each task through tasker_tasks_archive_pkey and its final transition
-- through idx_task_transitions_archive_task_uuid, one probe each, in p_archived_at's partition only.
CREATE OR REPLACE FUNCTION tasker_lifecycle_archive_rollup(
  p_ids uuid[], p_archived_at timestamptz, p_sign integer,
  p_steps bigint, p_transitions bigint, p_edges bigint, p_step_transitions bigint, p_dlq_entries bigint
) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_month date := (date_trunc('month', p_archived_at, 'UTC') AT TIME ZONE 'UTC')::date;
  v_tasks bigint;
BEGIN
  IF p_sign NOT IN (1, -1) THEN
    RAISE EXCEPTION 'p_sign must be 1 or -1, got %', p_sign USING ERRCODE = '22023';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM tasker_archive_rollup_started) OR cardinality(p_ids) = 0 THEN
    RETURN;
  END IF;
  -- One probe per id, each a LATERAL with LIMIT 1 so that it cannot be turned into a join: every
  -- batch of a run archives with the same archived_at, so reading the tasks by archived_at
  -- (idx_tasks_archive_archived_at, which the planner took with statistics from before the run)
  -- read every task the run had archived so far, again in each batch: quadratic in the run.
  WITH per AS (
    SELECT t.named_task_uuid, coalesce(tr.to_state, '')::varchar(64) AS final_state, count(*) AS tasks,
           coalesce(sum(extract(epoch FROM tr.created_at - t.created_at)), 0) AS lifetime_seconds,
           min(t.created_at) AS oldest, max(t.created_at) AS newest
      FROM unnest(p_ids) AS i(task_uuid)
     CROSS JOIN LATERAL (
       SELECT a.named_task_uuid, a.created_at FROM tasker_tasks_archive a
        WHERE a.task_uuid = i.task_uuid AND a.archived_at = p_archived_at
        LIMIT 1) t
      LEFT JOIN LATERAL (
       SELECT a.to_state, a.created_at FROM tasker_task_transitions_archive a
        WHERE a.task_uuid = i.task_uuid AND a.most_recent = true AND a.archived_at = p_archived_at
        LIMIT 1) tr ON true
     GROUP BY 1, 2
  ), added AS (
    INSERT INTO tasker_archive_month_templates
           (archive_month, named_task_uuid, final_state, tasks, lifetime_seconds, oldest_created_at, newest_created_at)
    SELECT v_month, per.named_task_uuid, per.final_state, p_sign * per.tasks, p_sign * per.lifetime_seconds,
           CASE WHEN p_sign = 1 THEN per.oldest END, CASE WHEN p_sign = 1 THEN per.newest END
      FROM per
    RETURNING 1
  )
  SELECT coalesce(sum(per.tasks), 0) INTO v_tasks FROM per;
  INSERT INTO tasker_archive_months
         (archive_month, tasks, steps, transitions, edges, step_transitions, dlq_entries,
          first_archived_at, last_archived_at)
  VALUES (v_month, p_sign * v_tasks, p_sign * p_steps, p_sign * p_transitions, p_sign * p_edges,
          p_sign * p_step_transitions, p_sign * p_dlq_entries,
          CASE WHEN p_sign = 1 THEN p_archived_at END, CASE WHEN p_sign = 1 THEN p_archived_at END);
END
$$;
