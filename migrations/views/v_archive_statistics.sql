-- Statistics --------------------------------------------------------------------------------------

-- Archived tasks per month of archival (UTC), upstream's columns first. Lifetime is from creation
-- to entering the final state. Reads the monthly rollup (tasker_archive_months and
-- tasker_archive_month_templates, 0210), which archival, restore and retention keep in their own
-- transactions: a few rows per month and template, never the archive itself. oldest/newest task
-- and first/last archival are the extremes among the tasks ever archived into the month (a restore
-- takes its task out of the counts, not out of those extremes).
CREATE OR REPLACE VIEW v_archive_statistics AS
SELECT r.archive_month,
       sum(r.tasks)::bigint AS tasks_archived,
       count(DISTINCT r.named_task_uuid) FILTER (WHERE r.tasks > 0) AS distinct_task_templates,
       min(r.oldest_created_at) FILTER (WHERE r.tasks > 0) AS oldest_task_archived,
       max(r.newest_created_at) FILTER (WHERE r.tasks > 0) AS newest_task_archived,
       round(sum(r.lifetime_seconds) FILTER (WHERE r.final_state <> '')
             / nullif(sum(r.tasks) FILTER (WHERE r.final_state <> ''), 0) / 86400, 2) AS avg_task_lifetime_days,
       coalesce(sum(r.tasks) FILTER (WHERE r.final_state = 'complete'), 0)::bigint AS completed,
       coalesce(sum(r.tasks) FILTER (WHERE r.final_state = 'error'), 0)::bigint AS failed,
       coalesce(sum(r.tasks) FILTER (WHERE r.final_state = 'cancelled'), 0)::bigint AS cancelled,
       coalesce(sum(r.tasks) FILTER (WHERE r.final_state = 'resolved_manually'), 0)::bigint AS resolved_manually,
       min(m.first_archived_at) AS first_archived_at,
       max(m.last_archived_at) AS last_archived_at
  FROM tasker_archive_month_templates r
  JOIN tasker_archive_months m ON m.archive_month = r.archive_month
 GROUP BY r.archive_month
HAVING sum(r.tasks) > 0;
