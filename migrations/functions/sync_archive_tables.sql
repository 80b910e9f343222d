-- Brings every archive table up to date with its live table (see the top of this file); with
-- p_apply false, only reports what it would change. Returns the changes; raises SQLSTATE TL001,
-- naming every column concerned, when one cannot be made. Takes an ACCESS EXCLUSIVE lock on an
-- archive table only when that table has something to change, and then looks again under the lock
-- (another session may have just made the change).
CREATE OR REPLACE FUNCTION sync_archive_tables(p_apply boolean DEFAULT true)
RETURNS TABLE (archive_table text, column_name text, change text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  v_pair record;
  v_drift record;
  v_round integer;
  v_changed boolean;
  v_problems text[] := ARRAY[]::text[];
BEGIN
  FOR v_pair IN SELECT p.live_table, p.archive_table FROM tasker_lifecycle_archive_pairs() p LOOP
    IF to_regclass(v_pair.live_table) IS NULL OR to_regclass(v_pair.archive_table) IS NULL THEN
      v_problems := v_problems || format('table %s or %s is missing', v_pair.live_table, v_pair.archive_table);
      CONTINUE;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM tasker_lifecycle_archive_drift(v_pair.live_table::regclass,
                                                               v_pair.archive_table::regclass)) THEN
      CONTINUE;
    END IF;
    IF p_apply THEN
      EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', v_pair.archive_table);
    END IF;
    -- a column can need two changes (widen, then drop not null): look again after each round
    FOR v_round IN 1..3 LOOP
      v_changed := false;
      FOR v_drift IN SELECT * FROM tasker_lifecycle_archive_drift(v_pair.live_table::regclass,
                                                                   v_pair.archive_table::regclass) LOOP
        IF v_drift.problem IS NOT NULL THEN
          IF v_round = 1 THEN
            v_problems := v_problems || v_drift.problem;
          END IF;
          CONTINUE;
        END IF;
        IF p_apply THEN
          EXECUTE v_drift.ddl;
          v_changed := true;
          IF v_drift.change LIKE 'add %' THEN
            -- the default filled the archived rows; new rows always bring their own value
            EXECUTE format('ALTER TABLE %I ALTER COLUMN %I DROP DEFAULT', v_pair.archive_table, v_drift.column_name);
          END IF;
        END IF;
        archive_table := v_pair.archive_table;
        column_name := v_drift.column_name;
        change := v_drift.change;
        RETURN NEXT;
      END LOOP;
      EXIT WHEN NOT v_changed;
    END LOOP;
  END LOOP;
  IF cardinality(v_problems) > 0 THEN
    RAISE EXCEPTION 'the archive tables cannot take every column of the live tables as they are: %',
      array_to_string(v_problems, '; ')
      USING ERRCODE = 'TL001',
            HINT = 'nothing was archived or restored; change the archive column(s) by hand to a type that holds every live value, then run again';
  END IF;
END
$$;
