-- 0160: detection's two indexes take task_uuid into their key, so detection pages through them by
-- keyset.
--
-- Detection reads the tasks in flight in (state entry, task uuid) order, a page at a time
-- (migrations/functions/detect_stale_tasks_page.sql). idx_task_transitions_in_flight was keyed by
-- created_at alone (task_uuid only INCLUDEd), so a page starting inside a run of equal state-entry
-- times (a bulk operation stamps thousands of transitions with one now()) had to read and sort the
-- whole run to find where it left off: in a storm, every page paid for every task tied with its
-- cursor. With task_uuid in the key, `(created_at, task_uuid) > (cursor)` is an index bound and a
-- page reads what it returns.
--
-- The same holds for idx_tasks_unfinished_by_template (0060), which detection's lifetime phase
-- pages through by (template, created_at, task_uuid).
--
-- Same names, same predicates (the view and every older query read them as before). IF NOT EXISTS on the new name: on a large table an operator can build it first with
-- CREATE INDEX CONCURRENTLY under that name, so that this migration does not hold the engine's
-- writes to tasker_task_transitions for the length of the build.
--
-- The functions, views and triggers live one per file under migrations/functions/, views/ and
-- triggers/ (migrations/README.md).

CREATE INDEX IF NOT EXISTS idx_task_transitions_in_flight_by_entry
  ON tasker_task_transitions (created_at, task_uuid)
  INCLUDE (to_state, sort_key, task_transition_uuid)
  WHERE most_recent = true
    AND to_state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually');

DROP INDEX IF EXISTS idx_task_transitions_in_flight;

ALTER INDEX idx_task_transitions_in_flight_by_entry RENAME TO idx_task_transitions_in_flight;

CREATE INDEX IF NOT EXISTS idx_tasks_unfinished_by_template_by_task
  ON tasker_tasks (named_task_uuid, created_at, task_uuid)
  WHERE NOT complete;

DROP INDEX IF EXISTS idx_tasks_unfinished_by_template;

ALTER INDEX idx_tasks_unfinished_by_template_by_task RENAME TO idx_tasks_unfinished_by_template;
