-- 0010: DLQ snapshot enrichment (issue 3).
--
-- Detection writes a small snapshot fast (dlq_detection_snapshot). The enrichment job later adds,
-- in the same task_snapshot, everything an investigator needs: the task's steps, the dependency
-- graph, step and task transition history, the template's config, and a diagnosis. Every addition
-- is bounded: lists by item caps, single JSON values by a byte cap, the whole snapshot by a byte cap
-- (falling back to less detail), each cut marked explicitly. The task itself is only read.
--
-- Pieces, smallest first:
--   idx_dlq_pending_unenriched     the sweeper's work list: pending entries not enriched yet
--   dlq_capped_json                one JSON value, or a {"truncated": true, ...} marker if too big
--   dlq_bounded_list               {"total", "items", "truncated", "omitted"} for a capped list
--   dlq_step_error                 a step's error, from its results
--   dlq_error_text, dlq_and_more, dlq_minutes_text   short texts for the human summary
--   dlq_enrichment_diagnosis       counts and diagnosis (blocking steps, exhausted retries, cycle,
--                                  oldest waiting step, summary)
--   dlq_enrichment_details         steps, edges, step and task transitions, template config
--   dlq_enriched_snapshot          the whole enriched snapshot, within the size limit
--
-- Enrichment is recorded in the snapshot itself (task_snapshot -> 'enrichment'), so the table keeps
-- upstream's columns. An entry is enriched once: the job only writes entries without that key.

-- Pending entries without enrichment, oldest first: exactly the sweeper's query (ORDER BY
-- dlq_timestamp, dlq_entry_uuid LIMIT n). Entries leave the index when enriched or resolved, so it
-- stays as small as the backlog.
CREATE INDEX idx_dlq_pending_unenriched ON tasker_tasks_dlq (dlq_timestamp, dlq_entry_uuid)
  WHERE resolution_status = 'pending' AND NOT (task_snapshot ? 'enrichment');

-- p_value itself when its JSON text fits in p_max_bytes, else a marker
-- {"truncated": true, "original_bytes": N, "preview": "<the first characters of its JSON text>"}
-- whose own JSON text fits in p_max_bytes (the preview shrinks until it does).
CREATE FUNCTION dlq_capped_json(p_value jsonb, p_max_bytes integer) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  v_text text;
  v_bytes integer;
  v_keep integer;
  v_marker jsonb;
BEGIN
  IF p_value IS NULL THEN
    RETURN NULL;
  END IF;
  v_text := p_value::text;
  v_bytes := octet_length(v_text);
  IF v_bytes <= p_max_bytes THEN
    RETURN p_value;
  END IF;
  v_keep := p_max_bytes;
  LOOP
    v_marker := jsonb_build_object('truncated', true, 'original_bytes', v_bytes, 'preview', left(v_text, v_keep));
    EXIT WHEN v_keep = 0 OR octet_length(v_marker::text) <= p_max_bytes;
    -- Shrink in proportion to the overshoot (escaping and multi-byte characters make the marker
    -- bigger than the characters kept), and always by at least one character.
    v_keep := greatest(0, least(v_keep - 1,
      (v_keep::bigint * (p_max_bytes - 64) / octet_length(v_marker::text))::integer));
  END LOOP;
  RETURN v_marker;
END
$$;

-- A list cut to its first items: how many there are, which are shown, and how many were left out.
CREATE FUNCTION dlq_bounded_list(p_items jsonb, p_total bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT jsonb_build_object(
    'total', p_total,
    'items', coalesce(p_items, '[]'::jsonb),
    'truncated', p_total > jsonb_array_length(coalesce(p_items, '[]'::jsonb)),
    'omitted', p_total - jsonb_array_length(coalesce(p_items, '[]'::jsonb)))
$$;

-- The error a step reported: the "error" member of its results object (a string or an object such
-- as {"message": ..., "error_type": ...}); NULL when there is none.
CREATE FUNCTION dlq_step_error(p_results jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT nullif(p_results -> 'error', 'null'::jsonb)
$$;

-- One line of at most p_max_chars for an error value: its message when it has one.
CREATE FUNCTION dlq_error_text(p_error jsonb, p_max_chars integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT left(regexp_replace(
    CASE jsonb_typeof(p_error)
      WHEN 'string' THEN p_error #>> '{}'
      WHEN 'object' THEN coalesce(p_error ->> 'message', p_error::text)
      ELSE p_error::text
    END, '\s+', ' ', 'g'), p_max_chars)
$$;

-- " and 7 more" when a list of p_total names shows only p_shown, else "".
CREATE FUNCTION dlq_and_more(p_total bigint, p_shown integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_total > p_shown THEN format(' and %s more', p_total - p_shown) ELSE '' END
$$;

-- 95 -> "1h35m", 3000 -> "2d2h" (as the CLI prints durations).
CREATE FUNCTION dlq_minutes_text(p_minutes integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN p_minutes < 60 THEN p_minutes || 'm'
    WHEN p_minutes < 1440 THEN (p_minutes / 60) || 'h' || CASE WHEN p_minutes % 60 > 0 THEN (p_minutes % 60) || 'm' ELSE '' END
    ELSE (p_minutes / 1440) || 'd' || CASE WHEN p_minutes % 1440 >= 60 THEN ((p_minutes % 1440) / 60) || 'h' ELSE '' END
  END
$$;

-- Counts and diagnosis of one task's step graph, judged at p_at.
--   done          complete or resolved_manually (what successors wait for);
--   waiting       a step state that still expects something to happen (pending, enqueued,
--                 in_progress, enqueued_*_for_orchestration, waiting_for_retry);
--   blocking      not done, and either no unfinished predecessor (progress stops here) or on a
--                 cycle (its members wait on each other forever);
--   exhausted     not complete/resolved_manually/cancelled, and attempts >= max_attempts, or in
--                 error and not retryable (the rule task_dlq_reason uses for max_retries_exceeded);
--   on a cycle    reachable from itself along the edges.
-- Lists hold at most p_max_items steps; neighbour names at most p_max_names; errors at most
-- p_max_error_bytes. Reads idx_workflow_steps_task_uuid, idx_step_transitions_uuid_most_recent,
-- idx_step_edges_from_step_uuid, idx_task_transitions_uuid_sort_key; the work is bounded by this
-- one task's graph (the cycle walk by steps x reachable steps, as task_has_dependency_cycle).
CREATE FUNCTION dlq_enrichment_diagnosis(
  p_task_uuid uuid,
  p_at timestamptz,
  p_max_items integer,
  p_max_names integer,
  p_max_error_bytes integer
) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  WITH RECURSIVE
  steps AS MATERIALIZED (
    SELECT s.workflow_step_uuid AS id, ns.name::text AS name,
           coalesce(st.to_state, 'pending')::text AS state,
           coalesce(st.created_at, s.created_at) AS since,
           coalesce(s.attempts, 0) AS attempts, s.max_attempts, s.retryable, s.last_attempted_at
      FROM tasker_workflow_steps s
      JOIN tasker_named_steps ns ON ns.named_step_uuid = s.named_step_uuid
      LEFT JOIN tasker_workflow_step_transitions st
        ON st.workflow_step_uuid = s.workflow_step_uuid AND st.most_recent = true
     WHERE s.task_uuid = p_task_uuid
  ),
  edges AS MATERIALIZED (
    SELECT e.from_step_uuid AS from_id, e.to_step_uuid AS to_id
      FROM steps s
      JOIN tasker_workflow_step_edges e ON e.from_step_uuid = s.id
  ),
  reach (origin, step) AS (
    SELECT from_id, to_id FROM edges
    UNION
    SELECT r.origin, e.to_id FROM reach r JOIN edges e ON e.from_id = r.step
  ),
  flagged AS MATERIALIZED (
    SELECT s.*,
           s.state IN ('complete', 'resolved_manually') AS done,
           s.state IN ('pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration',
                       'enqueued_as_error_for_orchestration', 'waiting_for_retry') AS waiting,
           EXISTS (SELECT 1 FROM reach r WHERE r.origin = s.id AND r.step = s.id) AS on_cycle,
           CASE WHEN s.state IN ('complete', 'resolved_manually', 'cancelled') THEN NULL
                WHEN s.max_attempts > 0 AND s.attempts >= s.max_attempts THEN 'attempts_exhausted'
                WHEN s.state = 'error' AND NOT s.retryable THEN 'not_retryable'
           END AS exhausted_why
      FROM steps s
  ),
  blocking AS MATERIALIZED (
    SELECT f.* FROM flagged f
     WHERE NOT f.done
       AND (f.on_cycle OR NOT EXISTS (
              SELECT 1 FROM edges e JOIN flagged p ON p.id = e.from_id WHERE e.to_id = f.id AND NOT p.done))
  ),
  counts AS (
    SELECT count(*) AS steps,
           count(*) FILTER (WHERE NOT done) AS unfinished,
           count(*) FILTER (WHERE on_cycle) AS on_cycle,
           count(*) FILTER (WHERE exhausted_why IS NOT NULL) AS exhausted,
           (SELECT count(*) FROM blocking) AS blocking,
           (SELECT count(*) FROM blocking WHERE NOT on_cycle) AS stuck_at,
           (SELECT count(*) FROM edges) AS edges
      FROM flagged
  ),
  blocking_items AS (
    SELECT b.since, b.id, w.err, jsonb_build_object(
             'workflow_step_uuid', b.id, 'name', b.name, 'state', b.state, 'since', b.since,
             'minutes_in_state', floor(extract(epoch FROM p_at - b.since) / 60)::integer,
             'attempts', b.attempts, 'max_attempts', b.max_attempts, 'retryable', b.retryable,
             'on_cycle', b.on_cycle,
             'waits_on', coalesce((SELECT jsonb_agg(x.name ORDER BY x.name) FROM (
                 SELECT p.name FROM edges e JOIN flagged p ON p.id = e.from_id
                  WHERE e.to_id = b.id AND NOT p.done ORDER BY p.name LIMIT p_max_names) x), '[]'::jsonb),
             'waits_on_total', (SELECT count(*) FROM edges e JOIN flagged p ON p.id = e.from_id
                                 WHERE e.to_id = b.id AND NOT p.done),
             'blocks', coalesce((SELECT jsonb_agg(x.name ORDER BY x.name) FROM (
                 SELECT n.name FROM edges e JOIN flagged n ON n.id = e.to_id
                  WHERE e.from_id = b.id AND NOT n.done ORDER BY n.name LIMIT p_max_names) x), '[]'::jsonb),
             'blocks_total', (SELECT count(*) FROM edges e JOIN flagged n ON n.id = e.to_id
                               WHERE e.from_id = b.id AND NOT n.done),
             'downstream_unfinished', (SELECT count(*) FROM reach r JOIN flagged d ON d.id = r.step
                                        WHERE r.origin = b.id AND r.step <> b.id AND NOT d.done),
             'error', dlq_capped_json(w.err, p_max_error_bytes)) AS item
      FROM (SELECT * FROM blocking ORDER BY since, id LIMIT p_max_items) b
      CROSS JOIN LATERAL (SELECT dlq_step_error(ws.results) AS err FROM tasker_workflow_steps ws
                           WHERE ws.workflow_step_uuid = b.id) w
  ),
  exhausted_items AS (
    SELECT x.since, x.id, w.err, jsonb_build_object(
             'workflow_step_uuid', x.id, 'name', x.name, 'state', x.state, 'why', x.exhausted_why,
             'attempts', x.attempts, 'max_attempts', x.max_attempts, 'retryable', x.retryable,
             'last_attempted_at', x.last_attempted_at,
             'error', dlq_capped_json(w.err, p_max_error_bytes)) AS item
      FROM (SELECT * FROM flagged WHERE exhausted_why IS NOT NULL ORDER BY since, id LIMIT p_max_items) x
      CROSS JOIN LATERAL (SELECT dlq_step_error(ws.results) AS err FROM tasker_workflow_steps ws
                           WHERE ws.workflow_step_uuid = x.id) w
  ),
  cycle_items AS (
    SELECT name, id, jsonb_build_object('workflow_step_uuid', id, 'name', name, 'state', state) AS item
      FROM flagged WHERE on_cycle ORDER BY name, id LIMIT p_max_items
  ),
  oldest AS (
    SELECT f.id, f.name, f.state, f.since, floor(extract(epoch FROM p_at - f.since) / 60)::integer AS minutes
      FROM flagged f WHERE f.waiting ORDER BY f.since, f.id LIMIT 1
  )
  SELECT jsonb_build_object(
    'counts', jsonb_build_object(
      'steps', c.steps,
      'unfinished_steps', c.unfinished,
      'steps_by_state', coalesce((SELECT jsonb_object_agg(state, n) FROM (
          SELECT state, count(*) AS n FROM steps GROUP BY state) x), '{}'::jsonb),
      'edges', c.edges,
      'step_transitions', (SELECT count(*) FROM steps s
                            JOIN tasker_workflow_step_transitions st ON st.workflow_step_uuid = s.id),
      'task_transitions', (SELECT count(*) FROM tasker_task_transitions tt WHERE tt.task_uuid = p_task_uuid)),
    'diagnosis', jsonb_build_object(
      'blocking_steps', dlq_bounded_list((SELECT jsonb_agg(item ORDER BY since, id) FROM blocking_items), c.blocking),
      'exhausted_retries', dlq_bounded_list((SELECT jsonb_agg(item ORDER BY since, id) FROM exhausted_items), c.exhausted),
      'cycle', jsonb_build_object(
        'detected', c.on_cycle > 0,
        'steps', dlq_bounded_list((SELECT jsonb_agg(item ORDER BY name, id) FROM cycle_items), c.on_cycle)),
      'oldest_waiting_step', (SELECT jsonb_build_object('workflow_step_uuid', o.id, 'name', o.name, 'state', o.state,
                                                        'since', o.since, 'minutes_waiting', o.minutes)
                                FROM oldest o),
      'summary', concat_ws('; ',
        CASE WHEN c.steps = 0 THEN 'the task has no steps'
             ELSE format('%s of %s steps finished', c.steps - c.unfinished, c.steps) END,
        CASE WHEN c.on_cycle > 0 THEN
          'dependency cycle among ' || (SELECT string_agg(name, ', ' ORDER BY name, id) FROM (
              SELECT name, id FROM flagged WHERE on_cycle ORDER BY name, id LIMIT 5) x)
          || dlq_and_more(c.on_cycle, 5) END,
        CASE WHEN c.stuck_at > 0 THEN
          'stuck at ' || (SELECT string_agg(format('%s (%s%s%s)', x.name, x.state,
                                   CASE WHEN x.max_attempts IS NOT NULL
                                        THEN format(', %s/%s attempts', x.attempts, x.max_attempts) ELSE '' END,
                                   CASE WHEN x.err IS NOT NULL THEN ': ' || dlq_error_text(x.err, 80) ELSE '' END),
                                 ', ' ORDER BY x.since, x.id)
                            FROM (SELECT b.*, dlq_step_error(ws.results) AS err
                                    FROM (SELECT * FROM blocking WHERE NOT on_cycle ORDER BY since, id LIMIT 3) b
                                    JOIN tasker_workflow_steps ws ON ws.workflow_step_uuid = b.id) x)
          || dlq_and_more(c.stuck_at, 3) END,
        CASE WHEN c.exhausted > 0 THEN
          format('%s out of retries: ', CASE WHEN c.exhausted = 1 THEN '1 step' ELSE c.exhausted || ' steps' END)
          || (SELECT string_agg(name, ', ' ORDER BY since, id) FROM (
                SELECT name, since, id FROM flagged WHERE exhausted_why IS NOT NULL ORDER BY since, id LIMIT 3) x)
          || dlq_and_more(c.exhausted, 3) END,
        (SELECT format('oldest waiting step %s (%s for %s)', o.name, o.state, dlq_minutes_text(o.minutes))
           FROM oldest o),
        CASE WHEN c.steps > 0 AND c.unfinished = 0 THEN 'all steps finished, yet the task did not move on' END)),
    'payloads_truncated',
      (SELECT count(*) FROM blocking_items WHERE octet_length(err::text) > p_max_error_bytes)
      + (SELECT count(*) FROM exhausted_items WHERE octet_length(err::text) > p_max_error_bytes))
  FROM counts c
$$;

-- The full lists of one task: steps (unfinished first, then in creation order), edges, step
-- transitions and task transitions (newest first), and the template. Steps and edges hold at most
-- p_max_list_items, each history at most p_max_history_rows, each JSON value (step results and
-- error, transition metadata, template configuration) at most p_max_payload_bytes.
-- "payloads_truncated" counts the values replaced by a marker. Payloads are read only for the rows
-- shown. Reads the same indexes as the diagnosis, plus the primary keys to fetch payloads.
CREATE FUNCTION dlq_enrichment_details(
  p_task_uuid uuid,
  p_max_list_items integer,
  p_max_history_rows integer,
  p_max_payload_bytes integer
) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  WITH
  steps AS MATERIALIZED (
    SELECT s.workflow_step_uuid AS id, ns.name::text AS name,
           coalesce(st.to_state, 'pending')::text AS state,
           coalesce(st.created_at, s.created_at) AS since, s.created_at
      FROM tasker_workflow_steps s
      JOIN tasker_named_steps ns ON ns.named_step_uuid = s.named_step_uuid
      LEFT JOIN tasker_workflow_step_transitions st
        ON st.workflow_step_uuid = s.workflow_step_uuid AND st.most_recent = true
     WHERE s.task_uuid = p_task_uuid
  ),
  step_items AS (
    SELECT s.ord,
           jsonb_build_object(
             'workflow_step_uuid', s.id, 'name', s.name, 'state', s.state, 'state_since', s.since,
             'attempts', w.attempts, 'max_attempts', w.max_attempts, 'retryable', w.retryable,
             'in_process', w.in_process, 'processed', w.processed, 'processed_at', w.processed_at,
             'last_attempted_at', w.last_attempted_at, 'backoff_request_seconds', w.backoff_request_seconds,
             'created_at', w.created_at,
             'result', dlq_capped_json(w.results, p_max_payload_bytes),
             'error', dlq_capped_json(dlq_step_error(w.results), p_max_payload_bytes)) AS item,
           coalesce((octet_length(w.results::text) > p_max_payload_bytes)::integer, 0)
           + coalesce((octet_length(dlq_step_error(w.results)::text) > p_max_payload_bytes)::integer, 0) AS cut
      FROM (SELECT st.*, row_number() OVER (ORDER BY st.state IN ('complete', 'resolved_manually'), st.created_at, st.id) AS ord
              FROM steps st
             ORDER BY ord LIMIT p_max_list_items) s
      JOIN tasker_workflow_steps w ON w.workflow_step_uuid = s.id
  ),
  edge_rows AS MATERIALIZED (
    SELECT e.workflow_step_edge_uuid AS id, e.from_step_uuid, f.name AS from_name, e.to_step_uuid,
           t.name AS to_name, e.name
      FROM steps f
      JOIN tasker_workflow_step_edges e ON e.from_step_uuid = f.id
      LEFT JOIN steps t ON t.id = e.to_step_uuid
  ),
  edge_items AS (
    SELECT from_name, to_name, id,
           jsonb_build_object('from_step_uuid', from_step_uuid, 'from', from_name,
                              'to_step_uuid', to_step_uuid, 'to', to_name, 'name', name) AS item
      FROM edge_rows ORDER BY from_name, to_name, id LIMIT p_max_list_items
  ),
  step_history AS MATERIALIZED (
    SELECT st.workflow_step_transition_uuid AS id, s.name, st.created_at, st.sort_key
      FROM steps s
      JOIN tasker_workflow_step_transitions st ON st.workflow_step_uuid = s.id
  ),
  step_history_items AS (
    SELECT h.created_at, h.sort_key, h.id,
           jsonb_build_object('workflow_step_uuid', x.workflow_step_uuid, 'step', h.name,
                              'from_state', x.from_state, 'to_state', x.to_state, 'sort_key', x.sort_key,
                              'most_recent', x.most_recent, 'created_at', x.created_at,
                              'metadata', dlq_capped_json(x.metadata, p_max_payload_bytes)) AS item,
           coalesce((octet_length(x.metadata::text) > p_max_payload_bytes)::integer, 0) AS cut
      FROM (SELECT * FROM step_history ORDER BY created_at DESC, sort_key DESC, id DESC LIMIT p_max_history_rows) h
      JOIN tasker_workflow_step_transitions x ON x.workflow_step_transition_uuid = h.id
  ),
  task_history_items AS (
    SELECT tt.sort_key,
           jsonb_build_object('from_state', tt.from_state, 'to_state', tt.to_state, 'sort_key', tt.sort_key,
                              'most_recent', tt.most_recent, 'created_at', tt.created_at,
                              'processor_uuid', tt.processor_uuid,
                              'metadata', dlq_capped_json(tt.metadata, p_max_payload_bytes),
                              'transition_metadata', dlq_capped_json(tt.transition_metadata, p_max_payload_bytes)) AS item,
           coalesce((octet_length(tt.metadata::text) > p_max_payload_bytes)::integer, 0)
           + coalesce((octet_length(tt.transition_metadata::text) > p_max_payload_bytes)::integer, 0) AS cut
      FROM tasker_task_transitions tt
     WHERE tt.task_uuid = p_task_uuid
     ORDER BY tt.sort_key DESC LIMIT p_max_history_rows
  ),
  template AS (
    SELECT jsonb_build_object('named_task_uuid', nt.named_task_uuid, 'namespace', ns.name, 'name', nt.name,
                              'version', nt.version,
                              'configuration', dlq_capped_json(nt.configuration, p_max_payload_bytes)) AS item,
           coalesce((octet_length(nt.configuration::text) > p_max_payload_bytes)::integer, 0) AS cut
      FROM tasker_tasks t
      JOIN tasker_named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
      JOIN tasker_task_namespaces ns ON ns.task_namespace_uuid = nt.task_namespace_uuid
     WHERE t.task_uuid = p_task_uuid
  )
  SELECT jsonb_build_object(
    'steps', dlq_bounded_list((SELECT jsonb_agg(item ORDER BY ord) FROM step_items), (SELECT count(*) FROM steps)),
    'edges', dlq_bounded_list((SELECT jsonb_agg(item ORDER BY from_name, to_name, id) FROM edge_items),
                              (SELECT count(*) FROM edge_rows)),
    'step_transitions', dlq_bounded_list(
      (SELECT jsonb_agg(item ORDER BY created_at DESC, sort_key DESC, id DESC) FROM step_history_items),
      (SELECT count(*) FROM step_history)),
    'task_transitions', dlq_bounded_list(
      (SELECT jsonb_agg(item ORDER BY sort_key DESC) FROM task_history_items),
      (SELECT count(*) FROM tasker_task_transitions tt WHERE tt.task_uuid = p_task_uuid)),
    'template', (SELECT item FROM template),
    'payloads_truncated',
      (SELECT coalesce(sum(cut), 0) FROM step_items) + (SELECT coalesce(sum(cut), 0) FROM step_history_items)
      + (SELECT coalesce(sum(cut), 0) FROM task_history_items) + (SELECT coalesce(sum(cut), 0) FROM template))
$$;

-- The enriched snapshot of one entry: p_snapshot (the detection-time keys, which always win) plus
--   enrichment  {version, enriched_at, task_found, requested_detail, detail_level, truncated,
--                truncated_lists, truncated_payloads, limits}
--   task        the task's state when enriched
--   counts, diagnosis                                         (every detail level)
--   steps, edges, step_transitions, task_transitions, template (detail "full" only)
-- Detail "full" is asked for with p_full, else "compact". When the result's JSON text would exceed
-- p_max_snapshot_bytes, the detail drops to "compact", then to "minimal" (the diagnosis lists are
-- emptied, their totals kept), and truncated says so. A task that no longer exists gives
-- task_found = false, detail_level "none" and a summary saying so.
CREATE FUNCTION dlq_enriched_snapshot(
  p_snapshot jsonb,
  p_task_uuid uuid,
  p_enriched_at timestamptz,
  p_full boolean,
  p_max_list_items integer,
  p_max_history_rows integer,
  p_max_payload_bytes integer,
  p_max_snapshot_bytes integer
) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
  -- The diagnosis is a summary: short lists, short errors (the full ones are in "steps").
  c_diagnosis_items constant integer := 20;
  c_neighbour_names constant integer := 10;
  c_diagnosis_error_bytes constant integer := 1024;
  c_list_paths constant text[] := ARRAY['steps', 'edges', 'step_transitions', 'task_transitions',
    'diagnosis.blocking_steps', 'diagnosis.exhausted_retries', 'diagnosis.cycle.steps'];
  v_requested text := CASE WHEN p_full THEN 'full' ELSE 'compact' END;
  v_level text;
  v_meta jsonb;
  v_task jsonb;
  v_compact jsonb;
  v_details jsonb := '{}'::jsonb;
  v_cut_compact bigint;
  v_cut_details bigint := 0;
  v_body jsonb;
  v_cut bigint;
  v_lists jsonb;
  v_result jsonb;
BEGIN
  IF p_enriched_at IS NULL OR p_full IS NULL THEN
    RAISE EXCEPTION 'p_enriched_at and p_full must be given' USING ERRCODE = '22023';
  END IF;
  IF coalesce(least(p_max_list_items, p_max_history_rows), 0) < 1 OR coalesce(p_max_payload_bytes, 0) < 256
     OR coalesce(p_max_snapshot_bytes, 0) < p_max_payload_bytes THEN
    RAISE EXCEPTION 'limits must be max_list_items >= 1, max_history_rows >= 1, max_payload_bytes >= 256, max_snapshot_bytes >= max_payload_bytes; got %, %, %, %',
      p_max_list_items, p_max_history_rows, p_max_payload_bytes, p_max_snapshot_bytes USING ERRCODE = '22023';
  END IF;

  v_meta := jsonb_build_object(
    'version', 1,
    'enriched_at', p_enriched_at,
    'requested_detail', v_requested,
    'limits', jsonb_build_object('max_list_items', p_max_list_items, 'max_history_rows', p_max_history_rows,
                                 'max_payload_bytes', p_max_payload_bytes, 'max_snapshot_bytes', p_max_snapshot_bytes));

  SELECT jsonb_build_object('state', tr.to_state, 'state_since', tr.created_at,
                            'minutes_in_state', floor(extract(epoch FROM p_enriched_at - tr.created_at) / 60)::integer,
                            'complete', t.complete, 'completed_at', t.completed_at)
    INTO v_task
    FROM tasker_tasks t
    LEFT JOIN tasker_task_transitions tr ON tr.task_uuid = t.task_uuid AND tr.most_recent = true
   WHERE t.task_uuid = p_task_uuid;
  IF NOT FOUND THEN
    RETURN jsonb_build_object(
      'enrichment', v_meta || jsonb_build_object('task_found', false, 'detail_level', 'none', 'truncated', false,
                                                 'truncated_lists', '[]'::jsonb, 'truncated_payloads', 0),
      'diagnosis', jsonb_build_object(
        'summary', 'the task no longer exists (archived or deleted); only the detection snapshot is available'))
      || p_snapshot;
  END IF;

  v_compact := dlq_enrichment_diagnosis(p_task_uuid, p_enriched_at, c_diagnosis_items, c_neighbour_names,
                                        least(p_max_payload_bytes, c_diagnosis_error_bytes));
  v_cut_compact := (v_compact ->> 'payloads_truncated')::bigint;
  v_compact := jsonb_build_object('task', v_task) || (v_compact - 'payloads_truncated');
  IF p_full THEN
    v_details := dlq_enrichment_details(p_task_uuid, p_max_list_items, p_max_history_rows, p_max_payload_bytes);
    v_cut_details := (v_details ->> 'payloads_truncated')::bigint;
    v_details := v_details - 'payloads_truncated';
  END IF;

  v_level := v_requested;
  LOOP
    v_body := CASE v_level
      WHEN 'full' THEN v_compact || v_details
      WHEN 'compact' THEN v_compact
      ELSE jsonb_set(jsonb_set(jsonb_set(v_compact,
             '{diagnosis,blocking_steps}', dlq_bounded_list('[]'::jsonb, (v_compact #>> '{diagnosis,blocking_steps,total}')::bigint)),
             '{diagnosis,exhausted_retries}', dlq_bounded_list('[]'::jsonb, (v_compact #>> '{diagnosis,exhausted_retries,total}')::bigint)),
             '{diagnosis,cycle,steps}', dlq_bounded_list('[]'::jsonb, (v_compact #>> '{diagnosis,cycle,steps,total}')::bigint))
    END;
    v_cut := CASE v_level WHEN 'full' THEN v_cut_compact + v_cut_details WHEN 'compact' THEN v_cut_compact ELSE 0 END;
    SELECT coalesce(jsonb_agg(p ORDER BY p COLLATE "C"), '[]'::jsonb) INTO v_lists
      FROM unnest(c_list_paths) p
     WHERE (v_body #>> (string_to_array(p, '.') || 'truncated'::text))::boolean;
    v_result := jsonb_build_object(
      'enrichment', v_meta || jsonb_build_object(
        'task_found', true, 'detail_level', v_level,
        'truncated', v_level <> v_requested OR jsonb_array_length(v_lists) > 0 OR v_cut > 0,
        'truncated_lists', v_lists, 'truncated_payloads', v_cut))
      || v_body || p_snapshot;
    EXIT WHEN v_level = 'minimal' OR octet_length(v_result::text) <= p_max_snapshot_bytes;
    v_level := CASE v_level WHEN 'full' THEN 'compact' ELSE 'minimal' END;
  END LOOP;
  RETURN v_result;
END
$$;
