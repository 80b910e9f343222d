-- 0003: staleness detection (upstream-facts.md §2.2, §3, with the [analysis] gaps closed).
--
-- Pieces, smallest first:
--   tasker_lifecycle_settings        the effective detection settings, written from config by the
--                                    detection job so views and the 6-argument function agree with it
--   lifecycle_minutes                one per-template minutes value, or NULL when absent or malformed
--   lifecycle_config_problems        what is wrong with a template's lifecycle object, as text
--   calculate_staleness_threshold    per-state threshold: template first, then the default
--   task_staleness_policy            everything detection needs from a template, in one row
--   task_has_dependency_cycle        whether a task's step edges form a cycle
--   task_dlq_reason                  the most specific enabled reason that fits a stale task
--   dlq_detection_snapshot           the small snapshot written at detection (enrichment adds more)
--   get_stale_tasks_for_dlq          discovery: one bounded, locking read of stale candidates
--   create_dlq_entry                 one pending entry (NULL when one is already pending)
--   transition_stale_task_to_error   one compare-and-swap to error
--   detect_stale_tasks_batch         one detection batch, every option explicit, rich result
--   detect_and_transition_stale_tasks  upstream's stable 6-argument entry point
--
-- The functions, views and triggers it defined live one per file under migrations/functions/,
-- views/ and triggers/ (migrations/README.md); this file keeps its tables, indexes and data
-- changes, and the record of why.

CREATE TABLE tasker_lifecycle_settings (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  waiting_for_dependencies_minutes integer NOT NULL DEFAULT 60 CHECK (waiting_for_dependencies_minutes > 0),
  waiting_for_retry_minutes integer NOT NULL DEFAULT 30 CHECK (waiting_for_retry_minutes > 0),
  steps_in_process_minutes integer NOT NULL DEFAULT 30 CHECK (steps_in_process_minutes > 0),
  task_max_lifetime_hours integer NOT NULL DEFAULT 24 CHECK (task_max_lifetime_hours > 0),
  auto_transition_to_error boolean NOT NULL DEFAULT true,
  -- Whether detection may open investigations at all (actions.auto_move_to_dlq, dlq.enabled and
  -- dlq.auto_dlq_on_staleness together).
  auto_move_to_dlq boolean NOT NULL DEFAULT true,
  enabled_reasons dlq_reason[] NOT NULL DEFAULT enum_range(NULL::dlq_reason),
  -- NOTIFY channel for detection events; NULL when events are off.
  event_channel text CHECK (event_channel IS NULL OR length(event_channel) BETWEEN 1 AND 63),
  max_pending_age_hours integer NOT NULL DEFAULT 168 CHECK (max_pending_age_hours > 0),
  updated_at timestamptz NOT NULL DEFAULT now(),
  updated_by text
);
INSERT INTO tasker_lifecycle_settings DEFAULT VALUES;
