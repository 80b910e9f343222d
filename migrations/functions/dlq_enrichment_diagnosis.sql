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
-- p_max_error_bytes. blocking_errors is every blocking step's name and raw error (the first 1,000
-- by name), for the failure signature (dlq_failure_signature), not for the snapshot: the caller
-- takes it out. The graph (on a cycle, blocking, neighbours, downstream) comes from
-- dlq_enrichment_step_graph, linear in steps + edges; what is left here reads its rows once each
-- (no join between two sets of steps), plus idx_step_transitions_uuid_sort_key (one probe per step
-- for the transition count),
-- idx_task_transitions_uuid_sort_key and the steps' primary key for the errors of the listed
-- steps and of the blocking ones. So the work is bounded by this one task's graph and grows linearly with it (a 10,000-step
-- chain: see docs/benchmarks.md).
CREATE OR REPLACE FUNCTION dlq_enrichment_diagnosis(
  p_task_uuid uuid,
  p_at timestamptz,
  p_max_items integer,
  p_max_names integer,
  p_max_error_bytes integer
) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  WITH
  flagged AS MATERIALIZED (
    SELECT g.*,
           g.state IN ('pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration',
                       'enqueued_as_error_for_orchestration', 'waiting_for_retry') AS waiting,
           CASE WHEN g.state IN ('complete', 'resolved_manually', 'cancelled') THEN NULL
                WHEN g.max_attempts > 0 AND g.attempts >= g.max_attempts THEN 'attempts_exhausted'
                WHEN g.state = 'error' AND NOT g.retryable THEN 'not_retryable'
           END AS exhausted_why
      FROM dlq_enrichment_step_graph(p_task_uuid, p_max_items, p_max_names) g
  ),
  blocking AS MATERIALIZED (
    SELECT f.* FROM flagged f WHERE f.blocking
  ),
  counts AS (
    SELECT count(*) AS steps,
           count(*) FILTER (WHERE NOT done) AS unfinished,
           count(*) FILTER (WHERE on_cycle) AS on_cycle,
           count(*) FILTER (WHERE exhausted_why IS NOT NULL) AS exhausted,
           (SELECT count(*) FROM blocking) AS blocking,
           (SELECT count(*) FROM blocking WHERE NOT on_cycle) AS stuck_at,
           coalesce(sum(out_edges), 0) AS edges
      FROM flagged
  ),
  -- A step's error is read by a scalar subquery per listed step (idx: the steps' primary key). A
  -- join, or a LATERAL subquery the planner pulls up into one, let it hash the whole steps table
  -- for each entry: it sees hundreds of estimated rows here, not this task's few (10 ms an entry
  -- on a 20,000-step table, against 1 ms).
  blocking_items AS (
    SELECT b.since, b.id, b.err, jsonb_build_object(
             'workflow_step_uuid', b.id, 'name', b.name, 'state', b.state, 'since', b.since,
             'minutes_in_state', floor(extract(epoch FROM p_at - b.since) / 60)::integer,
             'attempts', b.attempts, 'max_attempts', b.max_attempts, 'retryable', b.retryable,
             'on_cycle', b.on_cycle,
             'waits_on', b.waits_on, 'waits_on_total', b.waits_on_total,
             'blocks', b.blocks, 'blocks_total', b.blocks_total,
             'downstream_unfinished', b.downstream_unfinished,
             'error', dlq_capped_json(b.err, p_max_error_bytes)) AS item
      FROM (SELECT l.*, (SELECT dlq_step_error(ws.results) FROM tasker_workflow_steps ws
                          WHERE ws.workflow_step_uuid = l.id) AS err
              FROM (SELECT * FROM blocking ORDER BY since, id LIMIT p_max_items) l) b
  ),
  exhausted_items AS (
    SELECT x.since, x.id, x.err, jsonb_build_object(
             'workflow_step_uuid', x.id, 'name', x.name, 'state', x.state, 'why', x.exhausted_why,
             'attempts', x.attempts, 'max_attempts', x.max_attempts, 'retryable', x.retryable,
             'last_attempted_at', x.last_attempted_at,
             'error', dlq_capped_json(x.err, p_max_error_bytes)) AS item
      FROM (SELECT l.*, (SELECT dlq_step_error(ws.results) FROM tasker_workflow_steps ws
                          WHERE ws.workflow_step_uuid = l.id) AS err
              FROM (SELECT * FROM flagged WHERE exhausted_why IS NOT NULL ORDER BY since, id LIMIT p_max_items) l) x
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
          SELECT state, count(*) AS n FROM flagged GROUP BY state) x), '{}'::jsonb),
      'edges', c.edges,
      -- One index probe per step (a join here could hash the whole table: the function's rows
      -- are estimated, not known).
      'step_transitions', (SELECT coalesce(sum((SELECT count(*) FROM tasker_workflow_step_transitions st
                                                 WHERE st.workflow_step_uuid = s.id)), 0)
                             FROM flagged s),
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
                            FROM (SELECT b.*, (SELECT dlq_step_error(ws.results) FROM tasker_workflow_steps ws
                                                WHERE ws.workflow_step_uuid = b.id) AS err
                                    FROM (SELECT * FROM blocking WHERE NOT on_cycle ORDER BY since, id LIMIT 3) b) x)
          || dlq_and_more(c.stuck_at, 3) END,
        CASE WHEN c.exhausted > 0 THEN
          format('%s out of retries: ', CASE WHEN c.exhausted = 1 THEN '1 step' ELSE c.exhausted || ' steps' END)
          || (SELECT string_agg(name, ', ' ORDER BY since, id) FROM (
                SELECT name, since, id FROM flagged WHERE exhausted_why IS NOT NULL ORDER BY since, id LIMIT 3) x)
          || dlq_and_more(c.exhausted, 3) END,
        (SELECT format('oldest waiting step %s (%s for %s)', o.name, o.state, dlq_minutes_text(o.minutes))
           FROM oldest o),
        CASE WHEN c.steps > 0 AND c.unfinished = 0 THEN 'all steps finished, yet the task did not move on' END)),
    'blocking_errors',
      (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'name', b.name,
                'error', (SELECT dlq_step_error(ws.results) FROM tasker_workflow_steps ws
                           WHERE ws.workflow_step_uuid = b.id))), '[]'::jsonb)
         FROM (SELECT * FROM blocking ORDER BY name, id LIMIT 1000) b),
    'payloads_truncated',
      (SELECT count(*) FROM blocking_items WHERE octet_length(err::text) > p_max_error_bytes)
      + (SELECT count(*) FROM exhausted_items WHERE octet_length(err::text) > p_max_error_bytes))
  FROM counts c
$$;
