-- Pending investigations, most urgent first: a base score by reason (a cycle can never finish, so
-- it comes first) plus one point per minute waiting. "overdue" marks entries pending longer than
-- dlq.max_pending_age_hours (strictly longer, as upstream's is_stale). Reads idx_dlq_resolution_status.
CREATE OR REPLACE VIEW v_dlq_investigation_queue AS
SELECT d.dlq_entry_uuid,
       d.task_uuid,
       d.original_state,
       d.dlq_reason,
       d.dlq_timestamp,
       w.minutes_in_dlq,
       (d.task_snapshot ->> 'namespace')::varchar AS namespace_name,
       (d.task_snapshot ->> 'task_name')::varchar AS task_name,
       (d.task_snapshot ->> 'current_state')::varchar AS current_state,
       (d.metadata ->> 'time_in_state_minutes')::integer AS time_in_state_minutes,
       CASE d.dlq_reason
         WHEN 'dependency_cycle_detected' THEN 1000
         WHEN 'max_retries_exceeded' THEN 500
         WHEN 'staleness_timeout' THEN 100
         WHEN 'worker_unavailable' THEN 50
         ELSE 10
       END + w.minutes_in_dlq AS priority_score,
       d.dlq_timestamp < now() - make_interval(hours => s.max_pending_age_hours) AS overdue
  FROM tasker_tasks_dlq d
 CROSS JOIN tasker_lifecycle_settings s
 CROSS JOIN LATERAL (SELECT floor(extract(epoch FROM now() - d.dlq_timestamp) / 60)::integer AS minutes_in_dlq) w
 WHERE d.resolution_status = 'pending'
 ORDER BY priority_score DESC, d.dlq_timestamp;
