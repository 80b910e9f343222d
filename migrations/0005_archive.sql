-- 0005: archival. Finished task graphs move out of the live tables into archive tables, in bounded
-- batches, and can be moved back (upstream-facts.md §2.1-2.3; §7 lists what upstream got wrong).
--
-- Pieces:
--   tasker_*_archive              one per live table: the live table's columns (same names, types and
--                                 order, so a restore is byte-for-byte) plus archived_at
--   idx_task_transitions_finished the eligibility index: current terminal transitions by state and
--                                 by when the task entered that state
--   archive_completed_tasks       one batch: chooses, locks and moves (or, dry run, counts) whole graphs
-- and in 0006_archive_restore.sql: restore_archived_task (one archived graph back) and
-- v_archive_statistics (archived tasks per month of archival).
--
-- Differences from upstream, on purpose:
--   * Archive tables take the live columns with LIKE but not INCLUDING ALL: no defaults (every value
--     is copied), no CHECKs, and their own primary keys. A restore moves rows out of the archive, so
--     archiving a restored task again never collides with a stale archive copy (upstream's
--     INCLUDING ALL plus copy-without-delete made re-archiving fail); the primary keys also make a
--     double move impossible rather than silent.
--   * Step transitions and DLQ entries are archived too, and the live rows are deleted children
--     first, so no foreign key blocks the move.
--   * Retention counts from when the task entered its final state (its most_recent transition's
--     created_at), not from creation; [archive.policies] are honoured, resolved_manually included.
--   * Each batch works on an explicit set of task ids it has locked (never "rows archived at about
--     this time"), and the dry run counts with the same predicates the moves use.
--
-- Every statement the archiver runs reads through an index named in the comment above it.
--
-- Adding a column to a live table later: add it to the archive table too, and recreate
-- archive_completed_tasks and restore_archived_task with the new column in their lists (the
-- column-drift and byte-for-byte restore tests in test/integration/archive-move.test.ts fail until
-- all three are done).
--
-- The functions, views and triggers it defined live one per file under migrations/functions/,
-- views/ and triggers/ (migrations/README.md); this file keeps its tables, indexes and data
-- changes, and the record of why.

-- Archive tables ---------------------------------------------------------------------------------

CREATE TABLE tasker_tasks_archive (
  LIKE tasker_tasks,
  archived_at timestamptz NOT NULL,
  CONSTRAINT tasker_tasks_archive_pkey PRIMARY KEY (task_uuid)
);
-- Look up by template and by time.
CREATE INDEX idx_tasks_archive_named_task ON tasker_tasks_archive (named_task_uuid, archived_at);
CREATE INDEX idx_tasks_archive_archived_at ON tasker_tasks_archive (archived_at);

CREATE TABLE tasker_workflow_steps_archive (
  LIKE tasker_workflow_steps,
  archived_at timestamptz NOT NULL,
  CONSTRAINT tasker_workflow_steps_archive_pkey PRIMARY KEY (workflow_step_uuid)
);
CREATE INDEX idx_steps_archive_task_uuid ON tasker_workflow_steps_archive (task_uuid);

CREATE TABLE tasker_workflow_step_edges_archive (
  LIKE tasker_workflow_step_edges,
  archived_at timestamptz NOT NULL,
  CONSTRAINT tasker_workflow_step_edges_archive_pkey PRIMARY KEY (workflow_step_edge_uuid)
);
CREATE INDEX idx_step_edges_archive_from_step ON tasker_workflow_step_edges_archive (from_step_uuid);
CREATE INDEX idx_step_edges_archive_to_step ON tasker_workflow_step_edges_archive (to_step_uuid);

CREATE TABLE tasker_task_transitions_archive (
  LIKE tasker_task_transitions,
  archived_at timestamptz NOT NULL,
  CONSTRAINT tasker_task_transitions_archive_pkey PRIMARY KEY (task_transition_uuid)
);
CREATE INDEX idx_task_transitions_archive_task_uuid ON tasker_task_transitions_archive (task_uuid);

CREATE TABLE tasker_workflow_step_transitions_archive (
  LIKE tasker_workflow_step_transitions,
  archived_at timestamptz NOT NULL,
  CONSTRAINT tasker_workflow_step_transitions_archive_pkey PRIMARY KEY (workflow_step_transition_uuid)
);
CREATE INDEX idx_step_transitions_archive_step_uuid ON tasker_workflow_step_transitions_archive (workflow_step_uuid);

CREATE TABLE tasker_tasks_dlq_archive (
  LIKE tasker_tasks_dlq,
  archived_at timestamptz NOT NULL,
  CONSTRAINT tasker_tasks_dlq_archive_pkey PRIMARY KEY (dlq_entry_uuid)
);
CREATE INDEX idx_dlq_archive_task_uuid ON tasker_tasks_dlq_archive (task_uuid);

-- The eligibility index: the current transition of every finished task, by final state, then by
-- when the task entered it. One range scan per allowed state finds the oldest finished tasks
-- without touching in-flight ones or superseded transitions. IF NOT EXISTS: on a large existing
-- table an operator can build it first with CREATE INDEX CONCURRENTLY under this name, so the
-- migration does not block writes to tasker_task_transitions while it builds.
CREATE INDEX IF NOT EXISTS idx_task_transitions_finished
  ON tasker_task_transitions (to_state, created_at, task_uuid)
  WHERE most_recent = true AND to_state IN ('complete', 'error', 'cancelled', 'resolved_manually');

-- The archive policies last applied from the configuration (every archival run writes them), next to
-- the detection settings: what archive_completed_tasks uses for a policy it is not given.
ALTER TABLE tasker_lifecycle_settings
  ADD COLUMN archive_completed boolean NOT NULL DEFAULT true,
  ADD COLUMN archive_failed boolean NOT NULL DEFAULT true,
  ADD COLUMN archive_cancelled boolean NOT NULL DEFAULT false,
  ADD COLUMN archive_resolved_manually boolean NOT NULL DEFAULT true,
  ADD COLUMN archive_dlq_resolved boolean NOT NULL DEFAULT true;
