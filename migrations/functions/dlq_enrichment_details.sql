-- The full lists of one task: steps (unfinished first, then in creation order), edges, step
-- transitions and task transitions (newest first), and the template. Steps and edges hold at most
-- p_max_list_items, each history at most p_max_history_rows, each JSON value (step results and
-- error, transition metadata, template configuration) at most p_max_payload_bytes.
-- "payloads_truncated" counts the values replaced by a marker. Payloads are read only for the rows
-- shown. Reads the same indexes as the diagnosis, plus the primary keys to fetch payloads.
CREATE OR REPLACE FUNCTION dlq_enrichment_details(
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
