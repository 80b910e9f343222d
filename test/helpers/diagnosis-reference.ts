/**
 * The diagnosis as it was before it was made linear (migrations/functions/dlq_enrichment_diagnosis.sql
 * at commit 87acbcf): the transitive closure of the edges in a recursive CTE, quadratic in the
 * steps, so it is run only on small graphs. test/integration/enrich-dlq-graph.test.ts checks that the
 * linear diagnosis gives exactly its output. Created as test_diagnosis_reference in a test database.
 */
export const DIAGNOSIS_REFERENCE_SQL = `
CREATE OR REPLACE FUNCTION test_diagnosis_reference(
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
`;
