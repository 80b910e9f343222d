-- Detection's judge: of the candidate tasks (a page's, from detect_stale_tasks_page), the first
-- p_batch_size that are stale at p_now, in the phase's order, with what would be done to each;
-- with p_lock their current transitions are locked FOR UPDATE SKIP LOCKED, so concurrent passes
-- take disjoint tasks and nobody changes their state before this transaction ends (a task another
-- session holds is passed over). Excluded: tasks with a pending investigation, and tasks on which
-- nothing would be done (template staleness_action "none", or every action switched off), which
-- would otherwise fill every page forever.
--
-- The phases split the tasks in flight by their current state entry, so no task is judged in both:
--   'state'     entered at or before p_state_cut (stale by state, or by age); order (entry, task)
--   'lifetime'  entered after p_state_cut (stale only by age);            order (template, created, task)
-- Each candidate is read by task: its current transition (idx_task_transitions_uuid_most_recent),
-- the task (tasker_tasks_pkey), its template and namespace (primary keys, memoized), its pending
-- entry (idx_dlq_unique_pending_task). The state phase's sort key is written created_at + 0
-- seconds (the same order) so that the planner cannot read idx_task_transitions_in_flight in key
-- order filtering it by the candidates.
CREATE OR REPLACE FUNCTION stale_tasks_judged(
  p_candidates uuid[],
  p_phase text,
  p_state_cut timestamptz,
  p_batch_size integer,
  p_now timestamptz,
  p_default_waiting_deps integer,
  p_default_waiting_retry integer,
  p_default_steps_process integer,
  p_max_lifetime_hours integer,
  p_auto_transition_to_error boolean,
  p_auto_move_to_dlq boolean,
  p_enabled_reasons dlq_reason[],
  p_lock boolean
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
  state_entered_at timestamptz,
  task_created_at timestamptz
)
LANGUAGE plpgsql VOLATILE
SET jit = off
AS $fn$
BEGIN
  IF p_phase NOT IN ('state', 'lifetime') THEN
    RAISE EXCEPTION 'p_phase must be state or lifetime, got %', p_phase USING ERRCODE = '22023';
  END IF;
  RETURN QUERY EXECUTE format($q$
    SELECT tr.task_uuid,
           ns.name,
           nt.name,
           tr.to_state,
           greatest(0, round(extract(epoch FROM $5 - tr.created_at) / 60, 2)),
           CASE WHEN tr.created_at <= $5 - make_interval(mins => pol.state_threshold_minutes)
                THEN pol.state_threshold_minutes ELSE pol.lifetime_minutes END,
           greatest(0, round(extract(epoch FROM $5 - t.created_at) / 60, 2)),
           tr.task_transition_uuid,
           nt.named_task_uuid,
           (CASE WHEN tr.created_at <= $5 - make_interval(mins => pol.state_threshold_minutes)
                 THEN 'state_threshold' ELSE 'task_lifetime' END)::varchar,
           pol.lifetime_minutes,
           act.do_transition,
           act.do_dlq,
           tr.created_at,
           t.created_at
      FROM unnest($1::uuid[]) AS c(task_uuid)
      JOIN tasker_task_transitions tr ON tr.task_uuid = c.task_uuid
      JOIN tasker_tasks t ON t.task_uuid = tr.task_uuid
      JOIN tasker_named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
      JOIN tasker_task_namespaces ns ON ns.task_namespace_uuid = nt.task_namespace_uuid
     CROSS JOIN LATERAL task_staleness_policy(nt.configuration, tr.to_state, $6, $7, $8, $9) pol
     CROSS JOIN LATERAL (
       SELECT $10 AND pol.staleness_action <> 'none' AND coalesce(pol.auto_fail_on_timeout, true) AS do_transition,
              $11 AND pol.staleness_action = 'dlq' AND coalesce(pol.auto_dlq_on_timeout, true) AS wants_dlq
     ) want
     CROSS JOIN LATERAL (
       SELECT want.do_transition,
              want.wants_dlq AND CASE WHEN 'staleness_timeout' = ANY ($12) THEN true
                                      ELSE task_dlq_reason(tr.task_uuid, tr.to_state, $12) IS NOT NULL
                                 END AS do_dlq
     ) act
     WHERE tr.most_recent = true
       AND tr.to_state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
       AND %s
       AND (tr.created_at <= $5 - make_interval(mins => pol.state_threshold_minutes)
            OR t.created_at <= $5 - make_interval(mins => pol.lifetime_minutes))
       AND (act.do_transition OR act.do_dlq)
       AND NOT EXISTS (SELECT 1 FROM tasker_tasks_dlq d
                        WHERE d.task_uuid = tr.task_uuid AND d.resolution_status = 'pending')
     ORDER BY %s
     LIMIT $4
     %s$q$,
    CASE WHEN p_phase = 'state' THEN 'tr.created_at <= $3' ELSE 'tr.created_at > $3' END,
    CASE WHEN p_phase = 'state' THEN 'tr.created_at + interval ''0 seconds'', tr.task_uuid'
         ELSE 't.named_task_uuid, t.created_at, t.task_uuid' END,
    CASE WHEN p_lock THEN 'FOR UPDATE OF tr SKIP LOCKED' ELSE '' END)
  USING p_candidates, p_phase, p_state_cut, p_batch_size, p_now,
        p_default_waiting_deps, p_default_waiting_retry, p_default_steps_process, p_max_lifetime_hours,
        p_auto_transition_to_error, p_auto_move_to_dlq, p_enabled_reasons;
END
$fn$;
