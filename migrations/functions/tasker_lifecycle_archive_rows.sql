-- Moves the rows of p_live matching p_where (a fixed predicate on alias x over $1, the task or step
-- ids) to p_archive, stamped p_archived_at; returns how many. RETURNING * goes into the live
-- table's columns positionally: a column added since the catalog was read makes the statement fail
-- instead of being dropped.
CREATE OR REPLACE FUNCTION tasker_lifecycle_archive_rows(
  p_live regclass, p_archive regclass, p_where text, p_ids uuid[], p_archived_at timestamptz
) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_n integer;
BEGIN
  EXECUTE format(
    'WITH moved AS (DELETE FROM %s x WHERE %s RETURNING x.*) INSERT INTO %s (%s, archived_at) SELECT moved.*, $2 FROM moved',
    p_live, p_where, p_archive, tasker_lifecycle_columns(p_live, false))
  USING p_ids, p_archived_at;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  RETURN v_n;
END
$$;
