-- One row: the thresholds and actions a template asks for in a given state. A malformed value is
-- ignored (NULL), so the task falls back to the default for that key; lifecycle_config_problems says why.
CREATE OR REPLACE FUNCTION task_staleness_policy(
  p_template_config jsonb,
  p_task_state varchar,
  p_default_waiting_deps integer,
  p_default_waiting_retry integer,
  p_default_steps_process integer,
  p_default_lifetime_hours integer
) RETURNS TABLE (
  state_threshold_minutes integer,
  lifetime_minutes integer,
  staleness_action varchar,
  auto_fail_on_timeout boolean,
  auto_dlq_on_timeout boolean
)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT
    calculate_staleness_threshold(p_task_state, p_template_config,
                                  p_default_waiting_deps, p_default_waiting_retry, p_default_steps_process),
    coalesce(lifecycle_minutes(p_template_config -> 'lifecycle', 'max_duration_minutes'), p_default_lifetime_hours * 60),
    CASE WHEN p_template_config -> 'lifecycle' -> 'staleness_action' IN ('"dlq"', '"error"', '"none"')
         THEN (p_template_config -> 'lifecycle' ->> 'staleness_action')::varchar ELSE 'dlq'::varchar END,
    CASE WHEN jsonb_typeof(p_template_config -> 'lifecycle' -> 'auto_fail_on_timeout') = 'boolean'
         THEN (p_template_config -> 'lifecycle' ->> 'auto_fail_on_timeout')::boolean END,
    CASE WHEN jsonb_typeof(p_template_config -> 'lifecycle' -> 'auto_dlq_on_timeout') = 'boolean'
         THEN (p_template_config -> 'lifecycle' ->> 'auto_dlq_on_timeout')::boolean END
$$;
