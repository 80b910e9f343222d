-- Statistics --------------------------------------------------------------------------------------

-- Archived tasks per month of archival (UTC), upstream's columns first. Lifetime is from creation
-- to entering the final state. Aggregates the whole archive: for dashboards, not for hot paths
-- (the status command reads archiveTotals in src/db/queries/archive.ts instead).
CREATE OR REPLACE VIEW v_archive_statistics AS
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
