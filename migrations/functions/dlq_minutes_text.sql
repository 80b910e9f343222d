-- 95 -> "1h35m", 3000 -> "2d2h" (as the CLI prints durations).
CREATE OR REPLACE FUNCTION dlq_minutes_text(p_minutes integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN p_minutes < 60 THEN p_minutes || 'm'
    WHEN p_minutes < 1440 THEN (p_minutes / 60) || 'h' || CASE WHEN p_minutes % 60 > 0 THEN (p_minutes % 60) || 'm' ELSE '' END
    ELSE (p_minutes / 1440) || 'd' || CASE WHEN p_minutes % 1440 >= 60 THEN ((p_minutes % 1440) / 60) || 'h' ELSE '' END
  END
$$;
