-- 0030: the archive tables follow the live tables, and archival passes over what it cannot lock.
--
-- The engine owns tasker_tasks and its child tables and may add columns or widen types at any
-- time (issue 8). 0005/0006 copied fixed column lists, so a column the engine added was dropped on
-- the way into the archive and came back NULL on restore. From here on:
--   * sync_archive_tables compares each live table with its archive table in the catalogs and
--     brings the archive table up to date: a missing column is added (existing archive rows get the
--     live column's default, as the engine's existing rows did), a widened type is widened, a NOT
--     NULL the live table no longer has is dropped. What it cannot do without changing or losing a
--     value (a live column named archived_at, a type that is not a widening of the archive's) is
--     refused with SQLSTATE TL001 and a message naming each table.column. `migrate` runs it, and
--     so does every archival batch and every restore, before it moves a row.
--   * archive_completed_tasks and restore_archived_task move rows with column lists read from the
--     catalog at the time of the move, `DELETE ... RETURNING *` into the archive table positionally,
--     so a column the move does not know about is an error, never a silent drop.
--   * restore refuses (SQLSTATE TL002) to put back a row whose value sits in an archive column the
--     live table no longer has, naming the column, rather than drop it.
--   * Batches lock every row they will delete with SKIP LOCKED (0005 waited for steps with plain FOR
--     UPDATE, so one idle-in-transaction session holding one old step timed out every batch down
--     to size 1 and failed every run). A task with any row held by another session is passed over
--     whole, counted in tasks_skipped, stays live and intact, and a later run picks it up.

-- Is a column of type p_from stored in a column of type p_to without changing any value?
-- (format_type spellings; conservative: anything not listed is "no")
CREATE FUNCTION tasker_lifecycle_type_widens(p_from text, p_to text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  v_numbers text[] := ARRAY['smallint', 'integer', 'bigint', 'numeric'];
  v_from text[];
  v_to text[];
BEGIN
  IF p_from = p_to THEN
    RETURN true;
  END IF;
  -- strings: a longer limit, or none
  IF p_to IN ('text', 'character varying')
     AND (p_from IN ('text', 'character varying') OR p_from ~ '^character varying\(\d+\)$') THEN
    RETURN true;
  END IF;
  v_from := regexp_match(p_from, '^character varying\((\d+)\)$');
  v_to := regexp_match(p_to, '^character varying\((\d+)\)$');
  IF v_from IS NOT NULL AND v_to IS NOT NULL THEN
    RETURN v_to[1]::integer >= v_from[1]::integer;
  END IF;
  -- integers to a wider integer or to numeric; any numeric to unconstrained numeric
  IF p_from = ANY (v_numbers) AND p_to = ANY (v_numbers) THEN
    RETURN array_position(v_numbers, p_to) > array_position(v_numbers, p_from);
  END IF;
  IF p_from ~ '^numeric\(' AND p_to = 'numeric' THEN
    RETURN true;
  END IF;
  IF p_from = 'real' AND p_to = 'double precision' THEN
    RETURN true;
  END IF;
  -- fractional seconds: timestamp(3) with time zone -> timestamp with time zone
  v_from := regexp_match(p_from, '^(timestamp|time)\(\d\)( with(out)? time zone)$');
  IF v_from IS NOT NULL AND p_to = v_from[1] || v_from[2] THEN
    RETURN true;
  END IF;
  RETURN false;
END
$$;

-- The live tables and their archive tables, children after parents.
CREATE FUNCTION tasker_lifecycle_archive_pairs()
RETURNS TABLE (live_table text, archive_table text)
LANGUAGE sql IMMUTABLE AS $$
  VALUES ('tasker_tasks', 'tasker_tasks_archive'),
         ('tasker_task_transitions', 'tasker_task_transitions_archive'),
         ('tasker_tasks_dlq', 'tasker_tasks_dlq_archive'),
         ('tasker_workflow_steps', 'tasker_workflow_steps_archive'),
         ('tasker_workflow_step_edges', 'tasker_workflow_step_edges_archive'),
         ('tasker_workflow_step_transitions', 'tasker_workflow_step_transitions_archive')
$$;

-- What one archive table lacks against its live table: one row per column to change, with the
-- change (add, widen, drop not null) or the reason it cannot be made (problem). Catalog reads only.
CREATE FUNCTION tasker_lifecycle_archive_drift(p_live regclass, p_archive regclass)
RETURNS TABLE (column_name text, change text, ddl text, problem text)
LANGUAGE sql STABLE AS $$
  WITH live AS (
    SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
           CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END AS default_expr
      FROM pg_attribute a
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = p_live AND a.attnum > 0 AND NOT a.attisdropped
  ),
  archive AS (
    SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull
      FROM pg_attribute a
     WHERE a.attrelid = p_archive AND a.attnum > 0 AND NOT a.attisdropped
  )
  SELECT l.name,
         CASE WHEN ar.name IS NULL THEN 'add ' || l.type
              WHEN ar.type <> l.type THEN 'widen ' || ar.type || ' to ' || l.type
              ELSE 'drop not null' END,
         CASE WHEN ar.name IS NULL
                THEN format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS %I %s', p_archive, l.name, l.type)
                     || coalesce(' DEFAULT ' || l.default_expr, '')
              WHEN ar.type <> l.type
                THEN format('ALTER TABLE %s ALTER COLUMN %I TYPE %s', p_archive, l.name, l.type)
              ELSE format('ALTER TABLE %s ALTER COLUMN %I DROP NOT NULL', p_archive, l.name) END,
         CASE WHEN l.name = 'archived_at'
                THEN format('%s.archived_at: the archive table %s uses that name for the time of archival',
                            p_live, p_archive)
              WHEN ar.name IS NOT NULL AND ar.type <> l.type
                   AND NOT tasker_lifecycle_type_widens(ar.type, l.type)
                THEN format('%s.%I is %s but %s.%I is %s, and the archive column cannot be widened to it without changing values',
                            p_live, l.name, l.type, p_archive, l.name, ar.type) END
    FROM live l
    LEFT JOIN archive ar ON ar.name = l.name
   WHERE l.name = 'archived_at'
      OR ar.name IS NULL
      -- an archive column already wider than the live one stores every live value as it is
      OR (ar.type <> l.type AND NOT tasker_lifecycle_type_widens(l.type, ar.type))
      OR (ar.attnotnull AND NOT l.attnotnull)
  UNION ALL
  -- a column the live table no longer has: the archive keeps it (old rows' values), but new rows
  -- have nothing for it
  SELECT ar.name, 'drop not null', format('ALTER TABLE %s ALTER COLUMN %I DROP NOT NULL', p_archive, ar.name), NULL
    FROM archive ar
   WHERE ar.attnotnull AND ar.name <> 'archived_at'
     AND NOT EXISTS (SELECT 1 FROM live l WHERE l.name = ar.name)
$$;

-- Brings every archive table up to date with its live table (see the top of this file); with
-- p_apply false, only reports what it would change. Returns the changes; raises SQLSTATE TL001,
-- naming every column concerned, when one cannot be made. Takes an ACCESS EXCLUSIVE lock on an
-- archive table only when that table has something to change, and then looks again under the lock
-- (another session may have just made the change).
CREATE FUNCTION sync_archive_tables(p_apply boolean DEFAULT true)
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

-- Quoted column names of a table in column order (generated columns left out with p_insertable).
CREATE FUNCTION tasker_lifecycle_columns(p_table regclass, p_insertable boolean)
RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
    FROM pg_attribute a
   WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped
     AND (NOT p_insertable OR a.attgenerated = '')
$$;

-- Moves the rows of p_live matching p_where (a fixed predicate on alias x over $1, the task or step
-- ids) to p_archive, stamped p_archived_at; returns how many. RETURNING * goes into the live
-- table's columns positionally: a column added since the catalog was read makes the statement fail
-- instead of being dropped.
CREATE FUNCTION tasker_lifecycle_archive_rows(
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

-- Moves the rows of p_archive matching p_where back to p_live, every column the live table has
-- (generated ones are computed again); refuses (TL002) when a row has a value in a column the live
-- table no longer has, naming it.
CREATE FUNCTION tasker_lifecycle_restore_rows(
  p_archive regclass, p_live regclass, p_where text, p_ids uuid[]
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
      INTO v_has USING p_ids;
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
  USING p_ids;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  RETURN v_n;
END
$$;

-- One archival batch: 0005's function (same arguments, same result) with the changes at the top of
-- this file. Steps 1-3 are unchanged; step 4 now locks the whole graph, skipping what is held.
CREATE OR REPLACE FUNCTION archive_completed_tasks(
  p_retention_days integer DEFAULT 30,
  p_batch_size integer DEFAULT 1000,
  p_dry_run boolean DEFAULT true,
  p_now timestamptz DEFAULT now(),
  p_namespace varchar DEFAULT NULL,
  p_task_name varchar DEFAULT NULL,
  p_finished_before timestamptz DEFAULT NULL,
  p_archive_completed boolean DEFAULT NULL,
  p_archive_failed boolean DEFAULT NULL,
  p_archive_cancelled boolean DEFAULT NULL,
  p_archive_resolved_manually boolean DEFAULT NULL,
  p_archive_dlq_resolved boolean DEFAULT NULL,
  p_after_state_entered_at timestamptz DEFAULT NULL,
  p_after_task_uuid uuid DEFAULT NULL
) RETURNS TABLE (
  tasks_archived integer,
  steps_archived integer,
  -- task transitions, as upstream; step transitions have their own column
  transitions_archived integer,
  execution_time_ms integer,
  edges_archived integer,
  step_transitions_archived integer,
  dlq_entries_archived integer,
  -- candidates not moved: held by another session, or no longer eligible once locked
  tasks_skipped integer,
  more_candidates boolean,
  last_state_entered_at timestamptz,
  last_task_uuid uuid,
  cutoff timestamptz,
  task_uuids uuid[]
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  v_started timestamptz := clock_timestamp();
  v_cutoff timestamptz;
  v_states varchar[];
  v_templates uuid[];
  v_fetch integer;
  v_after_at timestamptz := coalesce(p_after_state_entered_at, '-infinity');
  v_after_uuid uuid := coalesce(p_after_task_uuid, '00000000-0000-0000-0000-000000000000');
  v_candidates uuid[];
  v_candidate_at timestamptz[];
  v_locked uuid[];
  v_locked_at timestamptz[];
  v_ids uuid[];
  v_step_ids uuid[];
  v_n integer;
  v_completed boolean;
  v_failed boolean;
  v_cancelled boolean;
  v_resolved_manually boolean;
  v_dlq_resolved boolean;
  v_held uuid[];
BEGIN
  -- Policies not given take the configured ones (tasker_lifecycle_settings, written by every
  -- archival run from [archive.policies]), so upstream's three-argument call follows the
  -- configuration; the constants cover a settings row that was deleted.
  SELECT coalesce(p_archive_completed, s.archive_completed, true),
         coalesce(p_archive_failed, s.archive_failed, true),
         coalesce(p_archive_cancelled, s.archive_cancelled, false),
         coalesce(p_archive_resolved_manually, s.archive_resolved_manually, true),
         coalesce(p_archive_dlq_resolved, s.archive_dlq_resolved, true)
    INTO v_completed, v_failed, v_cancelled, v_resolved_manually, v_dlq_resolved
    FROM (SELECT 1) one LEFT JOIN tasker_lifecycle_settings s ON s.singleton;

  IF p_now IS NULL THEN
    RAISE EXCEPTION 'p_now must be a timestamp, got NULL' USING ERRCODE = '22023';
  END IF;
  IF p_retention_days IS NULL OR p_retention_days < 0 THEN
    RAISE EXCEPTION 'p_retention_days must be 0 or more, got %', p_retention_days USING ERRCODE = '22023';
  END IF;
  IF p_batch_size IS NULL OR p_batch_size < 1 OR p_batch_size > 100000 THEN
    RAISE EXCEPTION 'p_batch_size must be from 1 to 100000, got %', p_batch_size USING ERRCODE = '22023';
  END IF;
  IF (p_after_state_entered_at IS NULL) <> (p_after_task_uuid IS NULL) THEN
    RAISE EXCEPTION 'p_after_state_entered_at and p_after_task_uuid go together, got % and %',
      p_after_state_entered_at, p_after_task_uuid USING ERRCODE = '22023';
  END IF;

  -- The archive tables take every column of the live tables before a row moves (a dry run only
  -- checks: it refuses what the real run would refuse, and changes nothing).
  PERFORM sync_archive_tables(NOT p_dry_run);

  -- 24-hour days, so the cut-off does not move with the session's time zone and DST
  v_cutoff := p_now - make_interval(hours => 24 * p_retention_days);
  IF p_finished_before IS NOT NULL AND p_finished_before < v_cutoff THEN
    v_cutoff := p_finished_before;
  END IF;
  v_states := array_remove(ARRAY[
    CASE WHEN v_completed THEN 'complete' END,
    CASE WHEN v_failed THEN 'error' END,
    CASE WHEN v_cancelled THEN 'cancelled' END,
    CASE WHEN v_resolved_manually THEN 'resolved_manually' END]::varchar[], NULL);

  IF p_namespace IS NOT NULL OR p_task_name IS NOT NULL THEN
    -- tasker_task_namespaces (name unique), tasker_named_tasks (task_namespace_uuid, name, version) unique
    SELECT array_agg(nt.named_task_uuid) INTO v_templates
      FROM tasker_named_tasks nt
      JOIN tasker_task_namespaces ns ON ns.task_namespace_uuid = nt.task_namespace_uuid
     WHERE (p_namespace IS NULL OR ns.name = p_namespace)
       AND (p_task_name IS NULL OR nt.name = p_task_name);
    IF v_templates IS NULL THEN
      RAISE EXCEPTION 'no task template matches namespace % and name %',
        coalesce(quote_literal(p_namespace), '(any)'), coalesce(quote_literal(p_task_name), '(any)')
        USING ERRCODE = 'P0002';
    END IF;
  END IF;

  cutoff := v_cutoff;
  tasks_archived := 0; steps_archived := 0; transitions_archived := 0; edges_archived := 0;
  step_transitions_archived := 0; dlq_entries_archived := 0; tasks_skipped := 0;
  more_candidates := false; task_uuids := ARRAY[]::uuid[];
  last_state_entered_at := p_after_state_entered_at; last_task_uuid := p_after_task_uuid;

  IF cardinality(v_states) = 0 THEN
    execution_time_ms := floor(extract(epoch FROM clock_timestamp() - v_started) * 1000)::integer;
    RETURN NEXT;
    RETURN;
  END IF;

  -- 1. candidates (idx_task_transitions_finished; one bounded range scan per allowed state)
  v_fetch := 2 * p_batch_size;
  SELECT array_agg(c.task_uuid ORDER BY c.created_at, c.task_uuid),
         array_agg(c.created_at ORDER BY c.created_at, c.task_uuid)
    INTO v_candidates, v_candidate_at
    FROM (
      SELECT f.task_uuid, f.created_at
        FROM unnest(v_states) AS s(state)
       CROSS JOIN LATERAL (
         SELECT tr.task_uuid, tr.created_at
           FROM tasker_task_transitions tr
          WHERE tr.most_recent = true
            AND tr.to_state IN ('complete', 'error', 'cancelled', 'resolved_manually')
            AND tr.to_state = s.state
            AND tr.created_at < v_cutoff
            AND (tr.created_at, tr.task_uuid) > (v_after_at, v_after_uuid)
            AND NOT EXISTS (SELECT 1 FROM tasker_tasks_dlq d
                             WHERE d.task_uuid = tr.task_uuid AND d.resolution_status = 'pending')
            AND (v_dlq_resolved OR NOT EXISTS (SELECT 1 FROM tasker_tasks_dlq d
                                                        WHERE d.task_uuid = tr.task_uuid))
            AND (v_templates IS NULL OR EXISTS (SELECT 1 FROM tasker_tasks t
                                                 WHERE t.task_uuid = tr.task_uuid
                                                   AND t.named_task_uuid = ANY (v_templates)))
          ORDER BY tr.created_at, tr.task_uuid
          LIMIT v_fetch
       ) f
       ORDER BY f.created_at, f.task_uuid
       LIMIT v_fetch
    ) c;

  IF v_candidates IS NULL THEN
    execution_time_ms := floor(extract(epoch FROM clock_timestamp() - v_started) * 1000)::integer;
    RETURN NEXT;
    RETURN;
  END IF;

  -- 2. lock the first p_batch_size candidates nobody else holds
  --    (tasker_tasks_pkey, idx_task_transitions_uuid_most_recent)
  SELECT array_agg(l.task_uuid ORDER BY l.created_at, l.task_uuid),
         array_agg(l.created_at ORDER BY l.created_at, l.task_uuid)
    INTO v_locked, v_locked_at
    FROM (
      SELECT tr.task_uuid, tr.created_at
        FROM tasker_task_transitions tr
        JOIN tasker_tasks t ON t.task_uuid = tr.task_uuid
       WHERE tr.task_uuid = ANY (v_candidates)
         AND tr.most_recent = true
         AND tr.to_state = ANY (v_states)
         AND tr.created_at < v_cutoff
       ORDER BY tr.created_at, tr.task_uuid
       LIMIT p_batch_size
         FOR UPDATE OF tr, t SKIP LOCKED
    ) l;

  -- Where the next batch starts: after the last task locked when the batch is full (candidates
  -- after it were not examined), else after the last candidate (every candidate was examined;
  -- the ones skipped are held by another archiver or no longer eligible).
  v_n := coalesce(cardinality(v_locked), 0);
  IF v_n = p_batch_size THEN
    last_state_entered_at := v_locked_at[v_n];
    last_task_uuid := v_locked[v_n];
  ELSE
    last_state_entered_at := v_candidate_at[cardinality(v_candidates)];
    last_task_uuid := v_candidates[cardinality(v_candidates)];
  END IF;
  more_candidates := cardinality(v_candidates) = v_fetch
                     OR last_task_uuid IS DISTINCT FROM v_candidates[cardinality(v_candidates)];

  -- 3. re-check the locked tasks in this statement's fresh snapshot
  --    (idx_task_transitions_uuid_most_recent, idx_dlq_unique_pending_task, idx_dlq_task_lookup)
  SELECT coalesce(array_agg(tr.task_uuid ORDER BY tr.created_at, tr.task_uuid), ARRAY[]::uuid[]) INTO v_ids
    FROM tasker_task_transitions tr
   WHERE tr.task_uuid = ANY (coalesce(v_locked, ARRAY[]::uuid[]))
     AND tr.most_recent = true
     AND tr.to_state = ANY (v_states)
     AND tr.created_at < v_cutoff
     AND NOT EXISTS (SELECT 1 FROM tasker_tasks_dlq d
                      WHERE d.task_uuid = tr.task_uuid AND d.resolution_status = 'pending')
     AND (v_dlq_resolved OR NOT EXISTS (SELECT 1 FROM tasker_tasks_dlq d WHERE d.task_uuid = tr.task_uuid));

  -- 4. lock the rest of each graph, SKIP LOCKED: every row the move will delete. Per table, the
  --    rows of each task are counted twice, once as they are and once as locked; a task with a row
  --    another session holds is passed over whole (it stays live, untouched, for a later run). Our
  --    own locks on the task rows keep new children out until we commit.
  v_held := ARRAY[]::uuid[];
  IF cardinality(v_ids) > 0 THEN
    -- task transitions (idx_task_transitions_uuid_sort_key)
    SELECT v_held || coalesce(array_agg(a.task_uuid), ARRAY[]::uuid[]) INTO v_held
      FROM (SELECT tr.task_uuid, count(*) AS n FROM tasker_task_transitions tr
             WHERE tr.task_uuid = ANY (v_ids) GROUP BY 1) a
      LEFT JOIN (SELECT x.task_uuid, count(*) AS n
                   FROM (SELECT tr.task_uuid FROM tasker_task_transitions tr
                          WHERE tr.task_uuid = ANY (v_ids) FOR UPDATE SKIP LOCKED) x GROUP BY 1) l
             ON l.task_uuid = a.task_uuid
     WHERE l.n IS DISTINCT FROM a.n;
    -- resolved DLQ entries (idx_dlq_task_lookup)
    SELECT v_held || coalesce(array_agg(a.task_uuid), ARRAY[]::uuid[]) INTO v_held
      FROM (SELECT d.task_uuid, count(*) AS n FROM tasker_tasks_dlq d
             WHERE d.task_uuid = ANY (v_ids) AND d.resolution_status <> 'pending' GROUP BY 1) a
      LEFT JOIN (SELECT x.task_uuid, count(*) AS n
                   FROM (SELECT d.task_uuid FROM tasker_tasks_dlq d
                          WHERE d.task_uuid = ANY (v_ids) AND d.resolution_status <> 'pending'
                            FOR UPDATE SKIP LOCKED) x GROUP BY 1) l
             ON l.task_uuid = a.task_uuid
     WHERE l.n IS DISTINCT FROM a.n;
    -- steps (idx_workflow_steps_task_uuid)
    SELECT v_held || coalesce(array_agg(a.task_uuid), ARRAY[]::uuid[]) INTO v_held
      FROM (SELECT ws.task_uuid, count(*) AS n FROM tasker_workflow_steps ws
             WHERE ws.task_uuid = ANY (v_ids) GROUP BY 1) a
      LEFT JOIN (SELECT x.task_uuid, count(*) AS n
                   FROM (SELECT ws.task_uuid FROM tasker_workflow_steps ws
                          WHERE ws.task_uuid = ANY (v_ids) FOR UPDATE SKIP LOCKED) x GROUP BY 1) l
             ON l.task_uuid = a.task_uuid
     WHERE l.n IS DISTINCT FROM a.n;
    -- step transitions (idx_workflow_steps_task_uuid, idx_step_transitions_uuid_sort_key)
    SELECT v_held || coalesce(array_agg(a.task_uuid), ARRAY[]::uuid[]) INTO v_held
      FROM (SELECT ws.task_uuid, count(*) AS n
              FROM tasker_workflow_steps ws
              JOIN tasker_workflow_step_transitions st ON st.workflow_step_uuid = ws.workflow_step_uuid
             WHERE ws.task_uuid = ANY (v_ids) GROUP BY 1) a
      LEFT JOIN (SELECT x.task_uuid, count(*) AS n
                   FROM (SELECT ws.task_uuid
                           FROM tasker_workflow_steps ws
                           JOIN tasker_workflow_step_transitions st ON st.workflow_step_uuid = ws.workflow_step_uuid
                          WHERE ws.task_uuid = ANY (v_ids) FOR UPDATE OF st SKIP LOCKED) x GROUP BY 1) l
             ON l.task_uuid = a.task_uuid
     WHERE l.n IS DISTINCT FROM a.n;
    -- edges, by either end (idx_step_edges_from_step_uuid, idx_step_edges_to_step_uuid)
    SELECT v_held || coalesce(array_agg(a.task_uuid), ARRAY[]::uuid[]) INTO v_held
      FROM (SELECT ws.task_uuid, count(*) AS n
              FROM tasker_workflow_steps ws
              JOIN tasker_workflow_step_edges e ON e.from_step_uuid = ws.workflow_step_uuid
             WHERE ws.task_uuid = ANY (v_ids) GROUP BY 1) a
      LEFT JOIN (SELECT x.task_uuid, count(*) AS n
                   FROM (SELECT ws.task_uuid
                           FROM tasker_workflow_steps ws
                           JOIN tasker_workflow_step_edges e ON e.from_step_uuid = ws.workflow_step_uuid
                          WHERE ws.task_uuid = ANY (v_ids) FOR UPDATE OF e SKIP LOCKED) x GROUP BY 1) l
             ON l.task_uuid = a.task_uuid
     WHERE l.n IS DISTINCT FROM a.n;
    SELECT v_held || coalesce(array_agg(a.task_uuid), ARRAY[]::uuid[]) INTO v_held
      FROM (SELECT ws.task_uuid, count(*) AS n
              FROM tasker_workflow_steps ws
              JOIN tasker_workflow_step_edges e ON e.to_step_uuid = ws.workflow_step_uuid
             WHERE ws.task_uuid = ANY (v_ids) GROUP BY 1) a
      LEFT JOIN (SELECT x.task_uuid, count(*) AS n
                   FROM (SELECT ws.task_uuid
                           FROM tasker_workflow_steps ws
                           JOIN tasker_workflow_step_edges e ON e.to_step_uuid = ws.workflow_step_uuid
                          WHERE ws.task_uuid = ANY (v_ids) FOR UPDATE OF e SKIP LOCKED) x GROUP BY 1) l
             ON l.task_uuid = a.task_uuid
     WHERE l.n IS DISTINCT FROM a.n;

    IF cardinality(v_held) > 0 THEN
      SELECT coalesce(array_agg(i.id ORDER BY i.n), ARRAY[]::uuid[]) INTO v_ids
        FROM unnest(v_ids) WITH ORDINALITY AS i(id, n)
       WHERE i.id <> ALL (v_held);
    END IF;
  END IF;

  -- skipped: candidates up to the cursor that are not moved (held elsewhere, or no longer eligible)
  tasks_skipped := array_position(v_candidates, last_task_uuid) - cardinality(v_ids);
  task_uuids := v_ids;

  IF cardinality(v_ids) > 0 THEN
    -- the steps' ids, for the tables keyed by step (all locked above)
    SELECT coalesce(array_agg(ws.workflow_step_uuid), ARRAY[]::uuid[]) INTO v_step_ids
      FROM tasker_workflow_steps ws WHERE ws.task_uuid = ANY (v_ids);

    IF p_dry_run THEN
      -- 5 (dry run): the same predicates as the moves below, counted
      SELECT count(*) INTO step_transitions_archived FROM tasker_workflow_step_transitions
       WHERE workflow_step_uuid = ANY (v_step_ids);
      SELECT count(*) INTO edges_archived FROM tasker_workflow_step_edges
       WHERE from_step_uuid = ANY (v_step_ids) OR to_step_uuid = ANY (v_step_ids);
      SELECT count(*) INTO steps_archived FROM tasker_workflow_steps WHERE task_uuid = ANY (v_ids);
      SELECT count(*) INTO transitions_archived FROM tasker_task_transitions WHERE task_uuid = ANY (v_ids);
      SELECT count(*) INTO dlq_entries_archived FROM tasker_tasks_dlq
       WHERE task_uuid = ANY (v_ids) AND resolution_status <> 'pending';
      SELECT count(*) INTO tasks_archived FROM tasker_tasks WHERE task_uuid = ANY (v_ids);
    ELSE
      -- 5. move, children first, every column (tasker_lifecycle_archive_rows)
      step_transitions_archived := tasker_lifecycle_archive_rows(
        'tasker_workflow_step_transitions', 'tasker_workflow_step_transitions_archive',
        'x.workflow_step_uuid = ANY ($1)', v_step_ids, p_now);
      edges_archived := tasker_lifecycle_archive_rows(
        'tasker_workflow_step_edges', 'tasker_workflow_step_edges_archive',
        'x.from_step_uuid = ANY ($1) OR x.to_step_uuid = ANY ($1)', v_step_ids, p_now);
      steps_archived := tasker_lifecycle_archive_rows(
        'tasker_workflow_steps', 'tasker_workflow_steps_archive', 'x.task_uuid = ANY ($1)', v_ids, p_now);
      transitions_archived := tasker_lifecycle_archive_rows(
        'tasker_task_transitions', 'tasker_task_transitions_archive', 'x.task_uuid = ANY ($1)', v_ids, p_now);
      dlq_entries_archived := tasker_lifecycle_archive_rows(
        'tasker_tasks_dlq', 'tasker_tasks_dlq_archive',
        $w$x.task_uuid = ANY ($1) AND x.resolution_status <> 'pending'$w$, v_ids, p_now);
      tasks_archived := tasker_lifecycle_archive_rows(
        'tasker_tasks', 'tasker_tasks_archive', 'x.task_uuid = ANY ($1)', v_ids, p_now);
    END IF;
  END IF;

  execution_time_ms := floor(extract(epoch FROM clock_timestamp() - v_started) * 1000)::integer;
  RETURN NEXT;
END
$$;

-- Restore: 0006's function (same argument, same result), every column, after the archive tables
-- were brought up to date (so a column the engine added since archival comes back with its
-- default, as it did for the live rows).
CREATE OR REPLACE FUNCTION restore_archived_task(p_task_uuid uuid)
RETURNS TABLE (
  tasks_restored integer,
  steps_restored integer,
  transitions_restored integer,
  edges_restored integer,
  step_transitions_restored integer,
  dlq_entries_restored integer
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  v_task uuid[] := ARRAY[p_task_uuid];
  v_step_ids uuid[];
  v_state varchar;
BEGIN
  PERFORM sync_archive_tables(true);

  tasks_restored := tasker_lifecycle_restore_rows(
    'tasker_tasks_archive', 'tasker_tasks', 'x.task_uuid = ANY ($1)', v_task);

  IF tasks_restored = 0 THEN
    SELECT tr.to_state INTO v_state FROM tasker_task_transitions tr
     WHERE tr.task_uuid = p_task_uuid AND tr.most_recent = true;
    IF EXISTS (SELECT 1 FROM tasker_tasks t WHERE t.task_uuid = p_task_uuid) THEN
      RAISE EXCEPTION 'task % is not archived: it is in the live tables (current state %)',
        p_task_uuid, coalesce(v_state, 'none') USING ERRCODE = 'P0002';
    END IF;
    RAISE EXCEPTION 'task % is not archived: no task, live or archived, has this uuid', p_task_uuid
      USING ERRCODE = 'P0002';
  END IF;

  transitions_restored := tasker_lifecycle_restore_rows(
    'tasker_task_transitions_archive', 'tasker_task_transitions', 'x.task_uuid = ANY ($1)', v_task);
  dlq_entries_restored := tasker_lifecycle_restore_rows(
    'tasker_tasks_dlq_archive', 'tasker_tasks_dlq', 'x.task_uuid = ANY ($1)', v_task);

  -- idx_steps_archive_task_uuid
  SELECT coalesce(array_agg(s.workflow_step_uuid), ARRAY[]::uuid[]) INTO v_step_ids
    FROM tasker_workflow_steps_archive s WHERE s.task_uuid = p_task_uuid;
  steps_restored := tasker_lifecycle_restore_rows(
    'tasker_workflow_steps_archive', 'tasker_workflow_steps', 'x.task_uuid = ANY ($1)', v_task);
  edges_restored := tasker_lifecycle_restore_rows(
    'tasker_workflow_step_edges_archive', 'tasker_workflow_step_edges',
    'x.from_step_uuid = ANY ($1) OR x.to_step_uuid = ANY ($1)', v_step_ids);
  step_transitions_restored := tasker_lifecycle_restore_rows(
    'tasker_workflow_step_transitions_archive', 'tasker_workflow_step_transitions',
    'x.workflow_step_uuid = ANY ($1)', v_step_ids);

  RETURN NEXT;
END
$$;
