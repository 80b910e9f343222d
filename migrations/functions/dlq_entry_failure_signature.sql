-- The failure signature of an entry enriched without one (issue 27's backfill: entries enriched
-- before this build or by the previous build's workers, and the pending entries of groups made by
-- an older rule set), as enrichment would compute it at p_at: the task's template (from the task,
-- else from the detection snapshot), and its blocking steps with their errors from the same
-- diagnosis enrichment runs (dlq_enrichment_diagnosis). With p_read_graph false the graph is not
-- read and the signature says its blocking steps are unknown ("unavailable"): the backfill's
-- answer for an entry whose graph cannot be read within the statement timeout, so that it is not
-- tried forever. Reads the task's primary key and template, and the graph as enrichment does.
CREATE OR REPLACE FUNCTION dlq_entry_failure_signature(
  p_snapshot jsonb,
  p_task_uuid uuid,
  p_dlq_reason dlq_reason,
  p_original_state text,
  p_at timestamptz,
  p_read_graph boolean
) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_template jsonb;
BEGIN
  SELECT jsonb_build_object('namespace', ns.name, 'name', nt.name, 'version', nt.version)
    INTO v_template
    FROM tasker_tasks t
    LEFT JOIN tasker_named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
    LEFT JOIN tasker_task_namespaces ns ON ns.task_namespace_uuid = nt.task_namespace_uuid
   WHERE t.task_uuid = p_task_uuid;
  IF NOT FOUND THEN
    RETURN dlq_failure_signature(
      jsonb_build_object('namespace', p_snapshot ->> 'namespace', 'name', p_snapshot ->> 'task_name'),
      p_dlq_reason, p_original_state, false, NULL);
  END IF;
  RETURN dlq_failure_signature(
    v_template, p_dlq_reason, p_original_state, true,
    CASE WHEN p_read_graph THEN dlq_enrichment_diagnosis(p_task_uuid, p_at, 20, 10, 1024) -> 'blocking_errors' END);
END
$$;
