-- Quoted column names of a table in column order (generated columns left out with p_insertable).
CREATE OR REPLACE FUNCTION tasker_lifecycle_columns(p_table regclass, p_insertable boolean)
RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
    FROM pg_attribute a
   WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped
     AND (NOT p_insertable OR a.attgenerated = '')
$$;
