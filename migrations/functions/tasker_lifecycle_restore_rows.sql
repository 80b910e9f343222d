-- Moves the rows of p_archive matching p_where back to p_live, every column the live table has
-- (generated ones are computed again); refuses (TL002) when a row has a value in a column the live
-- table no longer has, naming it. p_where may also name $2, p_archived_at: a restore moves the copy
-- archived at that time only (0210: the archive tables are partitioned by archived_at, so naming it
-- reads one partition). The four-argument form (the previous build's) passes NULL.
CREATE OR REPLACE FUNCTION tasker_lifecycle_restore_rows(
  p_archive regclass, p_live regclass, p_where text, p_ids uuid[]
) RETURNS integer
LANGUAGE sql VOLATILE AS $$
  SELECT tasker_lifecycle_restore_rows(p_archive, p_live, p_where, p_ids, NULL::timestamptz)
$$;

CREATE OR REPLACE FUNCTION tasker_lifecycle_restore_rows(
  p_archive regclass, p_live regclass, p_where text, p_ids uuid[], p_archived_at timestamptz
) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_cols text := tasker_lifecycle_columns(p_live, true);
  v_col name;
  v_has boolean;
  v_lost text[] := ARRAY[]::text[];
  v_n integer;
BEGIN
  FOR v_col IN
    SELECT a.attname FROM pg_attribute a
     WHERE a.attrelid = p_archive AND a.attnum > 0 AND NOT a.attisdropped AND a.attname <> 'archived_at'
       AND NOT EXISTS (SELECT 1 FROM pg_attribute l
                        WHERE l.attrelid = p_live AND l.attname = a.attname AND l.attnum > 0
                          AND NOT l.attisdropped)
  LOOP
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s x WHERE (%s) AND x.%I IS NOT NULL)', p_archive, p_where, v_col)
      INTO v_has USING p_ids, p_archived_at;
    IF v_has THEN
      v_lost := v_lost || format('%s.%I', p_archive, v_col);
    END IF;
  END LOOP;
  IF cardinality(v_lost) > 0 THEN
    RAISE EXCEPTION 'cannot restore: % hold values that % has no column for any more',
      array_to_string(v_lost, ', '), p_live
      USING ERRCODE = 'TL002',
            HINT = 'nothing was restored; add the column(s) back to the live table, or copy the values elsewhere and set them to NULL in the archive';
  END IF;
  EXECUTE format(
    'WITH moved AS (DELETE FROM %s x WHERE %s RETURNING %s) INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM moved',
    p_archive, p_where, v_cols, p_live, v_cols, v_cols)
  USING p_ids, p_archived_at;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  RETURN v_n;
END
$$;
