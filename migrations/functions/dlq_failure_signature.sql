-- An investigation's failure signature and fingerprint (issue 27): what makes two entries the same
-- problem. The inputs, all of them in the fingerprint:
--   p_template        {"namespace", "name", "version"} of the task's template;
--   p_reason          the DLQ reason;
--   p_original_state  the task's state when detected;
--   p_blocking        the task's blocking steps as [{"name", "error"}] (error: the step's raw error,
--                     dlq_step_error), in any order; NULL when the graph could not be read;
--   p_task_found      false when the task no longer exists (p_blocking is then ignored).
-- Each error is normalized by dlq_normalize_error (rule set version dlq_failure_rules_version()); the distinct (step,
-- normalized error) pairs, sorted, are the blocking part: a hundred parallel charge steps failing
-- alike count once. At most c_max_pairs pairs are kept (the first in that order), and how many
-- there were is part of the fingerprint too.
--
-- Returns {version, fingerprint, template, dlq_reason, original_state, graph ("read",
-- "task_missing" or "unavailable"), blocking: [{step, error}], blocking_total, summary}. The
-- fingerprint is the first 32 hex digits of the SHA-256 of the JSON array of the version and every
-- input above: a change of rules (a new version) gives new fingerprints, and the enrichment sweep
-- moves the pending entries of older versions' groups to the new ones (docs/grouping.md).
CREATE OR REPLACE FUNCTION dlq_failure_signature(
  p_template jsonb,
  p_reason dlq_reason,
  p_original_state text,
  p_task_found boolean,
  p_blocking jsonb
) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  c_rules constant integer := dlq_failure_rules_version();
  c_max_pairs constant integer := 20;
  v_graph text := CASE WHEN NOT p_task_found THEN 'task_missing'
                       WHEN p_blocking IS NULL THEN 'unavailable'
                       ELSE 'read' END;
  v_template jsonb := jsonb_build_object('namespace', p_template ->> 'namespace', 'name', p_template ->> 'name',
                                         'version', p_template ->> 'version');
  v_pairs jsonb;
  v_total integer;
  v_summary text;
BEGIN
  IF p_reason IS NULL OR p_original_state IS NULL OR p_task_found IS NULL THEN
    RAISE EXCEPTION 'dlq_failure_signature: the reason, the original state and whether the task was found must be given'
      USING ERRCODE = '22023';
  END IF;
  IF v_graph = 'read' AND jsonb_typeof(p_blocking) <> 'array' THEN
    RAISE EXCEPTION 'dlq_failure_signature: p_blocking must be an array of {"name", "error"}, got %', left(p_blocking::text, 100)
      USING ERRCODE = '22023';
  END IF;
  IF v_graph = 'read' THEN
    SELECT coalesce(jsonb_agg(jsonb_build_object('step', p.step, 'error', p.error) ORDER BY p.step COLLATE "C", p.error COLLATE "C" NULLS FIRST)
                      FILTER (WHERE p.n <= c_max_pairs), '[]'::jsonb),
           count(*)
      INTO v_pairs, v_total
      FROM (SELECT d.step, d.error,
                   row_number() OVER (ORDER BY d.step COLLATE "C", d.error COLLATE "C" NULLS FIRST) AS n
              FROM (SELECT DISTINCT b ->> 'name' AS step, dlq_normalize_error(b -> 'error', c_rules) AS error
                      FROM jsonb_array_elements(p_blocking) b) d) p;
  END IF;
  v_summary := CASE v_graph
    WHEN 'task_missing' THEN 'the task no longer existed when enriched'
    WHEN 'unavailable' THEN 'blocking steps not known (the task''s graph could not be read)'
    ELSE CASE WHEN v_total = 0 THEN 'no blocking step'
              ELSE 'blocked at ' || (SELECT string_agg(e ->> 'step' || coalesce(' (' || (e ->> 'error') || ')', ''), '; ' ORDER BY o)
                                       FROM jsonb_array_elements(v_pairs) WITH ORDINALITY AS x(e, o) WHERE o <= 3)
                   || CASE WHEN v_total > 3 THEN format('; and %s more', v_total - 3) ELSE '' END
         END
  END;
  RETURN jsonb_build_object(
    'version', c_rules,
    'fingerprint', left(encode(sha256(convert_to(jsonb_build_array(
        c_rules, v_template -> 'namespace', v_template -> 'name', v_template -> 'version',
        p_reason::text, p_original_state, v_graph, coalesce(v_pairs, 'null'::jsonb), v_total)::text, 'UTF8')), 'hex'), 32),
    'template', v_template,
    'dlq_reason', p_reason,
    'original_state', p_original_state,
    'graph', v_graph,
    'blocking', coalesce(v_pairs, 'null'::jsonb),
    'blocking_total', v_total,
    'summary', v_summary);
END
$$;
