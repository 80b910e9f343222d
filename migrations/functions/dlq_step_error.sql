-- The error a step reported: the "error" member of its results object (a string or an object such
-- as {"message": ..., "error_type": ...}); NULL when there is none.
CREATE OR REPLACE FUNCTION dlq_step_error(p_results jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT nullif(p_results -> 'error', 'null'::jsonb)
$$;
