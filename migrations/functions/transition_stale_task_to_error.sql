-- Upstream's helper: one compare-and-swap of a stale task to error through the engine's
-- transition_task_state_atomic, with the staleness reason in the transition's metadata. False when
-- the task is no longer in p_current_state.
CREATE OR REPLACE FUNCTION transition_stale_task_to_error(
  p_task_uuid uuid,
  p_current_state varchar,
  p_namespace_name varchar,
  p_task_name varchar
) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
  SELECT transition_task_state_atomic(
    p_task_uuid, p_current_state, 'error', NULL,
    jsonb_build_object('reason', 'staleness_timeout', 'namespace', p_namespace_name,
                       'task_name', p_task_name, 'detected_at', now()))
$$;
