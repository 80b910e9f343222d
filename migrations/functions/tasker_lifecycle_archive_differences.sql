-- What every archive table lacks against its live table, in tasker_lifecycle_archive_pairs' order:
-- one row per column to change (tasker_lifecycle_archive_drift: the change, or the problem that
-- keeps it from being made), and one row with a problem for a pair whose table is missing. No rows:
-- the archive tables take every column of the live tables as they are. Catalog reads only.
CREATE OR REPLACE FUNCTION tasker_lifecycle_archive_differences()
RETURNS TABLE (live_table text, archive_table text, column_name text, change text, problem text)
LANGUAGE sql STABLE AS $$
  SELECT p.live_table, p.archive_table, d.column_name, d.change,
         CASE WHEN to_regclass(p.live_table) IS NULL OR to_regclass(p.archive_table) IS NULL
                THEN format('table %s or %s is missing', p.live_table, p.archive_table)
              ELSE d.problem END
    FROM tasker_lifecycle_archive_pairs() WITH ORDINALITY AS p(live_table, archive_table, n)
    LEFT JOIN LATERAL tasker_lifecycle_archive_drift(to_regclass(p.live_table), to_regclass(p.archive_table))
           WITH ORDINALITY AS d(column_name, change, ddl, problem, m)
      ON to_regclass(p.live_table) IS NOT NULL AND to_regclass(p.archive_table) IS NOT NULL
   WHERE d.column_name IS NOT NULL
      OR to_regclass(p.live_table) IS NULL OR to_regclass(p.archive_table) IS NULL
   ORDER BY p.n, d.m
$$;
