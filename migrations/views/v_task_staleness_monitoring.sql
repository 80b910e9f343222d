-- Per in-flight task: how close it is to being stale, with the same thresholds the detector uses
-- (template first, then the configured defaults from tasker_lifecycle_settings, which the detection
-- job keeps equal to its configuration; upstream hard-coded 60/30/30 here). A task is stale when it
-- has been in its state for at least the state threshold or alive for at least its lifetime;
-- "warning" from 80 % of either. Reads idx_task_transitions_in_flight.
CREATE OR REPLACE VIEW v_task_staleness_monitoring AS
SELECT tr.task_uuid,
       ns.name AS namespace_name,
       nt.name AS task_name,
       tr.to_state AS current_state,
       floor(m.minutes_in_state)::integer AS time_in_state_minutes,
       floor(m.task_age_minutes)::integer AS task_age_minutes,
       pol.state_threshold_minutes AS staleness_threshold_minutes,
       pol.lifetime_minutes AS lifetime_threshold_minutes,
       round(100 * m.ratio, 1) AS threshold_percentage,
       greatest(0, ceil(least(pol.state_threshold_minutes - m.minutes_in_state,
                              pol.lifetime_minutes - m.task_age_minutes)))::integer AS minutes_until_stale,
       (CASE WHEN m.ratio >= 1 THEN 'stale' WHEN m.ratio >= 0.8 THEN 'warning' ELSE 'healthy' END)::varchar
         AS health_status,
       (CASE WHEN m.minutes_in_state >= pol.state_threshold_minutes THEN 'state_threshold'
             WHEN m.task_age_minutes >= pol.lifetime_minutes THEN 'task_lifetime' END)::varchar AS stale_by,
       pol.staleness_action,
       t.priority
  FROM tasker_task_transitions tr
  JOIN tasker_tasks t ON t.task_uuid = tr.task_uuid
  JOIN tasker_named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
  JOIN tasker_task_namespaces ns ON ns.task_namespace_uuid = nt.task_namespace_uuid
 CROSS JOIN tasker_lifecycle_settings s
 CROSS JOIN LATERAL task_staleness_policy(nt.configuration, tr.to_state, s.waiting_for_dependencies_minutes,
                                          s.waiting_for_retry_minutes, s.steps_in_process_minutes,
                                          s.task_max_lifetime_hours) pol
 CROSS JOIN LATERAL (
   SELECT minutes_in_state, task_age_minutes,
          greatest(minutes_in_state / pol.state_threshold_minutes, task_age_minutes / pol.lifetime_minutes) AS ratio
     FROM (SELECT extract(epoch FROM now() - tr.created_at) / 60 AS minutes_in_state,
                  extract(epoch FROM now() - t.created_at) / 60 AS task_age_minutes) raw
 ) m
 WHERE tr.most_recent = true
   AND tr.to_state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
 ORDER BY CASE WHEN m.ratio >= 1 THEN 0 WHEN m.ratio >= 0.8 THEN 1 ELSE 2 END, m.minutes_in_state DESC;
