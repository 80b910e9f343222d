-- Raises, naming every reason and what to run, when archival (p_action 'archival') or a restore
-- ('restore') must not move a row now (tasker_lifecycle_archive_refusals); returns when it may.
-- The SQLSTATE is the first reason's: TL001 (an archive column must be changed by hand), TL003 (run
-- `tasker-lifecycle migrate`), TL004 (a foreign key archival relies on). archive_completed_tasks
-- calls it before every batch, real or dry, and restore_archived_task before it moves anything:
-- neither ever changes a table.
CREATE OR REPLACE FUNCTION tasker_lifecycle_refuse_archive_moves(p_action text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_state text;
  v_reasons text;
BEGIN
  IF p_action IS NULL OR p_action NOT IN ('archival', 'restore') THEN
    RAISE EXCEPTION 'p_action must be archival or restore, got %', coalesce(quote_literal(p_action), 'NULL')
      USING ERRCODE = '22023';
  END IF;
  SELECT min(r.sqlstate), string_agg(r.reason, '; ' ORDER BY r.sqlstate, r.n)
    INTO v_state, v_reasons
    FROM tasker_lifecycle_archive_refusals(p_action) WITH ORDINALITY AS r(sqlstate, reason, n);
  IF v_state IS NOT NULL THEN
    RAISE EXCEPTION '% refused, nothing was moved: %', p_action, v_reasons USING ERRCODE = v_state;
  END IF;
END
$$;
