-- Upstream's helper: one pending entry, or NULL when the task already has one. Unlike upstream it
-- does not turn other errors into warnings: a bad reason or a missing task is an error.
CREATE OR REPLACE FUNCTION create_dlq_entry(
  p_task_uuid uuid,
  p_namespace_name varchar,
  p_task_name varchar,
  p_current_state varchar,
  p_time_in_state_minutes integer,
  p_threshold_minutes integer,
  p_dlq_reason varchar DEFAULT 'staleness_timeout'
) RETURNS uuid
LANGUAGE sql VOLATILE AS $$
  INSERT INTO tasker_tasks_dlq (task_uuid, original_state, dlq_reason, task_snapshot, metadata)
  VALUES (
    p_task_uuid, p_current_state, p_dlq_reason::dlq_reason,
    dlq_detection_snapshot(p_task_uuid, p_namespace_name, p_task_name, p_current_state,
                           p_time_in_state_minutes, p_threshold_minutes, now()),
    jsonb_build_object('detection_method', 'automatic_staleness',
                       'time_in_state_minutes', p_time_in_state_minutes,
                       'threshold_minutes', p_threshold_minutes))
  ON CONFLICT (task_uuid) WHERE resolution_status = 'pending' DO NOTHING
  RETURNING dlq_entry_uuid
$$;
