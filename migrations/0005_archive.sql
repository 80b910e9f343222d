-- 0005: archival. Finished task graphs move out of the live tables into archive tables, in bounded
-- batches, and can be moved back (upstream-facts.md §2.1-2.3; §7 lists what upstream got wrong).
--
-- Pieces:
--   tasker_*_archive              one per live table: the live table's columns (same names, types and
--                                 order, so a restore is byte-for-byte) plus archived_at
--   idx_task_transitions_finished the eligibility index: current terminal transitions by state and
--                                 by when the task entered that state
--   archive_completed_tasks       one batch: chooses, locks and moves (or, dry run, counts) whole graphs
-- and in 0006_archive_restore.sql: restore_archived_task (one archived graph back) and
-- v_archive_statistics (archived tasks per month of archival).
--
-- Differences from upstream, on purpose:
--   * Archive tables take the live columns with LIKE but not INCLUDING ALL: no defaults (every value
--     is copied), no CHECKs, and their own primary keys. A restore moves rows out of the archive, so
--     archiving a restored task again never collides with a stale archive copy (upstream's
--     INCLUDING ALL plus copy-without-delete made re-archiving fail); the primary keys also make a
--     double move impossible rather than silent.
--   * Step transitions and DLQ entries are archived too, and the live rows are deleted children
--     first, so no foreign key blocks the move.
--   * Retention counts from when the task entered its final state (its most_recent transition's
--     created_at), not from creation; [archive.policies] are honoured, resolved_manually included.
--   * Each batch works on an explicit set of task ids it has locked (never "rows archived at about
--     this time"), and the dry run counts with the same predicates the moves use.
--
-- Every statement the archiver runs reads through an index named in the comment above it.
--
-- Adding a column to a live table later: add it to the archive table too, and recreate
-- archive_completed_tasks and restore_archived_task with the new column in their lists (the
-- column-drift and byte-for-byte restore tests in test/integration/archive-move.test.ts fail until
-- all three are done).

-- Archive tables ---------------------------------------------------------------------------------

CREATE TABLE tasker_tasks_archive (
  LIKE tasker_tasks,
  archived_at timestamptz NOT NULL,
  CONSTRAINT tasker_tasks_archive_pkey PRIMARY KEY (task_uuid)
);
-- Look up by template and by time.
CREATE INDEX idx_tasks_archive_named_task ON tasker_tasks_archive (named_task_uuid, archived_at);
CREATE INDEX idx_tasks_archive_archived_at ON tasker_tasks_archive (archived_at);

CREATE TABLE tasker_workflow_steps_archive (
  LIKE tasker_workflow_steps,
  archived_at timestamptz NOT NULL,
  CONSTRAINT tasker_workflow_steps_archive_pkey PRIMARY KEY (workflow_step_uuid)
);
CREATE INDEX idx_steps_archive_task_uuid ON tasker_workflow_steps_archive (task_uuid);

CREATE TABLE tasker_workflow_step_edges_archive (
  LIKE tasker_workflow_step_edges,
  archived_at timestamptz NOT NULL,
  CONSTRAINT tasker_workflow_step_edges_archive_pkey PRIMARY KEY (workflow_step_edge_uuid)
);
CREATE INDEX idx_step_edges_archive_from_step ON tasker_workflow_step_edges_archive (from_step_uuid);
CREATE INDEX idx_step_edges_archive_to_step ON tasker_workflow_step_edges_archive (to_step_uuid);

CREATE TABLE tasker_task_transitions_archive (
  LIKE tasker_task_transitions,
  archived_at timestamptz NOT NULL,
  CONSTRAINT tasker_task_transitions_archive_pkey PRIMARY KEY (task_transition_uuid)
);
CREATE INDEX idx_task_transitions_archive_task_uuid ON tasker_task_transitions_archive (task_uuid);

CREATE TABLE tasker_workflow_step_transitions_archive (
  LIKE tasker_workflow_step_transitions,
  archived_at timestamptz NOT NULL,
  CONSTRAINT tasker_workflow_step_transitions_archive_pkey PRIMARY KEY (workflow_step_transition_uuid)
);
CREATE INDEX idx_step_transitions_archive_step_uuid ON tasker_workflow_step_transitions_archive (workflow_step_uuid);

CREATE TABLE tasker_tasks_dlq_archive (
  LIKE tasker_tasks_dlq,
  archived_at timestamptz NOT NULL,
  CONSTRAINT tasker_tasks_dlq_archive_pkey PRIMARY KEY (dlq_entry_uuid)
);
CREATE INDEX idx_dlq_archive_task_uuid ON tasker_tasks_dlq_archive (task_uuid);

-- The eligibility index: the current transition of every finished task, by final state, then by
-- when the task entered it. One range scan per allowed state finds the oldest finished tasks
-- without touching in-flight ones or superseded transitions. IF NOT EXISTS: on a large existing
-- table an operator can build it first with CREATE INDEX CONCURRENTLY under this name, so the
-- migration does not block writes to tasker_task_transitions while it builds.
CREATE INDEX IF NOT EXISTS idx_task_transitions_finished
  ON tasker_task_transitions (to_state, created_at, task_uuid)
  WHERE most_recent = true AND to_state IN ('complete', 'error', 'cancelled', 'resolved_manually');

-- The archive policies last applied from the configuration (every archival run writes them), next to
-- the detection settings: what archive_completed_tasks uses for a policy it is not given.
ALTER TABLE tasker_lifecycle_settings
  ADD COLUMN archive_completed boolean NOT NULL DEFAULT true,
  ADD COLUMN archive_failed boolean NOT NULL DEFAULT true,
  ADD COLUMN archive_cancelled boolean NOT NULL DEFAULT false,
  ADD COLUMN archive_resolved_manually boolean NOT NULL DEFAULT true,
  ADD COLUMN archive_dlq_resolved boolean NOT NULL DEFAULT true;

-- One archival batch ------------------------------------------------------------------------------
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
--   * it matches p_namespace / p_task_name when given (template by name, any version).
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
--   3. re-check the locked tasks in a fresh snapshot (a DLQ entry may have committed between 1 and 2).
--      idx_task_transitions_uuid_most_recent, idx_dlq_unique_pending_task, idx_dlq_task_lookup.
--   4. lock their steps (so no step transition or edge can be added under us); collect step ids.
--      idx_workflow_steps_task_uuid.
--   5. move (or, dry run, count) children first, each keyed by the id sets of steps 3-4:
--      step transitions   idx_step_transitions_uuid_sort_key
--      edges              idx_step_edges_from_step_uuid, idx_step_edges_to_step_uuid
--      steps              idx_workflow_steps_task_uuid
--      task transitions   idx_task_transitions_uuid_sort_key
--      DLQ entries        idx_dlq_task_lookup (resolved only; a pending one would fail the task delete)
--      tasks              tasker_tasks_pkey
--      The foreign-key checks of the deletes use the same child indexes (every FK is indexed).
--
-- The whole batch is one transaction (the caller's), bounded by p_batch_size graphs. The result says
-- where the next batch starts (last_state_entered_at, last_task_uuid: pass them as p_after_*) and
-- whether more candidates may follow (more_candidates). A dry run runs steps 1-4 identically
-- (locks included, released at the end of the caller's transaction) and counts with the exact
-- predicates of step 5, so it reports what a real run with the same arguments would move.
-- The first three parameters and four columns are upstream's; the rest are this system's.
CREATE FUNCTION archive_completed_tasks(
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

  -- skipped: candidates up to the cursor that are not moved (held elsewhere, or no longer eligible)
  tasks_skipped := array_position(v_candidates, last_task_uuid) - cardinality(v_ids);
  task_uuids := v_ids;

  IF cardinality(v_ids) > 0 THEN
    -- 4. lock the steps and collect their ids (idx_workflow_steps_task_uuid)
    SELECT coalesce(array_agg(s.workflow_step_uuid), ARRAY[]::uuid[]) INTO v_step_ids
      FROM (SELECT ws.workflow_step_uuid FROM tasker_workflow_steps ws
             WHERE ws.task_uuid = ANY (v_ids) FOR UPDATE) s;

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
      -- 5. move, children first
      WITH moved AS (
        DELETE FROM tasker_workflow_step_transitions WHERE workflow_step_uuid = ANY (v_step_ids)
        RETURNING workflow_step_transition_uuid, workflow_step_uuid, to_state, from_state, metadata, sort_key,
                  most_recent, created_at, updated_at)
      INSERT INTO tasker_workflow_step_transitions_archive
        (workflow_step_transition_uuid, workflow_step_uuid, to_state, from_state, metadata, sort_key,
         most_recent, created_at, updated_at, archived_at)
      SELECT workflow_step_transition_uuid, workflow_step_uuid, to_state, from_state, metadata, sort_key,
             most_recent, created_at, updated_at, p_now
        FROM moved;
      GET DIAGNOSTICS step_transitions_archived = ROW_COUNT;

      WITH moved AS (
        DELETE FROM tasker_workflow_step_edges
         WHERE from_step_uuid = ANY (v_step_ids) OR to_step_uuid = ANY (v_step_ids)
        RETURNING workflow_step_edge_uuid, from_step_uuid, to_step_uuid, name, created_at, updated_at)
      INSERT INTO tasker_workflow_step_edges_archive
        (workflow_step_edge_uuid, from_step_uuid, to_step_uuid, name, created_at, updated_at, archived_at)
      SELECT workflow_step_edge_uuid, from_step_uuid, to_step_uuid, name, created_at, updated_at, p_now
        FROM moved;
      GET DIAGNOSTICS edges_archived = ROW_COUNT;

      WITH moved AS (
        DELETE FROM tasker_workflow_steps WHERE task_uuid = ANY (v_ids)
        RETURNING workflow_step_uuid, task_uuid, named_step_uuid, retryable, max_attempts, in_process, processed,
                  processed_at, attempts, last_attempted_at, backoff_request_seconds, inputs, results, checkpoint,
                  priority, created_at, updated_at)
      INSERT INTO tasker_workflow_steps_archive
        (workflow_step_uuid, task_uuid, named_step_uuid, retryable, max_attempts, in_process, processed,
         processed_at, attempts, last_attempted_at, backoff_request_seconds, inputs, results, checkpoint,
         priority, created_at, updated_at, archived_at)
      SELECT workflow_step_uuid, task_uuid, named_step_uuid, retryable, max_attempts, in_process, processed,
             processed_at, attempts, last_attempted_at, backoff_request_seconds, inputs, results, checkpoint,
             priority, created_at, updated_at, p_now
        FROM moved;
      GET DIAGNOSTICS steps_archived = ROW_COUNT;

      WITH moved AS (
        DELETE FROM tasker_task_transitions WHERE task_uuid = ANY (v_ids)
        RETURNING task_transition_uuid, task_uuid, to_state, from_state, metadata, sort_key, most_recent,
                  processor_uuid, transition_metadata, created_at, updated_at)
      INSERT INTO tasker_task_transitions_archive
        (task_transition_uuid, task_uuid, to_state, from_state, metadata, sort_key, most_recent,
         processor_uuid, transition_metadata, created_at, updated_at, archived_at)
      SELECT task_transition_uuid, task_uuid, to_state, from_state, metadata, sort_key, most_recent,
             processor_uuid, transition_metadata, created_at, updated_at, p_now
        FROM moved;
      GET DIAGNOSTICS transitions_archived = ROW_COUNT;

      WITH moved AS (
        DELETE FROM tasker_tasks_dlq WHERE task_uuid = ANY (v_ids) AND resolution_status <> 'pending'
        RETURNING dlq_entry_uuid, task_uuid, original_state, dlq_reason, dlq_timestamp, resolution_status,
                  resolution_timestamp, resolution_notes, resolved_by, task_snapshot, metadata, created_at,
                  updated_at)
      INSERT INTO tasker_tasks_dlq_archive
        (dlq_entry_uuid, task_uuid, original_state, dlq_reason, dlq_timestamp, resolution_status,
         resolution_timestamp, resolution_notes, resolved_by, task_snapshot, metadata, created_at, updated_at,
         archived_at)
      SELECT dlq_entry_uuid, task_uuid, original_state, dlq_reason, dlq_timestamp, resolution_status,
             resolution_timestamp, resolution_notes, resolved_by, task_snapshot, metadata, created_at, updated_at,
             p_now
        FROM moved;
      GET DIAGNOSTICS dlq_entries_archived = ROW_COUNT;

      WITH moved AS (
        DELETE FROM tasker_tasks WHERE task_uuid = ANY (v_ids)
        RETURNING task_uuid, named_task_uuid, complete, requested_at, completed_at, initiator, source_system,
                  reason, tags, context, identity_hash, priority, correlation_id, parent_correlation_id,
                  created_at, updated_at)
      INSERT INTO tasker_tasks_archive
        (task_uuid, named_task_uuid, complete, requested_at, completed_at, initiator, source_system, reason,
         tags, context, identity_hash, priority, correlation_id, parent_correlation_id, created_at, updated_at,
         archived_at)
      SELECT task_uuid, named_task_uuid, complete, requested_at, completed_at, initiator, source_system, reason,
             tags, context, identity_hash, priority, correlation_id, parent_correlation_id, created_at,
             updated_at, p_now
        FROM moved;
      GET DIAGNOSTICS tasks_archived = ROW_COUNT;
    END IF;
  END IF;

  execution_time_ms := floor(extract(epoch FROM clock_timestamp() - v_started) * 1000)::integer;
  RETURN NEXT;
END
$$;
