-- Archival's eligibility index: the current transition of every finished task, by state and by
-- when the task entered it (migrations/functions/archive_completed_tasks.sql and the candidate
-- count read it). First made by 0005_archive.sql, inside its transaction; built here concurrently
-- instead (migrations/README.md, "Index files"), so the engine's writes to tasker_task_transitions
-- go on while it builds. Same definition as 0005's.
CREATE INDEX CONCURRENTLY idx_task_transitions_finished
  ON tasker_task_transitions (to_state, created_at, task_uuid)
  WHERE most_recent = true AND to_state IN ('complete', 'error', 'cancelled', 'resolved_manually');
