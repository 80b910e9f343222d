-- " and 7 more" when a list of p_total names shows only p_shown, else "".
CREATE OR REPLACE FUNCTION dlq_and_more(p_total bigint, p_shown integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_total > p_shown THEN format(' and %s more', p_total - p_shown) ELSE '' END
$$;
