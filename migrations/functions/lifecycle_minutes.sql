-- One per-template minutes value from a template's lifecycle object: a whole number from 1 to
-- 2^31-1, else NULL (absent, null, fractional, zero, negative or not a number). A malformed value
-- counts as absent, so the default applies; lifecycle_config_problems says what was wrong.
CREATE OR REPLACE FUNCTION lifecycle_minutes(p_lifecycle jsonb, p_key text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(p_lifecycle -> p_key) = 'number' THEN
    CASE WHEN (p_lifecycle ->> p_key)::numeric BETWEEN 1 AND 2147483647
              AND (p_lifecycle ->> p_key)::numeric = trunc((p_lifecycle ->> p_key)::numeric)
         THEN (p_lifecycle ->> p_key)::numeric::integer END
  END
$$;
