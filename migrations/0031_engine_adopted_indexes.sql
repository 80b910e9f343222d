-- 0031: the index staleness detection reads, on a database whose engine tables came first.
--
-- 0001 creates idx_task_transitions_in_flight with the engine's tables; where the engine's tables
-- already existed, `migrate` adopts them without running 0001 (src/db/migrate.ts), so the index is
-- created here, under the same name and definition, only where it is absent. Like
-- idx_task_transitions_finished (0005), an operator with a large table can build it first with
-- CREATE INDEX CONCURRENTLY under this name, so that this migration does not block the engine's
-- writes to tasker_task_transitions while it builds.
CREATE INDEX IF NOT EXISTS idx_task_transitions_in_flight
  ON tasker_task_transitions (created_at)
  INCLUDE (task_uuid, to_state, sort_key, task_transition_uuid)
  WHERE most_recent = true
    AND to_state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually');
