-- 0040: detection dry runs that lock nothing and page; writes stamped with the statement's clock;
-- a dependency-cycle check linear in the size of the task's graph (issue 15, items 3, 5 and 6).
--
-- Before: a dry run was one call for batch_size x max_batches tasks whose discovery locked every
-- row it returned (FOR UPDATE SKIP LOCKED), blocking the engine's compare-and-swap on them and
-- hiding them from real detectors for the whole statement; every write was stamped with the run's
-- reference time, so a task the engine moved after the run began got an error transition older
-- than its previous one; the cycle walk cost steps x reachable steps (a 5,000-step chain:
-- 12.5 million rows) and had no time bound.
--
-- Now:
--   get_stale_tasks_for_dlq      locks only when p_lock (real runs); pages with an exact keyset
--                                cursor (p_after_state_entered_at, p_after_task_uuid) on its
--                                order (state entry, task uuid); returns state_entered_at; time in
--                                state and task age are never negative.
--   detect_stale_tasks_batch     a dry run reads only (no FOR UPDATE, no write statement at all);
--                                both modes take the cursor and return the page's last key
--                                (page_last_entered_at, page_last_task_uuid) for the next call.
--                                Staleness is still judged at p_now (the run's time); what is
--                                written is stamped greatest(clock_timestamp(), the task's current
--                                transition's created_at), never earlier than what it follows.
--   task_has_dependency_cycle    Kahn's algorithm over the task's edges: linear in steps + edges.
--
-- Names, upstream's leading parameters and upstream's leading result columns are unchanged; the
-- new parameters come last with defaults, so existing calls keep working.

DROP FUNCTION detect_stale_tasks_batch(timestamptz, boolean, integer, integer, integer, integer, integer,
                                       boolean, boolean, dlq_reason[], text);
DROP FUNCTION get_stale_tasks_for_dlq(integer, integer, integer, integer, integer, timestamptz, boolean,
                                      boolean, dlq_reason[]);

-- Whether the edges leaving a task's steps form a cycle: Kahn's algorithm (repeatedly remove nodes
-- nobody points to; a cycle is what can never be removed). One read of the task's edges
-- (idx_workflow_steps_task_uuid, idx_step_edges_from_step_uuid), then O(steps + edges) in memory.
CREATE OR REPLACE FUNCTION task_has_dependency_cycle(p_task_uuid uuid) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_from integer[];
  v_to integer[];
  v_nodes integer;
  v_edges integer;
  v_start integer[];
  v_indeg integer[];
  v_queue integer[];
  v_head integer := 1;
  v_tail integer := 0;
  v_node integer;
  v_next integer;
  i integer;
BEGIN
  WITH e AS MATERIALIZED (
    SELECT x.from_step_uuid AS f, x.to_step_uuid AS t
      FROM tasker_workflow_steps s
      JOIN tasker_workflow_step_edges x ON x.from_step_uuid = s.workflow_step_uuid
     WHERE s.task_uuid = p_task_uuid
  ),
  n AS MATERIALIZED (
    SELECT ids.id, (row_number() OVER (ORDER BY ids.id))::integer AS k
      FROM (SELECT e.f AS id FROM e UNION SELECT e.t FROM e) ids
  )
  SELECT coalesce(array_agg(nf.k ORDER BY nf.k, nt.k), '{}'),
         coalesce(array_agg(nt.k ORDER BY nf.k, nt.k), '{}'),
         (SELECT count(*) FROM n)::integer
    INTO v_from, v_to, v_nodes
    FROM e
    JOIN n nf ON nf.id = e.f
    JOIN n nt ON nt.id = e.t;

  v_edges := coalesce(array_length(v_from, 1), 0);
  IF v_edges = 0 THEN
    RETURN false;
  END IF;

  -- Edges are sorted by their source: node v's edges are v_start[v] .. v_start[v + 1] - 1.
  v_indeg := array_fill(0, ARRAY[v_nodes]);
  v_start := array_fill(0, ARRAY[v_nodes + 1]);
  FOR i IN 1..v_edges LOOP
    v_start[v_from[i] + 1] := v_start[v_from[i] + 1] + 1;
    v_indeg[v_to[i]] := v_indeg[v_to[i]] + 1;
  END LOOP;
  v_start[1] := 1;
  FOR i IN 2..v_nodes + 1 LOOP
    v_start[i] := v_start[i] + v_start[i - 1];
  END LOOP;

  v_queue := array_fill(0, ARRAY[v_nodes]);
  FOR i IN 1..v_nodes LOOP
    IF v_indeg[i] = 0 THEN
      v_tail := v_tail + 1;
      v_queue[v_tail] := i;
    END IF;
  END LOOP;
  WHILE v_head <= v_tail LOOP
    v_node := v_queue[v_head];
    v_head := v_head + 1;
    FOR i IN v_start[v_node]..v_start[v_node + 1] - 1 LOOP
      v_next := v_to[i];
      v_indeg[v_next] := v_indeg[v_next] - 1;
      IF v_indeg[v_next] = 0 THEN
        v_tail := v_tail + 1;
        v_queue[v_tail] := v_next;
      END IF;
    END LOOP;
  END LOOP;
  RETURN v_tail < v_nodes;
END
$$;

-- Discovery. Reads the in-flight index (idx_task_transitions_in_flight): stale candidates in
-- (state entry, task uuid) order after the cursor, at most p_batch_size. With p_lock (real runs)
-- their current transition rows are locked FOR UPDATE SKIP LOCKED, so concurrent passes take
-- disjoint tasks and nobody changes their state before this transaction ends; without it (dry
-- runs) nothing is locked and nobody waits. Excluded: tasks with a pending investigation, and tasks
-- on which nothing would be done. One query text for both modes (only the locking clause differs).
-- The first five parameters and seven columns are upstream's; the rest are this system's.
CREATE FUNCTION get_stale_tasks_for_dlq(
  p_default_waiting_deps integer DEFAULT 60,
  p_default_waiting_retry integer DEFAULT 30,
  p_default_steps_process integer DEFAULT 30,
  p_max_lifetime_hours integer DEFAULT 24,
  p_batch_size integer DEFAULT 100,
  p_now timestamptz DEFAULT now(),
  p_auto_transition_to_error boolean DEFAULT true,
  p_auto_move_to_dlq boolean DEFAULT true,
  p_enabled_reasons dlq_reason[] DEFAULT enum_range(NULL::dlq_reason),
  p_lock boolean DEFAULT true,
  p_after_state_entered_at timestamptz DEFAULT NULL,
  p_after_task_uuid uuid DEFAULT NULL
) RETURNS TABLE (
  task_uuid uuid,
  namespace_name varchar,
  task_name varchar,
  current_state varchar,
  time_in_state_minutes numeric,
  threshold_minutes integer,
  task_age_minutes numeric,
  task_transition_uuid uuid,
  named_task_uuid uuid,
  stale_by varchar,
  lifetime_minutes integer,
  do_transition boolean,
  do_dlq boolean,
  state_entered_at timestamptz
)
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
  IF (p_after_state_entered_at IS NULL) <> (p_after_task_uuid IS NULL) THEN
    RAISE EXCEPTION 'p_after_state_entered_at and p_after_task_uuid go together, got % and %',
      p_after_state_entered_at, p_after_task_uuid USING ERRCODE = '22023';
  END IF;
  RETURN QUERY EXECUTE format($q$
    SELECT tr.task_uuid,
           ns.name,
           nt.name,
           tr.to_state,
           greatest(0, round(extract(epoch FROM $6 - tr.created_at) / 60, 2)),
           CASE WHEN tr.created_at <= $6 - make_interval(mins => pol.state_threshold_minutes)
                THEN pol.state_threshold_minutes ELSE pol.lifetime_minutes END,
           greatest(0, round(extract(epoch FROM $6 - t.created_at) / 60, 2)),
           tr.task_transition_uuid,
           nt.named_task_uuid,
           (CASE WHEN tr.created_at <= $6 - make_interval(mins => pol.state_threshold_minutes)
                 THEN 'state_threshold' ELSE 'task_lifetime' END)::varchar,
           pol.lifetime_minutes,
           act.do_transition,
           act.do_dlq,
           tr.created_at
      FROM tasker_task_transitions tr
      JOIN tasker_tasks t ON t.task_uuid = tr.task_uuid
      JOIN tasker_named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
      JOIN tasker_task_namespaces ns ON ns.task_namespace_uuid = nt.task_namespace_uuid
     CROSS JOIN LATERAL task_staleness_policy(nt.configuration, tr.to_state, $1, $2, $3, $4) pol
     CROSS JOIN LATERAL (
       SELECT $7 AND pol.staleness_action <> 'none' AND coalesce(pol.auto_fail_on_timeout, true) AS do_transition,
              $8 AND pol.staleness_action = 'dlq' AND coalesce(pol.auto_dlq_on_timeout, true) AS wants_dlq
     ) want
     CROSS JOIN LATERAL (
       SELECT want.do_transition,
              want.wants_dlq AND CASE WHEN 'staleness_timeout' = ANY ($9) THEN true
                                      ELSE task_dlq_reason(tr.task_uuid, tr.to_state, $9) IS NOT NULL
                                 END AS do_dlq
     ) act
     WHERE tr.most_recent = true
       AND tr.to_state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
       AND tr.created_at >= coalesce($10, '-infinity'::timestamptz)
       AND (tr.created_at, tr.task_uuid)
           > (coalesce($10, '-infinity'::timestamptz), coalesce($11, '00000000-0000-0000-0000-000000000000'::uuid))
       AND (tr.created_at <= $6 - make_interval(mins => pol.state_threshold_minutes)
            OR t.created_at <= $6 - make_interval(mins => pol.lifetime_minutes))
       AND (act.do_transition OR act.do_dlq)
       AND NOT EXISTS (SELECT 1 FROM tasker_tasks_dlq d
                        WHERE d.task_uuid = tr.task_uuid AND d.resolution_status = 'pending')
     ORDER BY tr.created_at, tr.task_uuid
     LIMIT $5
     %s$q$, CASE WHEN p_lock THEN 'FOR UPDATE OF tr SKIP LOCKED' ELSE '' END)
  USING p_default_waiting_deps, p_default_waiting_retry, p_default_steps_process, p_max_lifetime_hours,
        p_batch_size, p_now, p_auto_transition_to_error, p_auto_move_to_dlq, p_enabled_reasons,
        p_after_state_entered_at, p_after_task_uuid;
END
$fn$;

-- One detection batch with every option explicit; the detection job calls this, page by page:
-- pass the previous call's page_last_entered_at / page_last_task_uuid as p_after_* (NULL for the
-- first page). A page that returns fewer than p_batch_size rows is the last.
--
-- Real run (p_dry_run false): for each task found (locked, still in the state it was found in),
-- transition to error and/or open a pending investigation, as the switches and the template say,
-- in this one statement, so the entry and the transition commit together or not at all. With
-- p_event_channel set, each task acted on is announced with pg_notify (delivered at commit).
-- Dry run: the same discovery without locks, and no write statement at all; each row says
-- would_transition_to_dlq_and_error and what the real run would plan.
-- Staleness is judged at p_now (the run's reference time, the same for every page). Rows written
-- are stamped with greatest(clock_timestamp(), the task's current transition's created_at).
-- The first nine result columns are upstream's; action_taken takes upstream's five values.
CREATE FUNCTION detect_stale_tasks_batch(
  p_now timestamptz,
  p_dry_run boolean,
  p_batch_size integer,
  p_waiting_deps_minutes integer,
  p_waiting_retry_minutes integer,
  p_steps_in_process_minutes integer,
  p_task_max_lifetime_hours integer,
  p_auto_transition_to_error boolean,
  p_auto_move_to_dlq boolean,
  p_enabled_reasons dlq_reason[],
  p_event_channel text,
  p_after_state_entered_at timestamptz DEFAULT NULL,
  p_after_task_uuid uuid DEFAULT NULL
) RETURNS TABLE (
  task_uuid uuid,
  namespace_name varchar,
  task_name varchar,
  current_state varchar,
  time_in_state_minutes integer,
  staleness_threshold_minutes integer,
  action_taken varchar,
  moved_to_dlq boolean,
  transition_success boolean,
  stale_by varchar,
  task_age_minutes integer,
  planned_action varchar,
  dlq_entry_uuid uuid,
  dlq_reason dlq_reason,
  named_task_uuid uuid,
  template_problems text[],
  state_entered_at timestamptz,
  page_last_entered_at timestamptz,
  page_last_task_uuid uuid
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  r record;
  v_rows refcursor;
BEGIN
  IF p_now IS NULL THEN
    RAISE EXCEPTION 'p_now must be a timestamp, got NULL' USING ERRCODE = '22023';
  END IF;
  IF p_batch_size IS NULL OR p_batch_size < 1 THEN
    RAISE EXCEPTION 'p_batch_size must be at least 1, got %', p_batch_size USING ERRCODE = '22023';
  END IF;
  IF coalesce(least(p_waiting_deps_minutes, p_waiting_retry_minutes, p_steps_in_process_minutes,
                    p_task_max_lifetime_hours), 0) < 1 THEN
    RAISE EXCEPTION 'thresholds must be positive, got waiting_deps=% waiting_retry=% steps_in_process=% lifetime_hours=%',
      p_waiting_deps_minutes, p_waiting_retry_minutes, p_steps_in_process_minutes, p_task_max_lifetime_hours
      USING ERRCODE = '22023';
  END IF;

  IF p_dry_run THEN
    OPEN v_rows FOR
      WITH found AS MATERIALIZED (
        SELECT c.*,
               CASE WHEN c.do_dlq THEN task_dlq_reason(c.task_uuid, c.current_state, p_enabled_reasons) END AS reason
          FROM get_stale_tasks_for_dlq(p_waiting_deps_minutes, p_waiting_retry_minutes, p_steps_in_process_minutes,
                                       p_task_max_lifetime_hours, p_batch_size, p_now,
                                       p_auto_transition_to_error, p_auto_move_to_dlq, p_enabled_reasons,
                                       false, p_after_state_entered_at, p_after_task_uuid) c
      )
      SELECT f.*,
             false AS transitioned,
             NULL::uuid AS entry_uuid,
             NULL::timestamptz AS stamp,
             nt.configuration -> 'lifecycle' AS lifecycle,
             first_value(f.state_entered_at) OVER page AS last_entered_at,
             first_value(f.task_uuid) OVER page AS last_task_uuid
        FROM found f
        JOIN tasker_named_tasks nt ON nt.named_task_uuid = f.named_task_uuid
      WINDOW page AS (ORDER BY f.state_entered_at DESC, f.task_uuid DESC
                      ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
       ORDER BY f.time_in_state_minutes DESC, f.task_uuid;
  ELSE
    OPEN v_rows FOR
      WITH found AS MATERIALIZED (
        SELECT c.*,
               CASE WHEN c.do_dlq THEN task_dlq_reason(c.task_uuid, c.current_state, p_enabled_reasons) END AS reason,
               greatest(clock_timestamp(), c.state_entered_at) AS stamp
          FROM get_stale_tasks_for_dlq(p_waiting_deps_minutes, p_waiting_retry_minutes, p_steps_in_process_minutes,
                                       p_task_max_lifetime_hours, p_batch_size, p_now,
                                       p_auto_transition_to_error, p_auto_move_to_dlq, p_enabled_reasons,
                                       true, p_after_state_entered_at, p_after_task_uuid) c
      ),
      flipped AS (
        UPDATE tasker_task_transitions tr
           SET most_recent = false, updated_at = f.stamp
          FROM found f
         WHERE f.do_transition
           AND tr.task_transition_uuid = f.task_transition_uuid AND tr.most_recent = true
        RETURNING tr.task_uuid, tr.to_state
      ),
      errored AS (
        INSERT INTO tasker_task_transitions
          (task_uuid, to_state, from_state, sort_key, most_recent, transition_metadata, created_at, updated_at)
        SELECT fl.task_uuid, 'error', fl.to_state,
               (SELECT max(x.sort_key) FROM tasker_task_transitions x WHERE x.task_uuid = fl.task_uuid) + 1,
               true,
               jsonb_build_object('reason', coalesce(f.reason::text, 'staleness_timeout'),
                                  'automatic_transition', true,
                                  'stale_by', f.stale_by,
                                  'time_in_state_minutes', floor(f.time_in_state_minutes)::integer,
                                  'threshold_minutes', f.threshold_minutes,
                                  'dlq_entry_created', f.reason IS NOT NULL,
                                  'namespace', f.namespace_name,
                                  'task_name', f.task_name,
                                  'judged_at', p_now,
                                  'detected_at', f.stamp),
               f.stamp, f.stamp
          FROM flipped fl
          JOIN found f ON f.task_uuid = fl.task_uuid
        RETURNING tasker_task_transitions.task_uuid
      ),
      entered AS (
        INSERT INTO tasker_tasks_dlq
          (task_uuid, original_state, dlq_reason, dlq_timestamp, task_snapshot, metadata, created_at, updated_at)
        SELECT f.task_uuid, f.current_state, f.reason, f.stamp,
               dlq_detection_snapshot(f.task_uuid, f.namespace_name, f.task_name, f.current_state,
                                      floor(f.time_in_state_minutes)::integer, f.threshold_minutes, f.stamp)
                 || jsonb_build_object('stale_by', f.stale_by,
                                       'task_age_minutes', floor(f.task_age_minutes)::integer),
               jsonb_build_object('detection_method', 'automatic_staleness',
                                  'stale_by', f.stale_by,
                                  'time_in_state_minutes', floor(f.time_in_state_minutes)::integer,
                                  'threshold_minutes', f.threshold_minutes,
                                  'transitioned_to_error', f.do_transition,
                                  'judged_at', p_now),
               f.stamp, f.stamp
          FROM found f
         WHERE f.reason IS NOT NULL
           AND (NOT f.do_transition OR f.task_uuid IN (SELECT e.task_uuid FROM errored e))
        ON CONFLICT (task_uuid) WHERE resolution_status = 'pending' DO NOTHING
        RETURNING tasker_tasks_dlq.task_uuid, tasker_tasks_dlq.dlq_entry_uuid
      )
      SELECT f.*,
             e.task_uuid IS NOT NULL AS transitioned,
             q.dlq_entry_uuid AS entry_uuid,
             nt.configuration -> 'lifecycle' AS lifecycle,
             first_value(f.state_entered_at) OVER page AS last_entered_at,
             first_value(f.task_uuid) OVER page AS last_task_uuid
        FROM found f
        LEFT JOIN errored e ON e.task_uuid = f.task_uuid
        LEFT JOIN entered q ON q.task_uuid = f.task_uuid
        JOIN tasker_named_tasks nt ON nt.named_task_uuid = f.named_task_uuid
      WINDOW page AS (ORDER BY f.state_entered_at DESC, f.task_uuid DESC
                      ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
       ORDER BY f.time_in_state_minutes DESC, f.task_uuid;
  END IF;

  LOOP
    FETCH v_rows INTO r;
    EXIT WHEN NOT FOUND;
    task_uuid := r.task_uuid;
    namespace_name := r.namespace_name;
    task_name := r.task_name;
    current_state := r.current_state;
    time_in_state_minutes := floor(r.time_in_state_minutes)::integer;
    staleness_threshold_minutes := r.threshold_minutes;
    planned_action := CASE
      WHEN r.do_transition AND r.reason IS NOT NULL THEN 'dlq_and_error'
      WHEN r.do_transition THEN 'error_only'
      ELSE 'dlq_only' END;
    moved_to_dlq := r.entry_uuid IS NOT NULL;
    transition_success := r.transitioned;
    action_taken := CASE
      WHEN p_dry_run THEN 'would_transition_to_dlq_and_error'
      WHEN r.transitioned AND r.entry_uuid IS NOT NULL THEN 'transitioned_to_dlq_and_error'
      WHEN r.transitioned THEN 'transitioned_to_error_only'
      WHEN r.entry_uuid IS NOT NULL THEN 'moved_to_dlq_only'
      ELSE 'transition_failed' END;
    stale_by := r.stale_by;
    task_age_minutes := floor(r.task_age_minutes)::integer;
    dlq_entry_uuid := r.entry_uuid;
    dlq_reason := r.reason;
    named_task_uuid := r.named_task_uuid;
    template_problems := CASE WHEN r.lifecycle IS NULL THEN ARRAY[]::text[] ELSE lifecycle_config_problems(r.lifecycle) END;
    state_entered_at := r.state_entered_at;
    page_last_entered_at := r.last_entered_at;
    page_last_task_uuid := r.last_task_uuid;

    IF NOT p_dry_run AND p_event_channel IS NOT NULL AND (r.transitioned OR r.entry_uuid IS NOT NULL) THEN
      PERFORM pg_notify(p_event_channel, jsonb_build_object(
        'event', 'task_staleness_detected',
        'task_uuid', r.task_uuid,
        'namespace', r.namespace_name,
        'task_name', r.task_name,
        'original_state', r.current_state,
        'stale_by', r.stale_by,
        'action_taken', action_taken,
        'dlq_entry_uuid', r.entry_uuid,
        'dlq_reason', r.reason,
        'detected_at', r.stamp)::text);
    END IF;

    RETURN NEXT;
  END LOOP;
  CLOSE v_rows;
END
$$;

-- Upstream's entry point, unchanged in signature and result; redefined so it names the new batch
-- function's arguments explicitly (first page only: upstream's call is one batch).
CREATE OR REPLACE FUNCTION detect_and_transition_stale_tasks(
  p_dry_run boolean DEFAULT true,
  p_batch_size integer DEFAULT 100,
  p_default_waiting_deps_threshold integer DEFAULT 60,
  p_default_waiting_retry_threshold integer DEFAULT 30,
  p_default_steps_in_process_threshold integer DEFAULT 30,
  p_default_task_max_lifetime_hours integer DEFAULT 24
) RETURNS TABLE (
  task_uuid uuid,
  namespace_name varchar,
  task_name varchar,
  current_state varchar,
  time_in_state_minutes integer,
  staleness_threshold_minutes integer,
  action_taken varchar,
  moved_to_dlq boolean,
  transition_success boolean
)
LANGUAGE sql VOLATILE AS $$
  SELECT b.task_uuid, b.namespace_name, b.task_name, b.current_state, b.time_in_state_minutes,
         b.staleness_threshold_minutes, b.action_taken, b.moved_to_dlq, b.transition_success
    FROM tasker_lifecycle_settings s
   CROSS JOIN LATERAL detect_stale_tasks_batch(
     now(), p_dry_run, p_batch_size, p_default_waiting_deps_threshold, p_default_waiting_retry_threshold,
     p_default_steps_in_process_threshold, p_default_task_max_lifetime_hours,
     s.auto_transition_to_error, s.auto_move_to_dlq, s.enabled_reasons, s.event_channel, NULL, NULL) b
$$;
