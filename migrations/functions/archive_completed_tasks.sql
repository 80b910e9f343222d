-- One archival batch: chooses, locks and moves (or, dry run, counts) whole finished task graphs.
--
-- A task is eligible when
--   * its current state is terminal and allowed: complete (p_archive_completed), error
--     (p_archive_failed), cancelled (p_archive_cancelled), resolved_manually
--     (p_archive_resolved_manually: an operator has closed it; it is as finished as a complete task,
--     and leaving it out, as upstream did, would keep such tasks live forever);
--   * it entered that state before the cut-off: p_now - p_retention_days, or p_finished_before when
--     that is earlier (it narrows the window, never widens it);
--   * it has no pending DLQ entry; and, when p_archive_dlq_resolved is false, no DLQ entry at all
--     (its resolved entries would have to stay live, and their foreign key keeps the task live);
--   * it matches p_namespace / p_task_name when given (template by name, any version);
--   * it is not held out of archival: no tasker_archive_holds row with held_until after p_now (an
--     operator restored it and holds it live for a while; tasker_archive_holds_pkey).
--
-- Steps, each one statement:
--   1. candidates: up to 2 x p_batch_size eligible tasks after the cursor (p_after_*), oldest state
--      entry first. idx_task_transitions_finished, one bounded range scan per allowed state;
--      idx_dlq_unique_pending_task and idx_dlq_task_lookup for the DLQ rules; tasker_tasks_pkey for a
--      template filter.
--   2. lock: the first p_batch_size candidates nobody else holds, FOR UPDATE OF the task row and its
--      current transition, SKIP LOCKED. Concurrent archivers take disjoint tasks and never wait for
--      each other; an engine transition in flight on a task makes us skip it; once we hold the
--      task row, nobody can add a step, transition or DLQ entry to it until we commit.
--      tasker_tasks_pkey, idx_task_transitions_uuid_most_recent.
--   3. re-check the locked tasks' DLQ entries in a fresh snapshot (a pending entry may have
--      committed between 1 and 2 without touching the rows 2 locked). idx_dlq_unique_pending_task,
--      idx_dlq_task_lookup. The current transitions need no re-check (see the comment in step 3).
--   4. the fast path (a real run): lock the steps FOR UPDATE NOWAIT and move the graphs without
--      locking the leaf rows first: none can be added meanwhile (adding one takes FOR KEY SHARE on
--      its task or step, which our locks block), and a leaf another session holds makes its DELETE
--      give up after lock_timeout = 1 ms. A step or leaf held elsewhere (SQLSTATE 55P03) rolls the
--      fast path's subtransaction back whole, and the batch takes the careful path:
--   4b. the careful path (a dry run always): lock every row each graph's move would delete, SKIP
--      LOCKED, and count; a task with a row another session holds is passed over whole (it stays
--      live and intact, counted in tasks_skipped, for a later run). locked_row_by_row says so.
--   5. move (or, dry run, count with the exact predicates of the move) children first, every
--      column (tasker_lifecycle_archive_graphs): step transitions, edges, steps, task transitions,
--      resolved DLQ entries, tasks; each through the index named there. The foreign-key checks of
--      the deletes use the same child indexes (every FK is indexed).
--
-- Before anything else, a batch (real or dry) refuses, moving nothing, while the archive tables differ
-- from the live tables or a foreign key it relies on is missing or not enforced
-- (tasker_lifecycle_refuse_archive_moves: SQLSTATE TL001, TL003 or TL004, naming each column or key
-- and what to run). It never changes a table: `migrate` brings the archive tables up to date. The
-- whole batch is one transaction (the caller's), bounded by
-- p_batch_size graphs. The result says where the next batch starts (last_state_entered_at,
-- last_task_uuid: pass them as p_after_*) and whether more candidates may follow
-- (more_candidates). The function runs with enable_seqscan off: every statement reads the batch's
-- rows through the index named beside it, where the planner, seeing a batch that is a few percent
-- of a table, would read the whole table.
-- The first three parameters and four columns are upstream's; the rest are this system's.
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
  task_uuids uuid[],
  -- true: the batch locked every row of each graph with SKIP LOCKED and compared counts (a dry run
  -- always; a real run when the fast path met a row another session holds)
  locked_row_by_row boolean
)
LANGUAGE plpgsql VOLATILE
-- Every statement below reads rows by the ids of one batch, through the indexes named beside it.
-- A batch can be a few percent of a table (a backlog, or the benchmark, where every graph is
-- eligible), and then the planner prefers reading the whole table; off, so that a batch's cost
-- stays bounded by the batch whatever the table's size.
SET enable_seqscan = off
AS $$
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
  v_lock_timeout text := current_setting('lock_timeout');
  v_moved boolean := false;
BEGIN
  -- Policies not given take the configured ones (tasker_lifecycle_settings, which `migrate` writes
  -- from [archive.policies]), so upstream's three-argument call follows the configuration; the
  -- constants cover a settings row that was deleted.
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

  -- Refuses while the archive tables differ from the live ones (run `migrate`) or a foreign key the
  -- moves rely on is missing; a dry run refuses what the real run would refuse. Catalog reads only.
  PERFORM tasker_lifecycle_refuse_archive_moves('archival');

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
  more_candidates := false; task_uuids := ARRAY[]::uuid[]; locked_row_by_row := false;
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
            AND NOT EXISTS (SELECT 1 FROM tasker_archive_holds h
                             WHERE h.task_uuid = tr.task_uuid AND h.held_until > p_now)
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
         AND t.task_uuid = ANY (v_candidates)
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

  -- 3. re-check the locked tasks' DLQ entries in this statement's fresh snapshot
  --    (idx_dlq_unique_pending_task, idx_dlq_task_lookup). Their current transitions need no
  --    re-check: step 2 locked them FOR UPDATE with the eligibility in its WHERE, which PostgreSQL
  --    re-evaluates on the newest version of a row changed since step 2's snapshot; and once
  --    locked, no transition can replace them (the engine must first clear most_recent on the
  --    locked row, and inserting a transition takes FOR KEY SHARE on the locked task).
  --    A hold committed since step 1 is honoured too (tasker_archive_holds_pkey).
  --    v_locked is in (created_at, task_uuid) order already, and keeps it.
  SELECT coalesce(array_agg(l.task_uuid ORDER BY l.n), ARRAY[]::uuid[]) INTO v_ids
    FROM unnest(coalesce(v_locked, ARRAY[]::uuid[])) WITH ORDINALITY AS l(task_uuid, n)
   WHERE NOT EXISTS (SELECT 1 FROM tasker_tasks_dlq d
                      WHERE d.task_uuid = l.task_uuid AND d.resolution_status = 'pending')
     AND NOT EXISTS (SELECT 1 FROM tasker_archive_holds h
                      WHERE h.task_uuid = l.task_uuid AND h.held_until > p_now)
     AND (v_dlq_resolved OR NOT EXISTS (SELECT 1 FROM tasker_tasks_dlq d WHERE d.task_uuid = l.task_uuid));


  -- 4. the fast path, for a real run: lock the steps (the parents of every other child row) with
  --    NOWAIT, then move. The leaf rows (task and step transitions, edges, DLQ entries) are not
  --    locked one by one first: none can be added meanwhile, since adding one takes FOR KEY SHARE
  --    on its task or step, which our FOR UPDATE locks on tasks (step 2) and steps (here) block
  --    until we commit; and one that another session holds makes its DELETE give up after
  --    lock_timeout = 1 ms instead of waiting. Either way (NOWAIT or lock_timeout, SQLSTATE 55P03)
  --    the block's subtransaction rolls back whole and the batch takes the careful path below.
  IF NOT p_dry_run AND cardinality(v_ids) > 0 THEN
    BEGIN
      PERFORM set_config('lock_timeout', '1ms', true);
      -- idx_workflow_steps_task_uuid
      SELECT coalesce(array_agg(s.workflow_step_uuid), ARRAY[]::uuid[]) INTO v_step_ids
        FROM (SELECT ws.workflow_step_uuid FROM tasker_workflow_steps ws
               WHERE ws.task_uuid = ANY (v_ids) FOR UPDATE NOWAIT) s;
      -- children first, every column (tasker_lifecycle_archive_graphs)
      SELECT g.step_transitions, g.edges, g.steps, g.transitions, g.dlq_entries, g.tasks
        INTO step_transitions_archived, edges_archived, steps_archived, transitions_archived,
             dlq_entries_archived, tasks_archived
        FROM tasker_lifecycle_archive_graphs(v_ids, v_step_ids, p_now) g;
      PERFORM set_config('lock_timeout', v_lock_timeout, true);
      v_moved := true;
    EXCEPTION WHEN lock_not_available THEN
      -- everything the block did is undone (rows, counts' effects, the lock_timeout setting)
      steps_archived := 0; transitions_archived := 0; edges_archived := 0;
      step_transitions_archived := 0; dlq_entries_archived := 0; tasks_archived := 0;
    END;
  END IF;

  IF v_moved THEN
    tasks_skipped := array_position(v_candidates, last_task_uuid) - cardinality(v_ids);
    task_uuids := v_ids;
  ELSE
    -- The careful path: 0030's steps 4 and 5, unchanged.
    locked_row_by_row := cardinality(v_ids) > 0;
    -- 4b. lock the rest of each graph, SKIP LOCKED: every row the move will delete. Per table, the
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
        -- 5. move, children first, every column (tasker_lifecycle_archive_graphs)
        SELECT g.step_transitions, g.edges, g.steps, g.transitions, g.dlq_entries, g.tasks
          INTO step_transitions_archived, edges_archived, steps_archived, transitions_archived,
               dlq_entries_archived, tasks_archived
          FROM tasker_lifecycle_archive_graphs(v_ids, v_step_ids, p_now) g;
      END IF;
    END IF;
  END IF;

  execution_time_ms := floor(extract(epoch FROM clock_timestamp() - v_started) * 1000)::integer;
  RETURN NEXT;
END
$$;
