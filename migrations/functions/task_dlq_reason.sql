-- The most specific reason that fits a stale task, among the enabled ones:
--   dependency_cycle_detected  its steps' edges form a cycle (it can never finish);
--   max_retries_exceeded       a step that has not finished has used all its attempts, or failed
--                              and may not be retried;
--   worker_unavailable         in steps_in_process, steps were handed out (enqueued) but no worker
--                              has started any of them;
--   staleness_timeout          otherwise.
-- NULL when none of the fitting reasons is enabled. Reads the task's steps and their current
-- transitions (idx_workflow_steps_task_uuid, idx_step_transitions_uuid_most_recent).
CREATE OR REPLACE FUNCTION task_dlq_reason(p_task_uuid uuid, p_task_state varchar, p_enabled_reasons dlq_reason[])
RETURNS dlq_reason
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF 'dependency_cycle_detected' = ANY (p_enabled_reasons) AND task_has_dependency_cycle(p_task_uuid) THEN
    RETURN 'dependency_cycle_detected';
  END IF;
  IF 'max_retries_exceeded' = ANY (p_enabled_reasons) AND EXISTS (
      SELECT 1
        FROM tasker_workflow_steps s
        LEFT JOIN tasker_workflow_step_transitions st
          ON st.workflow_step_uuid = s.workflow_step_uuid AND st.most_recent = true
       WHERE s.task_uuid = p_task_uuid
         AND coalesce(st.to_state, 'pending') NOT IN ('complete', 'resolved_manually', 'cancelled')
         AND ((s.max_attempts > 0 AND coalesce(s.attempts, 0) >= s.max_attempts)
              OR (st.to_state = 'error' AND NOT s.retryable))) THEN
    RETURN 'max_retries_exceeded';
  END IF;
  IF 'worker_unavailable' = ANY (p_enabled_reasons) AND p_task_state = 'steps_in_process' AND EXISTS (
      SELECT 1
        FROM tasker_workflow_steps s
        JOIN tasker_workflow_step_transitions st
          ON st.workflow_step_uuid = s.workflow_step_uuid AND st.most_recent = true
       WHERE s.task_uuid = p_task_uuid
      HAVING bool_or(st.to_state = 'enqueued')
         AND NOT bool_or(st.to_state IN ('in_progress', 'enqueued_for_orchestration',
                                         'enqueued_as_error_for_orchestration'))) THEN
    RETURN 'worker_unavailable';
  END IF;
  IF 'staleness_timeout' = ANY (p_enabled_reasons) THEN
    RETURN 'staleness_timeout';
  END IF;
  RETURN NULL;
END
$$;
