-- Brings one archive table up to date with its live table, for `migrate` only
-- (src/install/archive-tables.ts; archival and restore never change a table, they refuse:
-- tasker_lifecycle_refuse_archive_moves). Each column tasker_lifecycle_archive_drift lists is added
-- (archived rows get the live column's default, as the engine's rows did; the default is then
-- dropped, since moved rows bring their own value), widened, or has NOT NULL dropped. A change that
-- rewrites the table or rebuilds an index (tasker_lifecycle_archive_change_rewrites) is made only
-- when the table has at most p_max_rewrite_rows rows (NULL: whatever its size); otherwise it is
-- returned with applied false, with the statement that makes it, and the table keeps its drift.
-- Changes that do not rewrite are made whatever the size. With p_apply false nothing is changed:
-- the changes are listed as they would be made.
--
-- Takes ACCESS EXCLUSIVE on the archive table, under the caller's lock_timeout, only when the table
-- has something to change, then looks again under the lock (another migrate may have just made
-- the change). A column can need two changes (widen, then drop not null): it looks again after
-- each round. Raises SQLSTATE TL001, naming each column, when a change cannot be made without
-- changing or losing a value; the caller's transaction then rolls back whatever this call did.
CREATE OR REPLACE FUNCTION tasker_lifecycle_follow_live_table(
  p_live regclass, p_archive regclass, p_apply boolean, p_max_rewrite_rows bigint
) RETURNS TABLE (
  column_name text,
  change text,
  -- what makes the change, for an operator to run by hand
  statement text,
  rewrites boolean,
  -- counted up to p_max_rewrite_rows + 1, only for a change that rewrites; NULL otherwise
  archive_rows bigint,
  applied boolean
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  v_drift record;
  v_round integer;
  v_changed boolean;
  v_rows bigint;
  v_left text[] := ARRAY[]::text[];
  v_problems text[] := ARRAY[]::text[];
  v_drop_default text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM tasker_lifecycle_archive_drift(p_live, p_archive)) THEN
    RETURN;
  END IF;
  IF p_apply THEN
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', p_archive);
  END IF;
  FOR v_round IN 1..3 LOOP
    v_changed := false;
    FOR v_drift IN SELECT * FROM tasker_lifecycle_archive_drift(p_live, p_archive) LOOP
      IF v_drift.problem IS NOT NULL THEN
        IF v_round = 1 THEN
          v_problems := v_problems || v_drift.problem;
        END IF;
        CONTINUE;
      END IF;
      IF v_drift.column_name = ANY (v_left) THEN
        CONTINUE; -- left for later in an earlier round
      END IF;
      v_drop_default := CASE WHEN v_drift.change LIKE 'add %'
                             THEN format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', p_archive, v_drift.column_name) END;
      column_name := v_drift.column_name;
      change := v_drift.change;
      statement := v_drift.ddl || coalesce('; ' || v_drop_default, '');
      rewrites := v_drift.change <> 'drop not null'
                  AND tasker_lifecycle_archive_change_rewrites(p_live, p_archive, v_drift.column_name);
      archive_rows := NULL;
      IF rewrites AND p_max_rewrite_rows IS NOT NULL THEN
        IF v_rows IS NULL THEN
          -- bounded: reads at most p_max_rewrite_rows + 1 rows, however large the table
          EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM %s LIMIT $1) x', p_archive)
            INTO v_rows USING p_max_rewrite_rows + 1;
        END IF;
        archive_rows := v_rows;
      END IF;
      applied := false;
      IF rewrites AND archive_rows > p_max_rewrite_rows THEN
        v_left := v_left || v_drift.column_name;
      ELSIF p_apply THEN
        EXECUTE v_drift.ddl;
        IF v_drop_default IS NOT NULL THEN
          EXECUTE v_drop_default;
        END IF;
        applied := true;
        v_changed := true;
      END IF;
      RETURN NEXT;
    END LOOP;
    EXIT WHEN NOT v_changed;
  END LOOP;
  IF cardinality(v_problems) > 0 THEN
    RAISE EXCEPTION 'the archive tables cannot take every column of the live tables as they are: %',
      array_to_string(v_problems, '; ')
      USING ERRCODE = 'TL001',
            HINT = 'change the archive column(s) by hand to a type that holds every live value, then run migrate again';
  END IF;
END
$$;
