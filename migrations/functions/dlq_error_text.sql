-- One line of at most p_max_chars for an error value: its message when it has one.
CREATE OR REPLACE FUNCTION dlq_error_text(p_error jsonb, p_max_chars integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT left(regexp_replace(
    CASE jsonb_typeof(p_error)
      WHEN 'string' THEN p_error #>> '{}'
      WHEN 'object' THEN coalesce(p_error ->> 'message', p_error::text)
      ELSE p_error::text
    END, '\s+', ' ', 'g'), p_max_chars)
$$;
