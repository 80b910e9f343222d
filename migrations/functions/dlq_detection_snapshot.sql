-- The snapshot written at detection: small and fast. The enrichment job adds steps, history, the
-- dependency graph and a diagnosis later.
CREATE OR REPLACE FUNCTION dlq_detection_snapshot(
  p_task_uuid uuid,
  p_namespace_name varchar,
  p_task_name varchar,
  p_current_state varchar,
  p_time_in_state_minutes integer,
  p_threshold_minutes integer,
  p_snapshot_at timestamptz
) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'task_uuid', p_task_uuid,
    'namespace', p_namespace_name,
    'task_name', p_task_name,
    'current_state', p_current_state,
    'time_in_state_minutes', p_time_in_state_minutes,
    'threshold_minutes', p_threshold_minutes,
    'snapshot_timestamp', p_snapshot_at,
    'task_details', (
      SELECT jsonb_build_object(
        'correlation_id', t.correlation_id,
        'priority', t.priority,
        'requested_at', t.requested_at,
        'created_at', t.created_at,
        'initiator', t.initiator,
        'source_system', t.source_system,
        'reason', t.reason)
        FROM tasker_tasks t WHERE t.task_uuid = p_task_uuid))
$$;
