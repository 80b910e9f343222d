-- 0210: archives that do not grow forever (issue 24): monthly partitions of the six archive tables,
-- a rollup that counts them, and retention by dropping whole months.
--
-- The tables are made partitioned by `migrate` itself (src/install/archive-partitions.ts), not here:
-- adopting an existing archive without rewriting it takes several transactions (a CHECK added NOT
-- VALID, then validated under SHARE UPDATE EXCLUSIVE; a unique index built CONCURRENTLY; then one
-- short transaction that renames each table, makes a partitioned parent with its old name and
-- attaches the old table as the parent's partition for everything before the adoption bound, which
-- the validated CHECK proves, so nothing is scanned or rewritten). A numbered migration is one
-- transaction; this one only makes the tables that bookkeeping needs.
--
-- Keys: a partitioned table's primary key must include its partition key, so each archive table's
-- key becomes (its row's uuid, archived_at). One archived copy per task is kept by the archival path
-- instead (tasker_lifecycle_archive_graphs refuses, SQLSTATE 23505, to archive a task that already
-- has an archived copy), and a restore takes the newest copy (restore_archived_task).

-- The bound each archive table was (or is being) adopted up to: everything archived before it sits
-- in the adopted partition, [MINVALUE, upper_bound). Chosen once, before the CHECK that proves it is
-- added, so a migrate that stopped part way carries on with the same bound.
CREATE TABLE tasker_archive_adoption (
  archive_table text PRIMARY KEY,
  upper_bound timestamptz NOT NULL,
  chosen_at timestamptz NOT NULL DEFAULT now()
);

-- The rollup: what each month of the archive holds, kept by archival in each batch's transaction,
-- by restore in its transaction, and by retention when it drops a month, so statistics never scan
-- the archive. archive_month is the month (UTC) of archived_at, which is also the partition a row
-- sits in. The rows are deltas, summed by month when read: each batch and each restore inserts its
-- own rows (a batch never waits for another's rollup row: two archivers must never wait for each
-- other), and the archival job folds them into one row per month now and then
-- (tasker_lifecycle_archive_rollup_compact). first/last_archived_at are the first and last archival
-- into that month (a restore does not move them back).
CREATE TABLE tasker_archive_months (
  archive_month date NOT NULL,
  tasks bigint NOT NULL DEFAULT 0,
  steps bigint NOT NULL DEFAULT 0,
  transitions bigint NOT NULL DEFAULT 0,
  edges bigint NOT NULL DEFAULT 0,
  step_transitions bigint NOT NULL DEFAULT 0,
  dlq_entries bigint NOT NULL DEFAULT 0,
  first_archived_at timestamptz,
  last_archived_at timestamptz,
  CHECK (archive_month = date_trunc('month', archive_month)::date)
);
CREATE INDEX idx_archive_months_month ON tasker_archive_months (archive_month);

-- Archived tasks per month, template and final state (deltas too): v_archive_statistics's distinct
-- templates, lifetimes and per-state counts. oldest/newest_created_at are the extremes among the
-- tasks ever archived into that month (a restore does not narrow them); the counts are exact.
CREATE TABLE tasker_archive_month_templates (
  archive_month date NOT NULL,
  named_task_uuid uuid NOT NULL,
  final_state varchar(64) NOT NULL,
  tasks bigint NOT NULL DEFAULT 0,
  lifetime_seconds numeric NOT NULL DEFAULT 0,
  oldest_created_at timestamptz,
  newest_created_at timestamptz
);
CREATE INDEX idx_archive_month_templates_month ON tasker_archive_month_templates (archive_month);

-- Present once the rollup holds every archived row: `migrate` counts the archive that was there
-- and inserts this row in one transaction, holding SHARE on the six archive tables (archival and
-- restore wait; reads and the engine do not). Archival and restore add to the rollup only when it
-- is present, reading it after they have locked the archive tables, so each row is counted once.
CREATE TABLE tasker_archive_rollup_started (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  started_at timestamptz NOT NULL
);

-- Months of the archive exported to Parquet (`tasker-lifecycle archive export`): where, the manifest
-- (per table: file, rows, SHA-256, columns and their types), and when the files were read back and
-- found to match it. `archive drop --month` refuses a month without a verified export whose row
-- counts are the month's now (unless --force). The latest export of a month is the one that counts.
CREATE TABLE tasker_archive_exports (
  archive_month date PRIMARY KEY,
  directory text NOT NULL,
  manifest jsonb NOT NULL,
  exported_at timestamptz NOT NULL,
  verified_at timestamptz,
  CHECK (archive_month = date_trunc('month', archive_month)::date)
);
