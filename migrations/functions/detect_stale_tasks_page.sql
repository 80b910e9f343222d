-- One page of a detection pass, whose cost follows what it returns, not the backlog behind it. The
-- detection job calls it page by page, passing back each page's next_cursor (NULL for the first
-- page); next_cursor is NULL on the page that ends the pass.
--
-- A pass has two phases, which split the tasks in flight by when they entered their state, so
-- that no task can be found by both:
--   state     tasks that entered their state at or before p_now - the smallest state threshold in
--             force (the three defaults, 1440 for the other states, and every template's
--             max_waiting_for_dependencies_minutes / max_waiting_for_retry_minutes /
--             max_steps_in_process_minutes): only these can be stale by state. Candidates are the
--             next p_examine entries of idx_task_transitions_in_flight after the cursor, a keyset
--             range scan on (created_at, task_uuid) (migrations/indexes/), judged by both rules.
--   lifetime  tasks that entered their state after that, which can only be stale by their age:
--             per template (in uuid order), the next unfinished tasks created before
--             p_now - the template's lifetime, a keyset range scan of idx_tasks_unfinished_by_template
--             (named_task_uuid, created_at, task_uuid; migrations/indexes/), at most
--             least(250 x p_examine, 100,000) entries per page. Those in flight are the candidates;
--             those whose current state is terminal (the engine leaves error and cancelled tasks
--             complete = false, and detection's own error tasks stay so, until archival moves
--             them) are read past, in one statement per page that the planner plans with the
--             entries' real number: a hash of the ended tasks when there are few of them (as
--             migration 0120 did once per pass), one index probe per entry when there are many
--             (after a storm), so a page never costs more than its entries' probes.
-- The judge (task_staleness_policy, the actions, no pending investigation) takes the first
-- p_batch_size stale candidates in the phase's order and, in a real run, locks their current
-- transition FOR UPDATE SKIP LOCKED (a task another session holds is passed over, as before). The
-- cursor then moves past the last task taken when the page is full, else past the last entry
-- read, else to the next phase. So a page examines at most p_examine candidates (and reads a
-- bounded number of lifetime index entries), whatever the backlog, and a pass drains a backlog in
-- time proportional to it.
--
-- Real run (p_dry_run false): for each task taken, transition to error and/or open a pending
-- investigation, as the switches and the template say, in this one statement, so the entry and the
-- transition commit together or not at all; with p_event_channel set, each task acted on is
-- announced with pg_notify (delivered at commit). Dry run: the same pages without locks and with no
-- write at all; each row says would_transition_to_dlq_and_error and what the real run would plan.
-- Staleness is judged at p_now (the pass's reference time, the same for every page). Rows written
-- are stamped with greatest(clock_timestamp(), the task's current transition's created_at).
-- The page's last row is its cursor: task_uuid NULL, next_cursor the next page's p_cursor (JSON
-- null when the pass is through). Every other row is a task taken, next_cursor NULL.
CREATE OR REPLACE FUNCTION detect_stale_tasks_page(
  p_now timestamptz,
  p_dry_run boolean,
  p_batch_size integer,
  p_examine integer,
  p_waiting_deps_minutes integer,
  p_waiting_retry_minutes integer,
  p_steps_in_process_minutes integer,
  p_task_max_lifetime_hours integer,
  p_auto_transition_to_error boolean,
  p_auto_move_to_dlq boolean,
  p_enabled_reasons dlq_reason[],
  p_event_channel text,
  p_cursor jsonb DEFAULT NULL
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
  next_cursor jsonb
)
LANGUAGE plpgsql VOLATILE
-- JIT compilation (about 20 ms per call, measured) costs more than these statements take.
SET jit = off
AS $fn$
#variable_conflict use_column
DECLARE
  v_phase text := coalesce(p_cursor ->> 'phase', 'state');
  v_cursor jsonb := CASE WHEN p_cursor ? 'at' OR p_cursor ? 'template' THEN p_cursor END;
  v_phase_examined integer;
  v_phase_last jsonb;
  v_more boolean;
  v_min_state_minutes integer;
  v_state_cut timestamptz;
  v_candidates uuid[] := '{}';
  v_examined integer := 0;
  v_last_candidate jsonb;
  v_template record;
  v_taken integer := 0;
  v_last_taken jsonb;
  v_next jsonb;
  v_found refcursor;
  -- Lifetime index entries read per page, tasks in flight or not: 50,000 at the default batch of
  -- 100 (a nothing-stale pass beside a million tasks in flight reads its ended tasks in one page).
  v_read_budget integer := least(p_examine * 250, 100000);
  v_read integer := 0;
  v_rows uuid[];
  v_all uuid[];
  v_last_at timestamptz;
  v_template_more boolean;
  r record;
BEGIN
  IF p_now IS NULL THEN
    RAISE EXCEPTION 'p_now must be a timestamp, got NULL' USING ERRCODE = '22023';
  END IF;
  IF p_batch_size IS NULL OR p_batch_size < 1 OR p_examine IS NULL OR p_examine < p_batch_size THEN
    RAISE EXCEPTION 'p_batch_size must be at least 1 and p_examine at least p_batch_size, got % and %',
      p_batch_size, p_examine USING ERRCODE = '22023';
  END IF;
  IF coalesce(least(p_waiting_deps_minutes, p_waiting_retry_minutes, p_steps_in_process_minutes,
                    p_task_max_lifetime_hours), 0) < 1 THEN
    RAISE EXCEPTION 'thresholds must be positive, got waiting_deps=% waiting_retry=% steps_in_process=% lifetime_hours=%',
      p_waiting_deps_minutes, p_waiting_retry_minutes, p_steps_in_process_minutes, p_task_max_lifetime_hours
      USING ERRCODE = '22023';
  END IF;
  IF v_phase NOT IN ('state', 'lifetime') THEN
    RAISE EXCEPTION 'p_cursor: unknown phase %', v_phase USING ERRCODE = '22023';
  END IF;

  -- The smallest state threshold any in-flight task can have (one row per template with a
  -- lifecycle: tasker_named_tasks is small). least() skips NULLs (absent or malformed values).
  SELECT least(p_waiting_deps_minutes, p_waiting_retry_minutes, p_steps_in_process_minutes, 1440,
               min(lifecycle_minutes(nt.configuration -> 'lifecycle', 'max_waiting_for_dependencies_minutes')),
               min(lifecycle_minutes(nt.configuration -> 'lifecycle', 'max_waiting_for_retry_minutes')),
               min(lifecycle_minutes(nt.configuration -> 'lifecycle', 'max_steps_in_process_minutes')))
    INTO v_min_state_minutes
    FROM tasker_named_tasks nt
   WHERE nt.configuration -> 'lifecycle' IS NOT NULL;
  v_state_cut := p_now - make_interval(mins => v_min_state_minutes);

  -- The phases, in order, within the page's budgets: at most p_examine candidates examined and
  -- p_batch_size tasks taken in all. A page that finishes the state phase with room to spare goes
  -- on into the lifetime phase.
  LOOP
    v_candidates := '{}';
    v_phase_examined := 0;
    v_phase_last := NULL;
    IF v_phase = 'state' THEN
      -- The next p_examine tasks in flight after the cursor that entered their state before the cut:
      -- idx_task_transitions_in_flight, Index Only Scan, Index Cond (created_at, task_uuid) > cursor.
      -- One entry more than the budget is read, only to know whether the phase goes on after it.
      SELECT coalesce(array_agg(c.task_uuid ORDER BY c.created_at, c.task_uuid) FILTER (WHERE c.n <= p_examine - v_examined), '{}'),
             count(*) FILTER (WHERE c.n <= p_examine - v_examined),
             (array_agg(jsonb_build_object('phase', 'state', 'at', c.created_at, 'task', c.task_uuid)
                        ORDER BY c.created_at DESC, c.task_uuid DESC) FILTER (WHERE c.n <= p_examine - v_examined))[1],
             count(*) > p_examine - v_examined
        INTO v_candidates, v_phase_examined, v_phase_last, v_more
        FROM (SELECT x.*, row_number() OVER (ORDER BY x.created_at, x.task_uuid) AS n
                FROM (SELECT i.task_uuid, i.created_at
                        FROM tasker_task_transitions i
                       WHERE i.most_recent = true
                         AND i.to_state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
                         AND (i.created_at, i.task_uuid) > (coalesce((v_cursor ->> 'at')::timestamptz, '-infinity'),
                                                            coalesce((v_cursor ->> 'task')::uuid, '00000000-0000-0000-0000-000000000000'))
                         AND i.created_at <= v_state_cut
                       ORDER BY i.created_at, i.task_uuid
                       LIMIT p_examine - v_examined + 1) x) c;
    ELSE
      -- Per template, after the cursor's, the next unfinished tasks older than its lifetime:
      -- idx_tasks_unfinished_by_template, Index Only Scan, named_task_uuid = ... AND created_at range,
      -- at most v_read_budget entries per page in all (one more, only to know whether the phase
      -- goes on).
      v_more := false;
      v_all := '{}';
      FOR v_template IN
        SELECT nt.named_task_uuid,
               p_now - make_interval(mins => coalesce(lifecycle_minutes(nt.configuration -> 'lifecycle', 'max_duration_minutes'),
                                                      p_task_max_lifetime_hours * 60)) AS cut
          FROM tasker_named_tasks nt
         WHERE nt.named_task_uuid >= coalesce((v_cursor ->> 'template')::uuid, '00000000-0000-0000-0000-000000000000')
         ORDER BY nt.named_task_uuid
      LOOP
        -- (array_agg keeps the subquery's order: no second sort.)
        SELECT coalesce(array_agg(x.task_uuid), '{}'), max(x.created_at)
          INTO v_rows, v_last_at
          FROM (SELECT t.task_uuid, t.created_at
                  FROM tasker_tasks t
                 WHERE t.named_task_uuid = v_template.named_task_uuid
                   AND NOT t.complete
                   AND t.created_at <= v_template.cut
                   AND (v_template.named_task_uuid <> (v_cursor ->> 'template')::uuid
                        OR (v_cursor ->> 'template') IS NULL
                        OR (t.created_at, t.task_uuid) > ((v_cursor ->> 'at')::timestamptz, (v_cursor ->> 'task')::uuid))
                 ORDER BY t.created_at, t.task_uuid
                 LIMIT v_read_budget - v_read + 1) x;
        v_template_more := cardinality(v_rows) > v_read_budget - v_read;
        IF v_template_more THEN
          -- The entry beyond the budget only said that the phase goes on; the last one read is the
          -- one before it.
          v_rows := v_rows[1:v_read_budget - v_read];
          SELECT t.created_at INTO v_last_at FROM tasker_tasks t WHERE t.task_uuid = v_rows[cardinality(v_rows)];
        END IF;
        IF cardinality(v_rows) > 0 THEN
          v_all := v_all || v_rows;
          v_read := v_read + cardinality(v_rows);
          v_phase_last := jsonb_build_object('phase', 'lifetime', 'template', v_template.named_task_uuid,
                                             'at', v_last_at, 'task', v_rows[cardinality(v_rows)]);
        END IF;
        IF v_template_more THEN
          v_more := true;
          EXIT;
        END IF;
      END LOOP;

      IF cardinality(v_all) > 0 THEN
        -- The ones in flight: not those whose current state is terminal (the engine leaves error and
        -- cancelled tasks complete = false, and detection's own error tasks stay so, until archival
        -- moves them). Planned with the array's real length (EXECUTE: a one-shot plan), so the
        -- planner takes the cheaper of one probe per entry (Index Only Scan using
        -- idx_task_transitions_state_lookup) and a hash of the ended tasks (three ranges of
        -- idx_task_transitions_finished): with few ended tasks a page costs what 0120's pass did,
        -- with many (after a storm) it costs at most one probe per entry read.
        EXECUTE $q$
          SELECT coalesce(array_agg(u.task_uuid), '{}')
            FROM unnest($1::uuid[]) u(task_uuid)
           WHERE NOT EXISTS (SELECT 1 FROM tasker_task_transitions s
                              WHERE s.task_uuid = u.task_uuid AND s.most_recent = true
                                AND s.to_state IN ('error', 'cancelled', 'resolved_manually'))$q$
          INTO v_rows USING v_all;
        IF cardinality(v_rows) > p_examine - v_examined THEN
          -- More in flight than the page examines: the first ones, in the phase's order; the next
          -- page goes on after the last of them.
          SELECT array_agg(f.task_uuid ORDER BY f.named_task_uuid, f.created_at, f.task_uuid),
                 (array_agg(jsonb_build_object('phase', 'lifetime', 'template', f.named_task_uuid,
                                               'at', f.created_at, 'task', f.task_uuid)
                            ORDER BY f.named_task_uuid DESC, f.created_at DESC, f.task_uuid DESC))[1]
            INTO v_rows, v_phase_last
            FROM (SELECT t.task_uuid, t.named_task_uuid, t.created_at FROM tasker_tasks t
                   WHERE t.task_uuid = ANY (v_rows)
                   ORDER BY t.named_task_uuid, t.created_at, t.task_uuid
                   LIMIT p_examine - v_examined) f;
          v_more := true;
        END IF;
        v_candidates := v_rows;
        v_phase_examined := cardinality(v_rows);
      END IF;
    END IF;
    v_examined := v_examined + v_phase_examined;
    IF v_phase_last IS NOT NULL THEN v_last_candidate := v_phase_last; END IF;

    -- Nothing to judge: no statement.
    IF cardinality(v_candidates) > 0 THEN
      -- The judge (stale_tasks_judged), then, in a real run, the writes, in one statement; rows come
      -- back in the phase's order, so the last one says where a full page ends.
      IF p_dry_run THEN
        OPEN v_found FOR
          WITH found AS MATERIALIZED (
            SELECT c.*,
                   CASE WHEN c.do_dlq THEN task_dlq_reason(c.task_uuid, c.current_state, p_enabled_reasons) END AS reason
              FROM stale_tasks_judged(v_candidates, v_phase, v_state_cut, p_batch_size - v_taken, p_now,
                                      p_waiting_deps_minutes, p_waiting_retry_minutes, p_steps_in_process_minutes,
                                      p_task_max_lifetime_hours, p_auto_transition_to_error, p_auto_move_to_dlq,
                                      p_enabled_reasons, false) c
          )
          SELECT f.*, false AS transitioned, NULL::uuid AS entry_uuid, NULL::timestamptz AS stamp,
                 nt.configuration -> 'lifecycle' AS lifecycle
            FROM found f
            JOIN tasker_named_tasks nt ON nt.named_task_uuid = f.named_task_uuid
           ORDER BY CASE WHEN v_phase = 'lifetime' THEN f.named_task_uuid END,
                    CASE WHEN v_phase = 'lifetime' THEN f.task_created_at ELSE f.state_entered_at END,
                    f.task_uuid;
      ELSE
        OPEN v_found FOR
          WITH found AS MATERIALIZED (
            SELECT c.*,
                   CASE WHEN c.do_dlq THEN task_dlq_reason(c.task_uuid, c.current_state, p_enabled_reasons) END AS reason,
                   greatest(clock_timestamp(), c.state_entered_at) AS stamp
              FROM stale_tasks_judged(v_candidates, v_phase, v_state_cut, p_batch_size - v_taken, p_now,
                                      p_waiting_deps_minutes, p_waiting_retry_minutes, p_steps_in_process_minutes,
                                      p_task_max_lifetime_hours, p_auto_transition_to_error, p_auto_move_to_dlq,
                                      p_enabled_reasons, true) c
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
                 nt.configuration -> 'lifecycle' AS lifecycle
            FROM found f
            LEFT JOIN errored e ON e.task_uuid = f.task_uuid
            LEFT JOIN entered q ON q.task_uuid = f.task_uuid
            JOIN tasker_named_tasks nt ON nt.named_task_uuid = f.named_task_uuid
           ORDER BY CASE WHEN v_phase = 'lifetime' THEN f.named_task_uuid END,
                    CASE WHEN v_phase = 'lifetime' THEN f.task_created_at ELSE f.state_entered_at END,
                    f.task_uuid;
      END IF;

      next_cursor := NULL;
      LOOP
        FETCH v_found INTO r;
        EXIT WHEN NOT FOUND;
        v_taken := v_taken + 1;
        v_last_taken := CASE WHEN v_phase = 'state'
          THEN jsonb_build_object('phase', 'state', 'at', r.state_entered_at, 'task', r.task_uuid)
          ELSE jsonb_build_object('phase', 'lifetime', 'template', r.named_task_uuid, 'at', r.task_created_at,
                                  'task', r.task_uuid) END;
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
      CLOSE v_found;
    END IF;

    -- Where the next page starts: after the last task taken when the page is full (candidates after
    -- it were not judged), else after the last candidate when the examining budget is spent (every
    -- candidate was judged), else the next phase, or nothing when the lifetime phase is through.
    IF v_taken >= p_batch_size THEN
      v_next := v_last_taken;
      EXIT;
    ELSIF v_more THEN
      v_next := v_last_candidate;
      EXIT;
    ELSIF v_phase = 'state' THEN
      v_phase := 'lifetime';
      v_cursor := NULL;
    ELSE
      v_next := NULL;
      EXIT;
    END IF;
  END LOOP;

  task_uuid := NULL; namespace_name := NULL; task_name := NULL; current_state := NULL;
  time_in_state_minutes := NULL; staleness_threshold_minutes := NULL; action_taken := NULL;
  moved_to_dlq := NULL; transition_success := NULL; stale_by := NULL; task_age_minutes := NULL;
  planned_action := NULL; dlq_entry_uuid := NULL; dlq_reason := NULL; named_task_uuid := NULL;
  template_problems := NULL; state_entered_at := NULL;
  next_cursor := coalesce(v_next, 'null'::jsonb);
  RETURN NEXT;
END
$fn$;
