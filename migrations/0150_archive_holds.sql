-- 0150: holding a restored task out of archival (issue 28, item 4).
--
-- A task restored from the archive is finished and usually past retention, so the next archival
-- run would move it straight back. An operator who restores it to look at it (or to let the engine
-- re-run it) can hold it out of archival until a time they choose; archive_completed_tasks passes
-- over a task whose hold has not expired. One row per task (the latest hold wins); an expired hold
-- is simply ignored, and stays as the record of who held it.
CREATE TABLE tasker_archive_holds (
  task_uuid uuid PRIMARY KEY,
  held_until timestamptz NOT NULL,
  held_by text NOT NULL CHECK (held_by <> ''),
  reason text NOT NULL CHECK (reason <> ''),
  created_at timestamptz NOT NULL,
  CHECK (held_until > created_at)
);
-- The archive page's list of holds in force: the ones ending soonest first.
CREATE INDEX idx_archive_holds_held_until ON tasker_archive_holds (held_until);
