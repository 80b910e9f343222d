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
-- An entry being tried again after a failed attempt (dlq.enrichment retries) comes with its failure
-- record in p_snapshot.enrichment: the new record replaces it and keeps its failed_attempts (how
-- many attempts failed before this one succeeded); the rest of p_snapshot wins as always.
-- With the entry's reason and original state (p_dlq_reason, p_original_state; issue 27) it also
-- holds failure_signature, the entry's failure signature and fingerprint (dlq_failure_signature:
-- the template, reason, state, and every blocking step with its error; kept at every detail level),
-- which the caller stores in tasker_tasks_dlq.failure_fingerprint. The 8-argument form (the
-- previous build's workers call it during a rolling deploy) writes no signature: the enrichment
-- sweep's backfill gives those entries theirs.
CREATE OR REPLACE FUNCTION dlq_enriched_snapshot(
  p_snapshot jsonb,
  p_task_uuid uuid,
  p_enriched_at timestamptz,
  p_full boolean,
  p_max_list_items integer,
  p_max_history_rows integer,
  p_max_payload_bytes integer,
  p_max_snapshot_bytes integer,
  p_dlq_reason dlq_reason,
  p_original_state text
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
  v_failed_before jsonb := p_snapshot #> '{enrichment,failed_attempts}';
  v_template jsonb;
  v_signature jsonb := '{}'::jsonb;
BEGIN
  p_snapshot := p_snapshot - 'enrichment' - 'failure_signature';
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
    'failed_attempts', v_failed_before,
    'limits', jsonb_build_object('max_list_items', p_max_list_items, 'max_history_rows', p_max_history_rows,
                                 'max_payload_bytes', p_max_payload_bytes, 'max_snapshot_bytes', p_max_snapshot_bytes));
  v_meta := jsonb_strip_nulls(v_meta);

  SELECT jsonb_build_object('state', tr.to_state, 'state_since', tr.created_at,
                            'minutes_in_state', floor(extract(epoch FROM p_enriched_at - tr.created_at) / 60)::integer,
                            'complete', t.complete, 'completed_at', t.completed_at),
         jsonb_build_object('namespace', ns.name, 'name', nt.name, 'version', nt.version)
    INTO v_task, v_template
    FROM tasker_tasks t
    LEFT JOIN tasker_task_transitions tr ON tr.task_uuid = t.task_uuid AND tr.most_recent = true
    LEFT JOIN tasker_named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
    LEFT JOIN tasker_task_namespaces ns ON ns.task_namespace_uuid = nt.task_namespace_uuid
   WHERE t.task_uuid = p_task_uuid;
  IF NOT FOUND THEN
    IF p_dlq_reason IS NOT NULL THEN
      v_signature := jsonb_build_object('failure_signature', dlq_failure_signature(
        jsonb_build_object('namespace', p_snapshot ->> 'namespace', 'name', p_snapshot ->> 'task_name'),
        p_dlq_reason, p_original_state, false, NULL));
    END IF;
    RETURN jsonb_build_object(
      'enrichment', v_meta || jsonb_build_object('task_found', false, 'detail_level', 'none', 'truncated', false,
                                                 'truncated_lists', '[]'::jsonb, 'truncated_payloads', 0),
      'diagnosis', jsonb_build_object(
        'summary', 'the task no longer exists (archived or deleted); only the detection snapshot is available'))
      || v_signature || p_snapshot;
  END IF;

  v_compact := dlq_enrichment_diagnosis(p_task_uuid, p_enriched_at, c_diagnosis_items, c_neighbour_names,
                                        least(p_max_payload_bytes, c_diagnosis_error_bytes));
  v_cut_compact := (v_compact ->> 'payloads_truncated')::bigint;
  IF p_dlq_reason IS NOT NULL THEN
    v_signature := jsonb_build_object('failure_signature', dlq_failure_signature(
      v_template, p_dlq_reason, p_original_state, true, v_compact -> 'blocking_errors'));
  END IF;
  v_compact := jsonb_build_object('task', v_task) || (v_compact - 'payloads_truncated' - 'blocking_errors')
               || v_signature;
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

-- The previous build's form (no reason and state): the same snapshot without failure_signature.
CREATE OR REPLACE FUNCTION dlq_enriched_snapshot(
  p_snapshot jsonb,
  p_task_uuid uuid,
  p_enriched_at timestamptz,
  p_full boolean,
  p_max_list_items integer,
  p_max_history_rows integer,
  p_max_payload_bytes integer,
  p_max_snapshot_bytes integer
) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT dlq_enriched_snapshot(p_snapshot, p_task_uuid, p_enriched_at, p_full, p_max_list_items, p_max_history_rows,
                               p_max_payload_bytes, p_max_snapshot_bytes, NULL::dlq_reason, NULL::text)
$$;
