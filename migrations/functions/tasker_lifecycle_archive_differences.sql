-- What every archive table lacks against its live table, in tasker_lifecycle_archive_pairs' order:
-- one row per column to change (tasker_lifecycle_archive_drift: the change, or the problem that
-- keeps it from being made), and one row with a problem for a pair whose table is missing. No rows:
-- the archive tables take every column of the live tables as they are. Catalog reads only, a pair
-- at a time (each drift query planned for its two tables: index scans of pg_attribute, well under
-- a millisecond in all; one query joining every pair was estimated at a million rows and
-- JIT-compiled, 20 ms a call), since archive_completed_tasks calls it before every batch.
CREATE OR REPLACE FUNCTION tasker_lifecycle_archive_differences()
RETURNS TABLE (live_table text, archive_table text, column_name text, change text, problem text)
LANGUAGE plpgsql STABLE ROWS 10 AS $$
#variable_conflict use_column
DECLARE
  v_pair record;
BEGIN
  FOR v_pair IN SELECT p.live_table, p.archive_table FROM tasker_lifecycle_archive_pairs() p LOOP
    IF to_regclass(v_pair.live_table) IS NULL OR to_regclass(v_pair.archive_table) IS NULL THEN
      RETURN QUERY SELECT v_pair.live_table, v_pair.archive_table, NULL::text, NULL::text,
                          format('table %s or %s is missing', v_pair.live_table, v_pair.archive_table);
      CONTINUE;
    END IF;
    RETURN QUERY SELECT v_pair.live_table, v_pair.archive_table, d.column_name, d.change, d.problem
                   FROM tasker_lifecycle_archive_drift(to_regclass(v_pair.live_table),
                                                       to_regclass(v_pair.archive_table)) d;
  END LOOP;
END
$$;
