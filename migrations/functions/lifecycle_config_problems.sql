-- What is wrong with a template's configuration->'lifecycle' object, one message per problem,
-- sorted by key; an empty array when nothing is. Detection reports these (invalid templates) and
-- treats a malformed value as absent rather than failing.
CREATE OR REPLACE FUNCTION lifecycle_config_problems(p_lifecycle jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN p_lifecycle IS NULL OR jsonb_typeof(p_lifecycle) = 'null' THEN ARRAY[]::text[]
    WHEN jsonb_typeof(p_lifecycle) <> 'object' THEN
      ARRAY['lifecycle must be an object, got ' || p_lifecycle::text]
    ELSE coalesce((
      SELECT array_agg(problem ORDER BY key)
        FROM (
          SELECT e.key, CASE
            WHEN e.key IN ('max_duration_minutes', 'max_waiting_for_dependencies_minutes',
                           'max_waiting_for_retry_minutes', 'max_steps_in_process_minutes') THEN
              CASE WHEN jsonb_typeof(e.value) = 'null' OR lifecycle_minutes(p_lifecycle, e.key) IS NOT NULL THEN NULL
                   ELSE e.key || ' must be a positive whole number of minutes, got ' || e.value::text END
            WHEN e.key = 'staleness_action' THEN
              CASE WHEN e.value IN ('"dlq"', '"error"', '"none"') THEN NULL
                   ELSE 'staleness_action must be one of "dlq", "error", "none", got ' || e.value::text END
            WHEN e.key IN ('auto_fail_on_timeout', 'auto_dlq_on_timeout') THEN
              CASE WHEN jsonb_typeof(e.value) IN ('boolean', 'null') THEN NULL
                   ELSE e.key || ' must be true or false, got ' || e.value::text END
            ELSE 'unknown key ' || e.key
          END AS problem
          FROM jsonb_each(p_lifecycle) e
        ) checked
       WHERE problem IS NOT NULL), ARRAY[]::text[])
  END
$$;
