-- Makes the partition of archive table p_archive (a partitioned one) for the month (UTC) holding
-- p_month, unless a partition already covers any of it; returns its name, or NULL when nothing was
-- made. Named <archive table>_pYYYYMM, range [first of the month, first of the next) in UTC.
--
-- Never a lock the engine or a batch waits on: the table is made standalone (CREATE TABLE ... LIKE
-- the parent, its indexes and key included: ACCESS SHARE on the parent) and then attached (ATTACH
-- PARTITION takes SHARE UPDATE EXCLUSIVE on the parent, which archival's inserts, restores' deletes
-- and reads do not conflict with; the new table is empty, so nothing is scanned). The caller sets
-- lock_timeout and calls it outside any archival batch: by `migrate` and by the archival job before
-- its first batch (src/install/archive-partitions.ts, jobs/archive-finished-tasks.ts).
CREATE OR REPLACE FUNCTION tasker_lifecycle_add_archive_partition(p_archive regclass, p_month timestamptz)
RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_from timestamptz := date_trunc('month', p_month, 'UTC');
  v_to timestamptz := date_trunc('month', p_month, 'UTC') + interval '1 month';
  v_table text := (SELECT c.relname FROM pg_class c WHERE c.oid = p_archive);
  v_name text;
BEGIN
  IF (SELECT c.relkind FROM pg_class c WHERE c.oid = p_archive) <> 'p' THEN
    RAISE EXCEPTION 'archive table % is not partitioned yet: run `tasker-lifecycle migrate`', p_archive
      USING ERRCODE = 'TL005';
  END IF;
  IF EXISTS (SELECT 1 FROM tasker_lifecycle_archive_partitions() p
              WHERE p.archive_table = v_table
                AND (p.from_at IS NULL OR p.from_at < v_to) AND (p.to_at IS NULL OR p.to_at > v_from)) THEN
    RETURN NULL;
  END IF;
  v_name := v_table || '_p' || to_char(v_from AT TIME ZONE 'UTC', 'YYYYMM');
  EXECUTE format('CREATE TABLE %I (LIKE %s INCLUDING INDEXES)', v_name, p_archive);
  EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', p_archive, v_name, v_from, v_to);
  RETURN v_name;
END
$$;
