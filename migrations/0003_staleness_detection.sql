-- 0003: staleness detection (upstream-facts.md §2.2, §3, with the [analysis] gaps closed).
--
-- Pieces, smallest first:
--   tasker_lifecycle_settings        the effective detection settings, written from config by the
--                                    detection job so views and the 6-argument function agree with it
--   lifecycle_minutes                one per-template minutes value, or NULL when absent or malformed
--   lifecycle_config_problems        what is wrong with a template's lifecycle object, as text
--   calculate_staleness_threshold    per-state threshold: template first, then the default
--   task_staleness_policy            everything detection needs from a template, in one row
--   task_has_dependency_cycle        whether a task's step edges form a cycle
--   task_dlq_reason                  the most specific enabled reason that fits a stale task
--   dlq_detection_snapshot           the small snapshot written at detection (enrichment adds more)
--   get_stale_tasks_for_dlq          discovery: one bounded, locking read of stale candidates
--   create_dlq_entry                 one pending entry (NULL when one is already pending)
--   transition_stale_task_to_error   one compare-and-swap to error
--   detect_stale_tasks_batch         one detection batch, every option explicit, rich result
--   detect_and_transition_stale_tasks  upstream's stable 6-argument entry point

CREATE TABLE tasker_lifecycle_settings (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  waiting_for_dependencies_minutes integer NOT NULL DEFAULT 60 CHECK (waiting_for_dependencies_minutes > 0),
  waiting_for_retry_minutes integer NOT NULL DEFAULT 30 CHECK (waiting_for_retry_minutes > 0),
  steps_in_process_minutes integer NOT NULL DEFAULT 30 CHECK (steps_in_process_minutes > 0),
  task_max_lifetime_hours integer NOT NULL DEFAULT 24 CHECK (task_max_lifetime_hours > 0),
  auto_transition_to_error boolean NOT NULL DEFAULT true,
  -- Whether detection may open investigations at all (actions.auto_move_to_dlq, dlq.enabled and
  -- dlq.auto_dlq_on_staleness together).
  auto_move_to_dlq boolean NOT NULL DEFAULT true,
  enabled_reasons dlq_reason[] NOT NULL DEFAULT enum_range(NULL::dlq_reason),
  -- NOTIFY channel for detection events; NULL when events are off.
  event_channel text CHECK (event_channel IS NULL OR length(event_channel) BETWEEN 1 AND 63),
  max_pending_age_hours integer NOT NULL DEFAULT 168 CHECK (max_pending_age_hours > 0),
  updated_at timestamptz NOT NULL DEFAULT now(),
  updated_by text
);
INSERT INTO tasker_lifecycle_settings DEFAULT VALUES;

CREATE FUNCTION lifecycle_minutes(p_lifecycle jsonb, p_key text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(p_lifecycle -> p_key) = 'number' THEN
    CASE WHEN (p_lifecycle ->> p_key)::numeric BETWEEN 1 AND 2147483647
              AND (p_lifecycle ->> p_key)::numeric = trunc((p_lifecycle ->> p_key)::numeric)
         THEN (p_lifecycle ->> p_key)::numeric::integer END
  END
$$;

CREATE FUNCTION lifecycle_config_problems(p_lifecycle jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN p_lifecycle IS NULL OR jsonb_typeof(p_lifecycle) = 'null' THEN ARRAY[]::text[]
    WHEN jsonb_typeof(p_lifecycle) <> 'object' THEN
      ARRAY['lifecycle must be an object, got ' || p_lifecycle::text]
    ELSE coalesce((
      SELECT array_agg(problem ORDER BY key)
        FROM (
          SELECT e.key, CASE
            WHEN e.key IN ('max_duration_minutes', 'max_waiting_for_dependencies_minutes',
                           'max_waiting_for_retry_minutes', 'max_steps_in_process_minutes') THEN
              CASE WHEN jsonb_typeof(e.value) = 'null' OR lifecycle_minutes(p_lifecycle, e.key) IS NOT NULL THEN NULL
                   ELSE e.key || ' must be a positive whole number of minutes, got ' || e.value::text END
            WHEN e.key = 'staleness_action' THEN
              CASE WHEN e.value IN ('"dlq"', '"error"', '"none"') THEN NULL
                   ELSE 'staleness_action must be one of "dlq", "error", "none", got ' || e.value::text END
            WHEN e.key IN ('auto_fail_on_timeout', 'auto_dlq_on_timeout') THEN
              CASE WHEN jsonb_typeof(e.value) IN ('boolean', 'null') THEN NULL
                   ELSE e.key || ' must be true or false, got ' || e.value::text END
            ELSE 'unknown key ' || e.key
          END AS problem
          FROM jsonb_each(p_lifecycle) e
        ) checked
       WHERE problem IS NOT NULL), ARRAY[]::text[])
  END
$$;

-- Upstream's name and signature. p_template_config is the template's whole configuration.
-- States without their own threshold get 1440 minutes, as upstream.
CREATE FUNCTION calculate_staleness_threshold(
  p_task_state varchar,
  p_template_config jsonb,
  p_default_waiting_deps integer DEFAULT 60,
  p_default_waiting_retry integer DEFAULT 30,
  p_default_steps_process integer DEFAULT 30
) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE p_task_state
    WHEN 'waiting_for_dependencies' THEN
      coalesce(lifecycle_minutes(p_template_config -> 'lifecycle', 'max_waiting_for_dependencies_minutes'), p_default_waiting_deps)
    WHEN 'waiting_for_retry' THEN
      coalesce(lifecycle_minutes(p_template_config -> 'lifecycle', 'max_waiting_for_retry_minutes'), p_default_waiting_retry)
    WHEN 'steps_in_process' THEN
      coalesce(lifecycle_minutes(p_template_config -> 'lifecycle', 'max_steps_in_process_minutes'), p_default_steps_process)
    ELSE 1440
  END
$$;

-- One row: the thresholds and actions a template asks for in a given state. A malformed value is
-- ignored (NULL), so the task falls back to the default for that key; lifecycle_config_problems says why.
CREATE FUNCTION task_staleness_policy(
  p_template_config jsonb,
  p_task_state varchar,
  p_default_waiting_deps integer,
  p_default_waiting_retry integer,
  p_default_steps_process integer,
  p_default_lifetime_hours integer
) RETURNS TABLE (
  state_threshold_minutes integer,
  lifetime_minutes integer,
  staleness_action varchar,
  auto_fail_on_timeout boolean,
  auto_dlq_on_timeout boolean
)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT
    calculate_staleness_threshold(p_task_state, p_template_config,
                                  p_default_waiting_deps, p_default_waiting_retry, p_default_steps_process),
    coalesce(lifecycle_minutes(p_template_config -> 'lifecycle', 'max_duration_minutes'), p_default_lifetime_hours * 60),
    CASE WHEN p_template_config -> 'lifecycle' -> 'staleness_action' IN ('"dlq"', '"error"', '"none"')
         THEN (p_template_config -> 'lifecycle' ->> 'staleness_action')::varchar ELSE 'dlq'::varchar END,
    CASE WHEN jsonb_typeof(p_template_config -> 'lifecycle' -> 'auto_fail_on_timeout') = 'boolean'
         THEN (p_template_config -> 'lifecycle' ->> 'auto_fail_on_timeout')::boolean END,
    CASE WHEN jsonb_typeof(p_template_config -> 'lifecycle' -> 'auto_dlq_on_timeout') = 'boolean'
         THEN (p_template_config -> 'lifecycle' ->> 'auto_dlq_on_timeout')::boolean END
$$;

-- Whether the edges between a task's steps form a cycle. UNION (not UNION ALL) makes the walk
-- terminate on cyclic graphs; the work is bounded by steps x reachable steps of this one task
-- (idx_workflow_steps_task_uuid, idx_step_edges_from_step_uuid). plpgsql rather than SQL so the
-- plan is cached per connection: detection calls this once per stale task.
CREATE FUNCTION task_has_dependency_cycle(p_task_uuid uuid) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN EXISTS (
    WITH RECURSIVE reach(origin, step) AS (
      SELECT e.from_step_uuid, e.to_step_uuid
        FROM tasker_workflow_steps s
        JOIN tasker_workflow_step_edges e ON e.from_step_uuid = s.workflow_step_uuid
       WHERE s.task_uuid = p_task_uuid
      UNION
      SELECT r.origin, e.to_step_uuid
        FROM reach r
        JOIN tasker_workflow_step_edges e ON e.from_step_uuid = r.step
    )
    SELECT 1 FROM reach WHERE origin = step);
END
$$;

-- The most specific reason that fits a stale task, among the enabled ones:
--   dependency_cycle_detected  its steps' edges form a cycle (it can never finish);
--   max_retries_exceeded       a step that has not finished has used all its attempts, or failed
--                              and may not be retried;
--   worker_unavailable         in steps_in_process, steps were handed out (enqueued) but no worker
--                              has started any of them;
--   staleness_timeout          otherwise.
-- NULL when none of the fitting reasons is enabled. Reads the task's steps and their current
-- transitions (idx_workflow_steps_task_uuid, idx_step_transitions_uuid_most_recent).
CREATE FUNCTION task_dlq_reason(p_task_uuid uuid, p_task_state varchar, p_enabled_reasons dlq_reason[])
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

-- The snapshot written at detection: small and fast. The enrichment job adds steps, history, the
-- dependency graph and a diagnosis later.
CREATE FUNCTION dlq_detection_snapshot(
  p_task_uuid uuid,
  p_namespace_name varchar,
  p_task_name varchar,
  p_current_state varchar,
  p_time_in_state_minutes integer,
  p_threshold_minutes integer,
  p_snapshot_at timestamptz
) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'task_uuid', p_task_uuid,
    'namespace', p_namespace_name,
    'task_name', p_task_name,
    'current_state', p_current_state,
    'time_in_state_minutes', p_time_in_state_minutes,
    'threshold_minutes', p_threshold_minutes,
    'snapshot_timestamp', p_snapshot_at,
    'task_details', (
      SELECT jsonb_build_object(
        'correlation_id', t.correlation_id,
        'priority', t.priority,
        'requested_at', t.requested_at,
        'created_at', t.created_at,
        'initiator', t.initiator,
        'source_system', t.source_system,
        'reason', t.reason)
        FROM tasker_tasks t WHERE t.task_uuid = p_task_uuid))
$$;

-- Discovery. Reads the in-flight index (idx_task_transitions_in_flight), so its cost follows the
-- number of tasks not in a terminal state, never the number of finished ones. Returns at most
-- p_batch_size stale tasks, oldest state entry first, and locks their current transition row
-- (FOR UPDATE SKIP LOCKED) so concurrent passes take disjoint tasks and nobody changes their state
-- before this transaction ends. Excluded: tasks with a pending investigation, and tasks on which
-- nothing would be done (template staleness_action "none", or every action switched off), which
-- would otherwise fill every batch forever.
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
  p_enabled_reasons dlq_reason[] DEFAULT enum_range(NULL::dlq_reason)
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
  do_dlq boolean
)
LANGUAGE sql VOLATILE AS $$
  SELECT tr.task_uuid,
         ns.name,
         nt.name,
         tr.to_state,
         round(extract(epoch FROM p_now - tr.created_at) / 60, 2),
         CASE WHEN tr.created_at <= p_now - make_interval(mins => pol.state_threshold_minutes)
              THEN pol.state_threshold_minutes ELSE pol.lifetime_minutes END,
         round(extract(epoch FROM p_now - t.created_at) / 60, 2),
         tr.task_transition_uuid,
         nt.named_task_uuid,
         (CASE WHEN tr.created_at <= p_now - make_interval(mins => pol.state_threshold_minutes)
               THEN 'state_threshold' ELSE 'task_lifetime' END)::varchar,
         pol.lifetime_minutes,
         act.do_transition,
         act.do_dlq
    FROM tasker_task_transitions tr
    JOIN tasker_tasks t ON t.task_uuid = tr.task_uuid
    JOIN tasker_named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
    JOIN tasker_task_namespaces ns ON ns.task_namespace_uuid = nt.task_namespace_uuid
   CROSS JOIN LATERAL task_staleness_policy(nt.configuration, tr.to_state, p_default_waiting_deps,
                                            p_default_waiting_retry, p_default_steps_process,
                                            p_max_lifetime_hours) pol
   CROSS JOIN LATERAL (
     SELECT p_auto_transition_to_error
              AND pol.staleness_action <> 'none'
              AND coalesce(pol.auto_fail_on_timeout, true) AS do_transition,
            p_auto_move_to_dlq
              AND pol.staleness_action = 'dlq'
              AND coalesce(pol.auto_dlq_on_timeout, true) AS wants_dlq
   ) want
   CROSS JOIN LATERAL (
     SELECT want.do_transition,
            want.wants_dlq AND CASE WHEN 'staleness_timeout' = ANY (p_enabled_reasons) THEN true
                                    ELSE task_dlq_reason(tr.task_uuid, tr.to_state, p_enabled_reasons) IS NOT NULL
                               END AS do_dlq
   ) act
   WHERE tr.most_recent = true
     AND tr.to_state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
     AND (tr.created_at <= p_now - make_interval(mins => pol.state_threshold_minutes)
          OR t.created_at <= p_now - make_interval(mins => pol.lifetime_minutes))
     AND (act.do_transition OR act.do_dlq)
     AND NOT EXISTS (SELECT 1 FROM tasker_tasks_dlq d
                      WHERE d.task_uuid = tr.task_uuid AND d.resolution_status = 'pending')
   ORDER BY tr.created_at, tr.task_uuid
   LIMIT p_batch_size
   FOR UPDATE OF tr SKIP LOCKED
$$;

-- Upstream's helper: one pending entry, or NULL when the task already has one. Unlike upstream it
-- does not turn other errors into warnings: a bad reason or a missing task is an error.
CREATE FUNCTION create_dlq_entry(
  p_task_uuid uuid,
  p_namespace_name varchar,
  p_task_name varchar,
  p_current_state varchar,
  p_time_in_state_minutes integer,
  p_threshold_minutes integer,
  p_dlq_reason varchar DEFAULT 'staleness_timeout'
) RETURNS uuid
LANGUAGE sql VOLATILE AS $$
  INSERT INTO tasker_tasks_dlq (task_uuid, original_state, dlq_reason, task_snapshot, metadata)
  VALUES (
    p_task_uuid, p_current_state, p_dlq_reason::dlq_reason,
    dlq_detection_snapshot(p_task_uuid, p_namespace_name, p_task_name, p_current_state,
                           p_time_in_state_minutes, p_threshold_minutes, now()),
    jsonb_build_object('detection_method', 'automatic_staleness',
                       'time_in_state_minutes', p_time_in_state_minutes,
                       'threshold_minutes', p_threshold_minutes))
  ON CONFLICT (task_uuid) WHERE resolution_status = 'pending' DO NOTHING
  RETURNING dlq_entry_uuid
$$;

CREATE FUNCTION transition_stale_task_to_error(
  p_task_uuid uuid,
  p_current_state varchar,
  p_namespace_name varchar,
  p_task_name varchar
) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
  SELECT transition_task_state_atomic(
    p_task_uuid, p_current_state, 'error', NULL,
    jsonb_build_object('reason', 'staleness_timeout', 'namespace', p_namespace_name,
                       'task_name', p_task_name, 'detected_at', now()))
$$;

-- One detection batch with every option explicit; the detection job calls this.
--
-- For each task found by get_stale_tasks_for_dlq (locked, still in the state it was found in):
-- transition to error and/or open a pending investigation, as the switches and the template say,
-- in this one statement, so the entry and the transition commit together or not at all. With
-- p_event_channel set, each task acted on is announced with pg_notify (delivered at commit).
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
  p_event_channel text
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
  template_problems text[]
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  r record;
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

  FOR r IN
    WITH found AS MATERIALIZED (
      SELECT c.*,
             CASE WHEN c.do_dlq THEN task_dlq_reason(c.task_uuid, c.current_state, p_enabled_reasons) END AS reason
        FROM get_stale_tasks_for_dlq(p_waiting_deps_minutes, p_waiting_retry_minutes, p_steps_in_process_minutes,
                                     p_task_max_lifetime_hours, p_batch_size, p_now,
                                     p_auto_transition_to_error, p_auto_move_to_dlq, p_enabled_reasons) c
    ),
    flipped AS (
      UPDATE tasker_task_transitions tr
         SET most_recent = false, updated_at = p_now
        FROM found f
       WHERE NOT p_dry_run AND f.do_transition
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
                                'detected_at', p_now),
             p_now, p_now
        FROM flipped fl
        JOIN found f ON f.task_uuid = fl.task_uuid
      RETURNING tasker_task_transitions.task_uuid
    ),
    entered AS (
      INSERT INTO tasker_tasks_dlq
        (task_uuid, original_state, dlq_reason, dlq_timestamp, task_snapshot, metadata, created_at, updated_at)
      SELECT f.task_uuid, f.current_state, f.reason, p_now,
             dlq_detection_snapshot(f.task_uuid, f.namespace_name, f.task_name, f.current_state,
                                    floor(f.time_in_state_minutes)::integer, f.threshold_minutes, p_now)
               || jsonb_build_object('stale_by', f.stale_by,
                                     'task_age_minutes', floor(f.task_age_minutes)::integer),
             jsonb_build_object('detection_method', 'automatic_staleness',
                                'stale_by', f.stale_by,
                                'time_in_state_minutes', floor(f.time_in_state_minutes)::integer,
                                'threshold_minutes', f.threshold_minutes,
                                'transitioned_to_error', f.do_transition),
             p_now, p_now
        FROM found f
       WHERE NOT p_dry_run AND f.reason IS NOT NULL
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
     ORDER BY f.time_in_state_minutes DESC, f.task_uuid
  LOOP
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
        'detected_at', p_now)::text);
    END IF;

    RETURN NEXT;
  END LOOP;
END
$$;

-- Upstream's entry point, same signature and result columns. Thresholds come from the arguments;
-- the action switches, enabled reasons and event channel come from tasker_lifecycle_settings (the
-- detection job keeps that row equal to the configuration).
CREATE FUNCTION detect_and_transition_stale_tasks(
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
     s.auto_transition_to_error, s.auto_move_to_dlq, s.enabled_reasons, s.event_channel) b
$$;
