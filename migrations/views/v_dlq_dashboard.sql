-- Investigations grouped by reason. Upstream's columns; the average counts pending entries up to now.
CREATE OR REPLACE VIEW v_dlq_dashboard AS
SELECT d.dlq_reason,
       count(*) AS total_entries,
       count(*) FILTER (WHERE d.resolution_status = 'pending') AS pending,
       count(*) FILTER (WHERE d.resolution_status = 'manually_resolved') AS manually_resolved,
       count(*) FILTER (WHERE d.resolution_status = 'permanently_failed') AS permanent_failures,
       count(*) FILTER (WHERE d.resolution_status = 'cancelled') AS cancelled,
       min(d.dlq_timestamp) AS oldest_entry,
       max(d.dlq_timestamp) AS newest_entry,
       round(avg(extract(epoch FROM coalesce(d.resolution_timestamp, now()) - d.dlq_timestamp) / 60), 2)
         AS avg_resolution_time_minutes
  FROM tasker_tasks_dlq d
 GROUP BY d.dlq_reason;
