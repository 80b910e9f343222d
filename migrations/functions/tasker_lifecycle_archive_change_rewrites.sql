-- Whether the change tasker_lifecycle_archive_drift lists for column p_column of the archive table
-- p_archive rewrites that table or rebuilds one of its indexes, as this server decides it: the
-- change is made to an empty copy of the table (a temporary table with its columns, defaults and
-- indexes) and the copy's files are compared before and after; all of it is rolled back. So
-- varchar(n) to a longer varchar or to text, numeric(p, s) to numeric, timestamp(3) to timestamp,
-- a new column without a default or with a non-volatile one, and dropping NOT NULL come out false
-- (catalog changes only); integer to bigint, a new column with a volatile default (every row gets
-- its own value) or of a domain with constraints come out true. Used by `migrate` only
-- (tasker_lifecycle_follow_live_table): the temporary table needs a session, never PgBouncer's.
CREATE OR REPLACE FUNCTION tasker_lifecycle_archive_change_rewrites(
  p_live regclass, p_archive regclass, p_column text
) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_probe regclass;
  v_drift record;
  v_before text;
  v_after text;
  v_rewrites boolean;
BEGIN
  BEGIN
    EXECUTE format('CREATE TEMPORARY TABLE tasker_lifecycle_rewrite_probe (LIKE %s INCLUDING DEFAULTS INCLUDING INDEXES)',
                   p_archive);
    v_probe := 'pg_temp.tasker_lifecycle_rewrite_probe'::regclass;
    SELECT string_agg(pg_relation_filenode(f.oid)::text, ',' ORDER BY f.oid) INTO v_before
      FROM (SELECT v_probe::oid AS oid UNION ALL SELECT i.indexrelid FROM pg_index i WHERE i.indrelid = v_probe) f;
    SELECT * INTO v_drift FROM tasker_lifecycle_archive_drift(p_live, v_probe) d
     WHERE d.column_name = p_column AND d.problem IS NULL
     LIMIT 1;
    IF v_drift.ddl IS NOT NULL THEN
      EXECUTE v_drift.ddl;
    END IF;
    SELECT string_agg(pg_relation_filenode(f.oid)::text, ',' ORDER BY f.oid) INTO v_after
      FROM (SELECT v_probe::oid AS oid UNION ALL SELECT i.indexrelid FROM pg_index i WHERE i.indrelid = v_probe) f;
    v_rewrites := v_after IS DISTINCT FROM v_before;
    -- undo the probe (the variable keeps its value)
    RAISE EXCEPTION 'rolled back' USING ERRCODE = 'TL099';
  EXCEPTION WHEN SQLSTATE 'TL099' THEN
    NULL;
  END;
  RETURN v_rewrites;
END
$$;
