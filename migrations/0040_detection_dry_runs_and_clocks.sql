-- 0040: detection dry runs that lock nothing and page; writes stamped with the statement's clock;
-- a dependency-cycle check linear in the size of the task's graph (issue 15, items 3, 5 and 6).
--
-- Before: a dry run was one call for batch_size x max_batches tasks whose discovery locked every
-- row it returned (FOR UPDATE SKIP LOCKED), blocking the engine's compare-and-swap on them and
-- hiding them from real detectors for the whole statement; every write was stamped with the run's
-- reference time, so a task the engine moved after the run began got an error transition older
-- than its previous one; the cycle walk cost steps x reachable steps (a 5,000-step chain:
-- 12.5 million rows) and had no time bound.
--
-- Now:
--   get_stale_tasks_for_dlq      locks only when p_lock (real runs); pages with an exact keyset
--                                cursor (p_after_state_entered_at, p_after_task_uuid) on its
--                                order (state entry, task uuid); returns state_entered_at; time in
--                                state and task age are never negative.
--   detect_stale_tasks_batch     a dry run reads only (no FOR UPDATE, no write statement at all);
--                                both modes take the cursor and return the page's last key
--                                (page_last_entered_at, page_last_task_uuid) for the next call.
--                                Staleness is still judged at p_now (the run's time); what is
--                                written is stamped greatest(clock_timestamp(), the task's current
--                                transition's created_at), never earlier than what it follows.
--   task_has_dependency_cycle    Kahn's algorithm over the task's edges: linear in steps + edges.
--
-- Names, upstream's leading parameters and upstream's leading result columns are unchanged; the
-- new parameters come last with defaults, so existing calls keep working.
--
-- The functions, views and triggers it defined live one per file under migrations/functions/,
-- views/ and triggers/ (migrations/README.md); this file keeps its tables, indexes and data
-- changes, and the record of why.

DROP FUNCTION IF EXISTS detect_stale_tasks_batch(timestamptz, boolean, integer, integer, integer, integer, integer,
                                       boolean, boolean, dlq_reason[], text);
DROP FUNCTION IF EXISTS get_stale_tasks_for_dlq(integer, integer, integer, integer, integer, timestamptz, boolean,
                                      boolean, dlq_reason[]);
