-- The in-flight tasks that may be past their lifetime at p_now, for get_stale_tasks_for_dlq to
-- judge: per lifetime in force (templates grouped by max_duration_minutes, else the default hours;
-- usually one or two groups), a range scan of idx_tasks_unfinished_by_template up to p_now - that
-- lifetime, minus the tasks whose current transition is error, cancelled or resolved_manually (the
-- engine leaves them complete = false until archival moves them), read as three ranges of
-- idx_task_transitions_finished in one anti-join the planner can hash or merge (migration 0120).
-- A superset of the in-flight tasks past their lifetime: the judge reads every candidate's current
-- transition and keeps only those in flight. The detection job calls it once per pass and hands
-- the result to every page. Parallel query is off: worker start-up cost more than the whole
-- serial plan (85 against 32 ms at 1,000,000 in flight, PostgreSQL 18).
CREATE OR REPLACE FUNCTION stale_lifetime_candidates(p_now timestamptz, p_max_lifetime_hours integer)
RETURNS uuid[]
LANGUAGE plpgsql STABLE
SET jit = off
SET max_parallel_workers_per_gather = 0
AS $fn$
DECLARE
  v_candidates uuid[] := '{}';
  v_lifetime_candidates uuid[];
  v_group record;
BEGIN
  FOR v_group IN
    SELECT coalesce(lifecycle_minutes(nt.configuration -> 'lifecycle', 'max_duration_minutes'),
                    p_max_lifetime_hours * 60) AS minutes,
           array_agg(nt.named_task_uuid) AS templates
      FROM tasker_named_tasks nt
     GROUP BY 1
  LOOP
    CONTINUE WHEN v_group.minutes IS NULL;
    EXECUTE $q$
      SELECT coalesce(array_agg(x.task_uuid), '{}')
        FROM tasker_tasks x
       WHERE x.named_task_uuid = ANY ($1)
         AND NOT x.complete
         AND x.created_at <= $2
         AND NOT EXISTS (SELECT 1 FROM tasker_task_transitions s
                          WHERE s.task_uuid = x.task_uuid
                            AND s.most_recent = true
                            AND s.to_state IN ('error', 'cancelled', 'resolved_manually'))$q$
      INTO v_lifetime_candidates
      USING v_group.templates, p_now - make_interval(mins => v_group.minutes);
    v_candidates := v_candidates || v_lifetime_candidates;
  END LOOP;

  RETURN v_candidates;
END
$fn$;
