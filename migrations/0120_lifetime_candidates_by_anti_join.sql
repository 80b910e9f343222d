-- 0120: the lifetime scan takes the finished tasks away in one anti-join, not one probe each.
--
-- Before (0060): stale_lifetime_candidates read idx_tasks_unfinished_by_template up to each
-- lifetime in force and probed every row's current state (idx_task_transitions_state_lookup, a
-- scalar subquery per row). Most of those rows are finished tasks the engine leaves with
-- complete = false (error, cancelled, resolved_manually) until archival moves them: 50,000 probes
-- beside 1,000,000 tasks in flight in the benchmark, about 3 buffers and 4 us each, most of a
-- nothing-stale pass.
--
-- Now: the same range scan, minus the tasks whose current transition is error, cancelled or
-- resolved_manually, read as three ranges of idx_task_transitions_finished (to_state, created_at,
-- task_uuid), which 0005 built for archival: an anti-join the planner can hash or merge. The
-- candidates stay a superset of the in-flight tasks past their lifetime (a task without a current
-- transition, or one whose current state is complete while the engine has not yet marked it, is
-- kept), and the judge in get_stale_tasks_for_dlq, unchanged, reads every candidate's current
-- transition and keeps only those in flight: the rules and their results are exactly 0060's.
--
-- Parallel query is off for it: PostgreSQL 18 chose a Parallel Hash Right Anti Join whose worker
-- start-up cost more than the whole serial plan (85 against 32 ms at 1,000,000 in flight).
--
-- EXPLAIN (ANALYZE, BUFFERS), the benchmark's shape (1,000,000 tasks in flight, 500,000 finished of
-- which 50,000 error or cancelled with complete = false, 200 in flight past their lifetime):
--   0060   Index Only Scan using idx_tasks_unfinished_by_template (50,200 rows), SubPlan per row:
--          Index Only Scan using idx_task_transitions_state_lookup; 151,022 buffers;
--          PostgreSQL 15 113 ms, PostgreSQL 18 223 ms
--   0120   Hash Anti Join: Index Only Scan using idx_tasks_unfinished_by_template (50,200 rows)
--          against a hash of Index Only Scan using idx_task_transitions_finished
--          (to_state = ANY ('{error,cancelled,resolved_manually}'), 50,000 rows); 5,490 buffers;
--          PostgreSQL 15 20 ms, PostgreSQL 18 32 ms
-- Called as the detection job calls it, alternating, 7 times each: PostgreSQL 15 111-217 ms
-- against 14-27 ms; PostgreSQL 18 214-248 ms against 28-56 ms.
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
