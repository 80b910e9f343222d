-- Detection's lifetime phase: tasks not complete, per template, oldest first; it pages through
-- them by (template, created_at, task_uuid) (migrations/functions/stale_lifetime_candidates.sql),
-- so task_uuid is in the key and a page starts where the last one ended, whatever the ties.
--
-- History: 0060 made it keyed (named_task_uuid, created_at), task_uuid only INCLUDEd, inside its
-- transaction. This file's definition is built concurrently and swapped in for that one
-- (migrations/README.md, "Index files"), so the engine's writes to tasker_tasks go on.
CREATE INDEX CONCURRENTLY idx_tasks_unfinished_by_template
  ON tasker_tasks (named_task_uuid, created_at, task_uuid)
  WHERE NOT complete;
