-- The last, catalog-only step of adopting an unpartitioned archive table (src/install/archive-
-- partitions.ts): p_archive becomes a table partitioned by range of archived_at, and the table it
-- was becomes its partition <p_archive>_adopted for [MINVALUE, p_upper), its files untouched (same
-- relfilenode: nothing rewritten, nothing scanned). The caller has already, in transactions of their
-- own: added CHECK (archived_at < p_upper) NOT VALID as <p_archive>_adopt_range and validated it
-- (SHARE UPDATE EXCLUSIVE), which proves the partition's range so ATTACH skips its scan; and built
-- UNIQUE (<key>, archived_at) CONCURRENTLY as <p_archive>_adopt_key, which becomes the partition's
-- primary key (a partitioned table's key must include archived_at). In this transaction, each
-- statement takes ACCESS EXCLUSIVE on the old table for a catalog change only:
--   the old table's other indexes are renamed <name>_adopted and their definitions made again on the
--   new parent (empty, so at once) under the old names; the old table is renamed, its primary key
--   swapped for the unique index; the parent is made (LIKE the old table: same columns, same order)
--   with primary key (<old key columns>, archived_at); and the old table attached, its indexes
--   matched to the parent's. Returns false, changing nothing, when p_archive is partitioned already.
CREATE OR REPLACE FUNCTION tasker_lifecycle_adopt_archive_table(p_archive text, p_upper timestamptz)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  v_old regclass := to_regclass(p_archive);
  v_part text := p_archive || '_adopted';
  v_pkey text;
  v_key_cols text;
  v_defs text[];
  v_index record;
  v_def text;
BEGIN
  IF v_old IS NULL THEN
    RAISE EXCEPTION 'archive table % is missing', p_archive USING ERRCODE = '42P01';
  END IF;
  IF (SELECT c.relkind FROM pg_class c WHERE c.oid = v_old) = 'p' THEN
    RETURN false;
  END IF;
  SELECT c.conname, string_agg(quote_ident(a.attname), ', ' ORDER BY k.n)
    INTO v_pkey, v_key_cols
    FROM pg_constraint c
   CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
   WHERE c.conrelid = v_old AND c.contype = 'p' AND a.attname <> 'archived_at'
   GROUP BY c.conname;
  IF v_pkey IS NULL THEN
    RAISE EXCEPTION 'archive table % has no primary key to adopt', p_archive USING ERRCODE = 'TL005';
  END IF;
  IF to_regclass(p_archive || '_adopt_key') IS NULL THEN
    RAISE EXCEPTION 'index %_adopt_key is missing: `migrate` builds it before adopting %', p_archive, p_archive
      USING ERRCODE = 'TL005';
  END IF;
  -- the other indexes: renamed on the old table, made again on the parent under their names
  v_defs := ARRAY[]::text[];
  FOR v_index IN
    SELECT ic.relname, pg_get_indexdef(i.indexrelid) AS def
      FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
     WHERE i.indrelid = v_old AND NOT i.indisprimary AND ic.relname <> p_archive || '_adopt_key'
     ORDER BY ic.relname
  LOOP
    v_defs := v_defs || v_index.def;
    EXECUTE format('ALTER INDEX %I RENAME TO %I', v_index.relname, left(v_index.relname, 55) || '_adopted');
  END LOOP;
  EXECUTE format('ALTER TABLE %s RENAME TO %I', v_old, v_part);
  EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', v_part, v_pkey);
  EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I PRIMARY KEY USING INDEX %I', v_part, v_part || '_pkey',
                 p_archive || '_adopt_key');
  EXECUTE format('CREATE TABLE %I (LIKE %I) PARTITION BY RANGE (archived_at)', p_archive, v_part);
  EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I PRIMARY KEY (%s, archived_at)', p_archive, v_pkey, v_key_cols);
  FOREACH v_def IN ARRAY v_defs LOOP
    EXECUTE v_def; -- names p_archive, now the parent
  END LOOP;
  EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (MINVALUE) TO (%L)', p_archive, v_part, p_upper);
  RETURN true;
END
$$;
