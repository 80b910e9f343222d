-- The previous build's way to bring every archive table up to date with its live table, which its
-- archival batches and restores ran themselves (see the top of migrations/0030). This build runs
-- none of it there: only `migrate` changes the archive tables (tasker_lifecycle_follow_live_table,
-- a table at a time under a lock timeout, refusing rewrites of large tables), and archival and
-- restore refuse while the tables differ (tasker_lifecycle_refuse_archive_moves). Kept, as a thin
-- wrapper, for the previous build while a deploy replaces it (its archive_completed_tasks calls this
-- until this build's files are applied); drop it with a numbered migration in a later release.
-- With p_apply false, only reports what it would change. Raises SQLSTATE TL001, naming every
-- column concerned, when one cannot be made.
CREATE OR REPLACE FUNCTION sync_archive_tables(p_apply boolean DEFAULT true)
RETURNS TABLE (archive_table text, column_name text, change text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  v_pair record;
  v_change record;
  v_problems text[];
BEGIN
  SELECT array_agg(d.problem) INTO v_problems
    FROM tasker_lifecycle_archive_differences() d WHERE d.problem IS NOT NULL;
  IF v_problems IS NOT NULL THEN
    RAISE EXCEPTION 'the archive tables cannot take every column of the live tables as they are: %',
      array_to_string(v_problems, '; ')
      USING ERRCODE = 'TL001',
            HINT = 'nothing was archived or restored; change the archive column(s) by hand to a type that holds every live value, then run again';
  END IF;
  FOR v_pair IN SELECT p.live_table, p.archive_table FROM tasker_lifecycle_archive_pairs() p LOOP
    FOR v_change IN
      SELECT f.column_name, f.change
        FROM tasker_lifecycle_follow_live_table(v_pair.live_table::regclass, v_pair.archive_table::regclass,
                                                p_apply, NULL) f
    LOOP
      archive_table := v_pair.archive_table;
      column_name := v_change.column_name;
      change := v_change.change;
      RETURN NEXT;
    END LOOP;
  END LOOP;
END
$$;
