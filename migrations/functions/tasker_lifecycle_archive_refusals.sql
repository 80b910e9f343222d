-- Why archival (p_action 'archival') or a restore (p_action 'restore') must not move a row now, one
-- row per reason, each naming what to run; no rows: it may. The SQLSTATE each is raised with
-- (tasker_lifecycle_refuse_archive_moves):
--   TL001  an archive column cannot take the live column's values as they are: change it by hand;
--   TL003  the archive tables differ from the live tables: `tasker-lifecycle migrate` brings them
--          up to date (archival and restore never change a table themselves);
--   TL004  a foreign key archival relies on is missing or not enforced
--          (tasker_lifecycle_archive_key_problems; archival only: a restore does not rely on them).
-- Catalog reads only, cheap enough for every batch and `status`.
CREATE OR REPLACE FUNCTION tasker_lifecycle_archive_refusals(p_action text)
RETURNS TABLE (sqlstate text, reason text)
-- plpgsql, so that the query's plan is kept for the session (a SQL function's is made at every call)
LANGUAGE plpgsql STABLE ROWS 5 AS $$
BEGIN
  RETURN QUERY
  WITH d AS (
    SELECT x.* FROM tasker_lifecycle_archive_differences()
                    WITH ORDINALITY AS x(live_table, archive_table, column_name, change, problem, n)
  )
  SELECT 'TL001',
         'the archive tables cannot take every column of the live tables as they are: '
         || string_agg(d.problem, '; ' ORDER BY d.n)
         || ' (change the archive column(s) by hand to a type that holds every live value)'
    FROM d WHERE d.problem IS NOT NULL
  HAVING count(*) > 0
  UNION ALL
  SELECT 'TL003',
         format('the archive tables differ from the live tables (%s): run `tasker-lifecycle migrate`, which brings them up to date',
                string_agg(format('%s.%I: %s', d.archive_table, d.column_name, d.change), ', ' ORDER BY d.n))
    FROM d WHERE d.problem IS NULL
  HAVING count(*) > 0
  UNION ALL
  SELECT 'TL004', format('the foreign key %s, which archival relies on, is %s', k.foreign_key, k.problem)
    FROM (SELECT * FROM tasker_lifecycle_archive_key_problems() WITH ORDINALITY AS k(foreign_key, problem, n)
           ORDER BY k.n) k
   WHERE p_action = 'archival';
END
$$;
