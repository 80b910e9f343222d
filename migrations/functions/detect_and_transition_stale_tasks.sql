-- Upstream's entry point, same signature and result columns: one batch (the first page of
-- detect_stale_tasks_batch, judged at now()). Thresholds come from the arguments; the action
-- switches, enabled reasons and event channel come from tasker_lifecycle_settings, which
-- `migrate` writes from the configuration.
CREATE OR REPLACE FUNCTION detect_and_transition_stale_tasks(
  p_dry_run boolean DEFAULT true,
  p_batch_size integer DEFAULT 100,
  p_default_waiting_deps_threshold integer DEFAULT 60,
  p_default_waiting_retry_threshold integer DEFAULT 30,
  p_default_steps_in_process_threshold integer DEFAULT 30,
  p_default_task_max_lifetime_hours integer DEFAULT 24
) RETURNS TABLE (
  task_uuid uuid,
  namespace_name varchar,
  task_name varchar,
  current_state varchar,
  time_in_state_minutes integer,
  staleness_threshold_minutes integer,
  action_taken varchar,
  moved_to_dlq boolean,
  transition_success boolean
)
LANGUAGE sql VOLATILE AS $$
  SELECT b.task_uuid, b.namespace_name, b.task_name, b.current_state, b.time_in_state_minutes,
         b.staleness_threshold_minutes, b.action_taken, b.moved_to_dlq, b.transition_success
    FROM tasker_lifecycle_settings s
   CROSS JOIN LATERAL detect_stale_tasks_batch(
     now(), p_dry_run, p_batch_size, p_default_waiting_deps_threshold, p_default_waiting_retry_threshold,
     p_default_steps_in_process_threshold, p_default_task_max_lifetime_hours,
     s.auto_transition_to_error, s.auto_move_to_dlq, s.enabled_reasons, s.event_channel, NULL, NULL) b
$$;
