-- 0200: investigations grouped by cause (issue 27).
--
-- In a stale storm thousands of entries share a handful of causes. Enrichment now computes a
-- failure fingerprint per entry (dlq_failure_signature: the template, the reason, the state when
-- detected, and the blocking steps with their errors normalized by a versioned rule set) and
-- stores it on the entry; entries with the same fingerprint form a group.
--
--   tasker_tasks_dlq.failure_fingerprint   32 hex digits; NULL until enriched (or backfilled, for
--                                          entries enriched before this build: the enrichment
--                                          sweep gives them one in bounded batches)
--   idx_dlq_failure_fingerprint            a group's entries by status, oldest first: the group
--                                          page, bulk resolve by group, a group's oldest pending
--                                          entry; and the ungrouped pending entries (NULL)
--   idx_dlq_pending_unfingerprinted        the backfill's work list: pending entries enriched
--                                          without a fingerprint (empty once the backfill is done)
--   tasker_dlq_groups                      one row per fingerprint ever seen: what it stands for
--                                          (template, reason, state, blocking steps and errors,
--                                          a one-line diagnosis), its pending and resolved
--                                          counts, first and last seen
--   tasker_dlq_group_hours                 per group and UTC hour: entries opened (by
--                                          dlq_timestamp) and resolved (by resolution_timestamp)
--
-- The counts are kept by triggers on tasker_tasks_dlq (migrations/triggers/dlq_groups_follow_*),
-- in the transaction of the change, whatever makes it: enrichment, the backfill, resolving one or
-- many, PATCH, archival, restore, SQL by hand. So the groups page reads at most a few rows per
-- group and never counts entries, and a group's counts always equal a count of its entries
-- (test/integration/dlq-groups.test.ts proves it after every kind of change). A group row stays
-- when its entries are archived: a cause that comes back is not new.
--
-- The archive table gets the column from sync_archive_tables (run by migrate). Adding a nullable
-- column without a default rewrites nothing; each index build reads the table once under this
-- migration's lock (one row per investigation). IF NOT EXISTS: on a large table an operator can
-- add the column and build the indexes first (CREATE INDEX CONCURRENTLY, same names), and this
-- migration then only creates the tables (docs/operating.md, Upgrades).
ALTER TABLE tasker_tasks_dlq ADD COLUMN IF NOT EXISTS failure_fingerprint text;

CREATE INDEX IF NOT EXISTS idx_dlq_failure_fingerprint
  ON tasker_tasks_dlq (failure_fingerprint, resolution_status, dlq_timestamp, dlq_entry_uuid);

CREATE INDEX IF NOT EXISTS idx_dlq_pending_unfingerprinted
  ON tasker_tasks_dlq (dlq_timestamp, dlq_entry_uuid)
  WHERE resolution_status = 'pending' AND failure_fingerprint IS NULL
    AND enrichment_next_attempt_at IS NULL AND task_snapshot ? 'enrichment';

CREATE TABLE tasker_dlq_groups (
  fingerprint text PRIMARY KEY,
  -- The normalization rules that made it (dlq_failure_signature's version).
  rule_version integer NOT NULL,
  namespace_name text,
  task_name text,
  template_version text,
  dlq_reason dlq_reason NOT NULL,
  original_state varchar(50) NOT NULL,
  -- The signature as enrichment recorded it in the first entry's snapshot (failure_signature).
  signature jsonb NOT NULL,
  diagnosis text NOT NULL,
  pending integer NOT NULL DEFAULT 0,
  resolved integer NOT NULL DEFAULT 0,
  -- dlq_timestamp of the first and last entry that joined it (not lowered when entries are archived).
  first_seen_at timestamptz NOT NULL,
  last_seen_at timestamptz NOT NULL,
  -- When its first entry joined (the database's clock): a new failure signature.
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tasker_dlq_group_hours (
  fingerprint text NOT NULL,
  hour timestamptz NOT NULL,
  opened integer NOT NULL DEFAULT 0,
  resolved integer NOT NULL DEFAULT 0,
  PRIMARY KEY (fingerprint, hour)
);
