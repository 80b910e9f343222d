-- Statistics --------------------------------------------------------------------------------------

-- Archived tasks per month of archival (UTC), upstream's columns first. Lifetime is from creation
-- to entering the final state. Reads the monthly rollup (tasker_archive_months and
-- tasker_archive_month_templates, 0210: delta rows, summed here), which archival, restore and
-- retention keep in their own transactions: a few rows per month and template, never the archive
-- itself. oldest/newest task and first/last archival are the extremes among the tasks ever archived
-- into the month (a restore takes its task out of the counts, not out of those extremes).
CREATE OR REPLACE VIEW v_archive_statistics AS
WITH t AS (
  SELECT archive_month, named_task_uuid, final_state, sum(tasks) AS tasks,
         sum(lifetime_seconds) AS lifetime_seconds, min(oldest_created_at) AS oldest_created_at,
         max(newest_created_at) AS newest_created_at
    FROM tasker_archive_month_templates
   GROUP BY 1, 2, 3
), m AS (
  SELECT archive_month, min(first_archived_at) AS first_archived_at, max(last_archived_at) AS last_archived_at
    FROM tasker_archive_months
   GROUP BY 1
)
SELECT t.archive_month,
       sum(t.tasks)::bigint AS tasks_archived,
       count(DISTINCT t.named_task_uuid) FILTER (WHERE t.tasks > 0) AS distinct_task_templates,
       min(t.oldest_created_at) FILTER (WHERE t.tasks > 0) AS oldest_task_archived,
       max(t.newest_created_at) FILTER (WHERE t.tasks > 0) AS newest_task_archived,
       round(sum(t.lifetime_seconds) FILTER (WHERE t.final_state <> '')
             / nullif(sum(t.tasks) FILTER (WHERE t.final_state <> ''), 0) / 86400, 2) AS avg_task_lifetime_days,
       coalesce(sum(t.tasks) FILTER (WHERE t.final_state = 'complete'), 0)::bigint AS completed,
       coalesce(sum(t.tasks) FILTER (WHERE t.final_state = 'error'), 0)::bigint AS failed,
       coalesce(sum(t.tasks) FILTER (WHERE t.final_state = 'cancelled'), 0)::bigint AS cancelled,
       coalesce(sum(t.tasks) FILTER (WHERE t.final_state = 'resolved_manually'), 0)::bigint AS resolved_manually,
       min(m.first_archived_at) AS first_archived_at,
       max(m.last_archived_at) AS last_archived_at
  FROM t
  JOIN m ON m.archive_month = t.archive_month
 GROUP BY t.archive_month
HAVING sum(t.tasks) > 0;
