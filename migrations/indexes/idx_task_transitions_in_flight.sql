-- The working set: the current transition of every task in flight (not in a terminal state), in
-- (state entry, task) order. Staleness detection pages through it by keyset
-- (migrations/functions/detect_stale_tasks_page.sql: `(created_at, task_uuid) > cursor` is an index
-- bound, so a page reads what it returns even inside a run of equal state-entry times, which a bulk
-- operation stamps with one now()); the monitoring view, the staleness gauges and status read it
-- too, so their cost follows the tasks in flight, never the finished ones.
--
-- History: 0001 (where it creates the engine's tables) and 0031 (where it adopts them) made it
-- keyed by created_at alone, task_uuid only INCLUDEd. This file keys it by (created_at, task_uuid);
-- `migrate` builds the new definition concurrently beside the old one and swaps them
-- (migrations/README.md, "Index files"), so databases migrated by earlier builds get it without
-- holding the engine's writes.
CREATE INDEX CONCURRENTLY idx_task_transitions_in_flight
  ON tasker_task_transitions (created_at, task_uuid)
  INCLUDE (to_state, sort_key, task_transition_uuid)
  WHERE most_recent = true
    AND to_state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually');
