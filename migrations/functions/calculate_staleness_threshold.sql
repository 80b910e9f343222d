-- Upstream's name and signature. p_template_config is the template's whole configuration.
-- States without their own threshold get 1440 minutes, as upstream.
CREATE OR REPLACE FUNCTION calculate_staleness_threshold(
  p_task_state varchar,
  p_template_config jsonb,
  p_default_waiting_deps integer DEFAULT 60,
  p_default_waiting_retry integer DEFAULT 30,
  p_default_steps_process integer DEFAULT 30
) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE p_task_state
    WHEN 'waiting_for_dependencies' THEN
      coalesce(lifecycle_minutes(p_template_config -> 'lifecycle', 'max_waiting_for_dependencies_minutes'), p_default_waiting_deps)
    WHEN 'waiting_for_retry' THEN
      coalesce(lifecycle_minutes(p_template_config -> 'lifecycle', 'max_waiting_for_retry_minutes'), p_default_waiting_retry)
    WHEN 'steps_in_process' THEN
      coalesce(lifecycle_minutes(p_template_config -> 'lifecycle', 'max_steps_in_process_minutes'), p_default_steps_process)
    ELSE 1440
  END
$$;
