-- 0002: the dead-letter queue as investigation tracking (upstream-facts.md §2.1, §3).
--
-- A DLQ entry never changes the task. It records why (reason), what the task looked like
-- (snapshot), and how the investigation went (pending -> manually_resolved | permanently_failed |
-- cancelled). One pending entry per task; resolved entries stay as history.
--
-- The functions, views and triggers it defined live one per file under migrations/functions/,
-- views/ and triggers/ (migrations/README.md); this file keeps its tables, indexes and data
-- changes, and the record of why.

CREATE TYPE dlq_resolution_status AS ENUM ('pending', 'manually_resolved', 'permanently_failed', 'cancelled');

CREATE TYPE dlq_reason AS ENUM (
  'staleness_timeout', 'max_retries_exceeded', 'dependency_cycle_detected', 'worker_unavailable', 'manual_dlq');

CREATE TABLE tasker_tasks_dlq (
  dlq_entry_uuid uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
  task_uuid uuid NOT NULL REFERENCES tasker_tasks (task_uuid),
  original_state varchar(50) NOT NULL,
  dlq_reason dlq_reason NOT NULL,
  dlq_timestamp timestamptz NOT NULL DEFAULT now(),
  resolution_status dlq_resolution_status NOT NULL DEFAULT 'pending',
  resolution_timestamp timestamptz,
  resolution_notes text,
  resolved_by varchar(255),
  task_snapshot jsonb NOT NULL,
  metadata jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  -- A resolved entry says when and by whom; a pending one has neither.
  CONSTRAINT chk_dlq_resolution_fields CHECK (
    (resolution_status = 'pending' AND resolution_timestamp IS NULL)
    OR (resolution_status <> 'pending' AND resolution_timestamp IS NOT NULL AND resolved_by IS NOT NULL))
);

CREATE INDEX idx_dlq_task_lookup ON tasker_tasks_dlq (task_uuid);
CREATE INDEX idx_dlq_resolution_status ON tasker_tasks_dlq (resolution_status, dlq_timestamp);
CREATE INDEX idx_dlq_reason ON tasker_tasks_dlq (dlq_reason);
CREATE INDEX idx_dlq_timestamp ON tasker_tasks_dlq (dlq_timestamp DESC);
-- One pending investigation per task; this is also the arbiter of ON CONFLICT in detection.
CREATE UNIQUE INDEX idx_dlq_unique_pending_task ON tasker_tasks_dlq (task_uuid) WHERE resolution_status = 'pending';

-- Per-template lifecycle settings are read from configuration->'lifecycle' (upstream's GIN index).
CREATE INDEX idx_named_tasks_lifecycle_config ON tasker_named_tasks
  USING gin ((configuration -> 'lifecycle')) WHERE configuration -> 'lifecycle' IS NOT NULL;
