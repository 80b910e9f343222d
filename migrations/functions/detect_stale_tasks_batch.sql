-- The previous build's detection call, kept for its workers during a rolling upgrade: one page of
-- the state phase of detect_stale_tasks_page from the given cursor (p_lifetime_candidates is
-- ignored: this build's pages find lifetime-stale tasks themselves), with upstream's result
-- columns and the page's last (state entry, task uuid). A caller that stops at a page shorter than
-- p_batch_size (as the previous build did) leaves the rest to the next pass. Drop it with a
-- numbered migration once no worker of that build runs.
CREATE OR REPLACE FUNCTION detect_stale_tasks_batch(
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
  p_after_task_uuid uuid DEFAULT NULL,
  p_lifetime_candidates uuid[] DEFAULT NULL
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
LANGUAGE sql VOLATILE AS $$
  SELECT p.task_uuid, p.namespace_name, p.task_name, p.current_state, p.time_in_state_minutes,
         p.staleness_threshold_minutes, p.action_taken, p.moved_to_dlq, p.transition_success, p.stale_by,
         p.task_age_minutes, p.planned_action, p.dlq_entry_uuid, p.dlq_reason, p.named_task_uuid,
         p.template_problems, p.state_entered_at,
         max(p.state_entered_at) OVER () AS page_last_entered_at,
         (array_agg(p.task_uuid) OVER (ORDER BY p.state_entered_at DESC, p.task_uuid DESC
                                       ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING))[1]
    FROM detect_stale_tasks_page(p_now, p_dry_run, p_batch_size, 2 * p_batch_size,
                                 p_waiting_deps_minutes, p_waiting_retry_minutes, p_steps_in_process_minutes,
                                 p_task_max_lifetime_hours, p_auto_transition_to_error, p_auto_move_to_dlq,
                                 p_enabled_reasons, p_event_channel,
                                 CASE WHEN p_after_task_uuid IS NULL THEN NULL
                                      ELSE jsonb_build_object('phase', 'state', 'at', p_after_state_entered_at,
                                                              'task', p_after_task_uuid) END) p
   WHERE p.task_uuid IS NOT NULL
$$;
