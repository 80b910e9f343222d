-- Counts the whole archive into the rollup and starts it (tasker_archive_rollup_started), in the
-- caller's transaction: once, when `migrate` adopts the archive tables (src/install/archive-
-- partitions.ts). Takes SHARE on the six archive tables first, in the order archival writes them
-- (so it waits for running batches and restores, and they wait for it; reads and the engine do
-- not), then replaces the rollup with a full count: one pass over each table. Returns the tasks
-- counted. On an archive of N rows this holds archival and restore off for one scan of N rows.
CREATE OR REPLACE FUNCTION tasker_lifecycle_archive_rollup_recount() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_tasks bigint;
BEGIN
  LOCK TABLE tasker_workflow_step_transitions_archive, tasker_workflow_step_edges_archive,
             tasker_workflow_steps_archive, tasker_task_transitions_archive, tasker_tasks_dlq_archive,
             tasker_tasks_archive IN SHARE MODE;
  DELETE FROM tasker_archive_month_templates;
  DELETE FROM tasker_archive_months;
  INSERT INTO tasker_archive_month_templates
         (archive_month, named_task_uuid, final_state, tasks, lifetime_seconds, oldest_created_at, newest_created_at)
  SELECT (date_trunc('month', t.archived_at, 'UTC') AT TIME ZONE 'UTC')::date, t.named_task_uuid,
         coalesce(tr.to_state, ''), count(*), coalesce(sum(extract(epoch FROM tr.created_at - t.created_at)), 0),
         min(t.created_at), max(t.created_at)
    FROM tasker_tasks_archive t
    LEFT JOIN tasker_task_transitions_archive tr
      ON tr.task_uuid = t.task_uuid AND tr.most_recent = true AND tr.archived_at = t.archived_at
   GROUP BY 1, 2, 3;
  INSERT INTO tasker_archive_months
         (archive_month, tasks, steps, transitions, edges, step_transitions, dlq_entries,
          first_archived_at, last_archived_at)
  SELECT x.month, sum(x.tasks), sum(x.steps), sum(x.transitions), sum(x.edges), sum(x.step_transitions),
         sum(x.dlq_entries), min(x.first_at), max(x.last_at)
    FROM (
      SELECT (date_trunc('month', archived_at, 'UTC') AT TIME ZONE 'UTC')::date AS month, count(*) AS tasks,
             0 AS steps, 0 AS transitions, 0 AS edges, 0 AS step_transitions, 0 AS dlq_entries,
             min(archived_at) AS first_at, max(archived_at) AS last_at
        FROM tasker_tasks_archive GROUP BY 1
      UNION ALL
      SELECT (date_trunc('month', archived_at, 'UTC') AT TIME ZONE 'UTC')::date, 0, count(*), 0, 0, 0, 0,
             min(archived_at), max(archived_at)
        FROM tasker_workflow_steps_archive GROUP BY 1
      UNION ALL
      SELECT (date_trunc('month', archived_at, 'UTC') AT TIME ZONE 'UTC')::date, 0, 0, count(*), 0, 0, 0,
             min(archived_at), max(archived_at)
        FROM tasker_task_transitions_archive GROUP BY 1
      UNION ALL
      SELECT (date_trunc('month', archived_at, 'UTC') AT TIME ZONE 'UTC')::date, 0, 0, 0, count(*), 0, 0,
             min(archived_at), max(archived_at)
        FROM tasker_workflow_step_edges_archive GROUP BY 1
      UNION ALL
      SELECT (date_trunc('month', archived_at, 'UTC') AT TIME ZONE 'UTC')::date, 0, 0, 0, 0, count(*), 0,
             min(archived_at), max(archived_at)
        FROM tasker_workflow_step_transitions_archive GROUP BY 1
      UNION ALL
      SELECT (date_trunc('month', archived_at, 'UTC') AT TIME ZONE 'UTC')::date, 0, 0, 0, 0, 0, count(*),
             min(archived_at), max(archived_at)
        FROM tasker_tasks_dlq_archive GROUP BY 1
    ) x
   GROUP BY x.month;
  INSERT INTO tasker_archive_rollup_started (started_at) VALUES (clock_timestamp())
  ON CONFLICT (one) DO NOTHING;
  SELECT coalesce(sum(tasks), 0) INTO v_tasks FROM tasker_archive_months;
  RETURN v_tasks;
END
$$;
