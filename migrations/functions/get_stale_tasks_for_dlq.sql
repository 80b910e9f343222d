-- Discovery: the stale tasks after the cursor, at most p_batch_size, in (state entry, task uuid)
-- order. With p_lock (real runs) their current transition rows are locked FOR UPDATE SKIP LOCKED,
-- so concurrent passes take disjoint tasks and nobody changes their state before this transaction
-- ends; without it (dry runs) nothing is locked and nobody waits. Excluded: tasks with a pending
-- investigation, and tasks on which nothing would be done (template staleness_action "none", or
-- every action switched off), which would otherwise fill every batch forever.
--
-- It judges only candidates, gathered by bounded range scans (migration 0060):
--   by state     idx_task_transitions_in_flight from the cursor up to p_now - the smallest state
--                threshold in force (the three defaults, 1440 for the other states, and every
--                template's max_waiting_for_dependencies_minutes / max_waiting_for_retry_minutes /
--                max_steps_in_process_minutes). No task whose state entry is younger can be stale
--                by state.
--   by lifetime  p_lifetime_candidates, or stale_lifetime_candidates(p_now, ...) when NULL: it
--                does not depend on the cursor, so the detection job gathers it once per pass.
-- Candidates are then read by task and judged with task_staleness_policy; the first p_batch_size
-- are returned. The judge's sort key is written created_at + 0 seconds (the same order) so that the
-- planner cannot read idx_task_transitions_in_flight in key order filtering it by the candidates,
-- which walks the whole index when the candidates are few or late in it.
-- The first five parameters and seven columns are upstream's; the rest are this system's.
CREATE OR REPLACE FUNCTION get_stale_tasks_for_dlq(
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
  p_after_task_uuid uuid DEFAULT NULL,
  p_lifetime_candidates uuid[] DEFAULT NULL
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
LANGUAGE plpgsql VOLATILE
-- JIT compilation (about 20 ms per call, measured) costs more than these statements take.
SET jit = off
AS $fn$
#variable_conflict use_column
DECLARE
  v_min_state_minutes integer;
  v_candidates uuid[];
BEGIN
  IF (p_after_state_entered_at IS NULL) <> (p_after_task_uuid IS NULL) THEN
    RAISE EXCEPTION 'p_after_state_entered_at and p_after_task_uuid go together, got % and %',
      p_after_state_entered_at, p_after_task_uuid USING ERRCODE = '22023';
  END IF;

  -- The smallest state threshold any in-flight task can have: calculate_staleness_threshold gives
  -- each state a template value, else a default, else 1440; least() skips NULLs (absent or
  -- malformed template values, which fall back to the defaults counted here anyway).
  SELECT least(p_default_waiting_deps, p_default_waiting_retry, p_default_steps_process, 1440,
               min(lifecycle_minutes(l.lifecycle, 'max_waiting_for_dependencies_minutes')),
               min(lifecycle_minutes(l.lifecycle, 'max_waiting_for_retry_minutes')),
               min(lifecycle_minutes(l.lifecycle, 'max_steps_in_process_minutes')))
    INTO v_min_state_minutes
    FROM (SELECT nt.configuration -> 'lifecycle' AS lifecycle
            FROM tasker_named_tasks nt
           WHERE nt.configuration -> 'lifecycle' IS NOT NULL) l;

  -- Candidates by state: the in-flight index from the cursor up to the smallest state threshold.
  -- EXECUTE plans with the values, so the range's estimate comes from the column's statistics.
  EXECUTE $q$
    SELECT coalesce(array_agg(i.task_uuid), '{}')
      FROM tasker_task_transitions i
     WHERE i.most_recent = true
       AND i.to_state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
       AND i.created_at >= coalesce($1, '-infinity'::timestamptz)
       AND i.created_at <= $2$q$
    INTO v_candidates
    USING p_after_state_entered_at, p_now - make_interval(mins => v_min_state_minutes);

  -- Candidates by lifetime: given by the caller (gathered once per pass), else gathered here.
  v_candidates := v_candidates || coalesce(p_lifetime_candidates, stale_lifetime_candidates(p_now, p_max_lifetime_hours));

  SELECT coalesce(array_agg(DISTINCT c), '{}') INTO v_candidates FROM unnest(v_candidates) c;

  -- The judge: 0040's query, reading the candidates' current transitions by task
  -- (idx_task_transitions_uuid_most_recent). The sort key is written created_at + 0 seconds (the
  -- same order) so that the planner cannot read idx_task_transitions_in_flight in key order and
  -- filter it by the candidate list: that walks the whole index whenever the candidates are few or
  -- late in it (lifetime-stale tasks with recent state entries, finished tasks not marked complete).
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
      FROM unnest($12::uuid[]) AS c(task_uuid)
      JOIN tasker_task_transitions tr ON tr.task_uuid = c.task_uuid
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
     ORDER BY tr.created_at + interval '0 seconds', tr.task_uuid
     LIMIT $5
     %s$q$, CASE WHEN p_lock THEN 'FOR UPDATE OF tr SKIP LOCKED' ELSE '' END)
  USING p_default_waiting_deps, p_default_waiting_retry, p_default_steps_process, p_max_lifetime_hours,
        p_batch_size, p_now, p_auto_transition_to_error, p_auto_move_to_dlq, p_enabled_reasons,
        p_after_state_entered_at, p_after_task_uuid, v_candidates;
END
$fn$;
