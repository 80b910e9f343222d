-- One detection batch with every option explicit; the detection job calls this, page by page:
-- pass the previous call's page_last_entered_at / page_last_task_uuid as p_after_* (NULL for the
-- first page), and the pass's lifetime candidates (stale_lifetime_candidates) as
-- p_lifetime_candidates (NULL: discovery gathers them). A page that returns fewer than
-- p_batch_size rows is the last.
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
                                       false, p_after_state_entered_at, p_after_task_uuid,
                                       p_lifetime_candidates) c
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
                                       true, p_after_state_entered_at, p_after_task_uuid,
                                       p_lifetime_candidates) c
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
