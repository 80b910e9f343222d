-- Folds the monthly rollup's delta rows (tasker_lifecycle_archive_rollup) into one row per month
-- (and per month, template and final state), dropping what sums to nothing; returns the rows
-- folded. Run by the archival job after its batches, in a transaction of its own. Only committed
-- rows are folded (a batch still running inserts its rows after); a second compaction at the same
-- time does nothing (pg_try_advisory_xact_lock), so none waits for another. Reads each table whole:
-- it holds a few rows per month once compacted, plus one or a few per batch since.
CREATE OR REPLACE FUNCTION tasker_lifecycle_archive_rollup_compact() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_months bigint;
  v_templates bigint;
BEGIN
  IF NOT pg_try_advisory_xact_lock(hashtext('tasker_lifecycle_archive_rollup_compact')) THEN
    RETURN 0;
  END IF;
  WITH gone AS (DELETE FROM tasker_archive_months RETURNING *),
  folded AS (
    INSERT INTO tasker_archive_months
           (archive_month, tasks, steps, transitions, edges, step_transitions, dlq_entries,
            first_archived_at, last_archived_at)
    SELECT archive_month, sum(tasks), sum(steps), sum(transitions), sum(edges), sum(step_transitions),
           sum(dlq_entries), min(first_archived_at), max(last_archived_at)
      FROM gone GROUP BY archive_month
    HAVING sum(tasks) <> 0 OR sum(steps) <> 0 OR sum(transitions) <> 0 OR sum(edges) <> 0
        OR sum(step_transitions) <> 0 OR sum(dlq_entries) <> 0
    RETURNING 1
  )
  SELECT count(*) INTO v_months FROM gone;
  WITH gone AS (DELETE FROM tasker_archive_month_templates RETURNING *),
  folded AS (
    INSERT INTO tasker_archive_month_templates
           (archive_month, named_task_uuid, final_state, tasks, lifetime_seconds, oldest_created_at, newest_created_at)
    SELECT archive_month, named_task_uuid, final_state, sum(tasks), sum(lifetime_seconds),
           min(oldest_created_at), max(newest_created_at)
      FROM gone GROUP BY archive_month, named_task_uuid, final_state
    HAVING sum(tasks) <> 0
    RETURNING 1
  )
  SELECT count(*) INTO v_templates FROM gone;
  RETURN v_months + v_templates;
END
$$;
