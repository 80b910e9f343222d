-- What one archive table lacks against its live table: one row per column to change, with the
-- change (add, widen, drop not null) or the reason it cannot be made (problem). Catalog reads only.
CREATE OR REPLACE FUNCTION tasker_lifecycle_archive_drift(p_live regclass, p_archive regclass)
RETURNS TABLE (column_name text, change text, ddl text, problem text)
LANGUAGE sql STABLE AS $$
  WITH live AS (
    SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
           CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END AS default_expr
      FROM pg_attribute a
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = p_live AND a.attnum > 0 AND NOT a.attisdropped
  ),
  archive AS (
    SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull
      FROM pg_attribute a
     WHERE a.attrelid = p_archive AND a.attnum > 0 AND NOT a.attisdropped
  )
  SELECT l.name,
         CASE WHEN ar.name IS NULL THEN 'add ' || l.type
              WHEN ar.type <> l.type THEN 'widen ' || ar.type || ' to ' || l.type
              ELSE 'drop not null' END,
         CASE WHEN ar.name IS NULL
                THEN format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS %I %s', p_archive, l.name, l.type)
                     || coalesce(' DEFAULT ' || l.default_expr, '')
              WHEN ar.type <> l.type
                THEN format('ALTER TABLE %s ALTER COLUMN %I TYPE %s', p_archive, l.name, l.type)
              ELSE format('ALTER TABLE %s ALTER COLUMN %I DROP NOT NULL', p_archive, l.name) END,
         CASE WHEN l.name = 'archived_at'
                THEN format('%s.archived_at: the archive table %s uses that name for the time of archival',
                            p_live, p_archive)
              WHEN ar.name IS NOT NULL AND ar.type <> l.type
                   AND NOT tasker_lifecycle_type_widens(ar.type, l.type)
                THEN format('%s.%I is %s but %s.%I is %s, and the archive column cannot be widened to it without changing values',
                            p_live, l.name, l.type, p_archive, l.name, ar.type) END
    FROM live l
    LEFT JOIN archive ar ON ar.name = l.name
   WHERE l.name = 'archived_at'
      OR ar.name IS NULL
      -- an archive column already wider than the live one stores every live value as it is
      OR (ar.type <> l.type AND NOT tasker_lifecycle_type_widens(l.type, ar.type))
      OR (ar.attnotnull AND NOT l.attnotnull)
  UNION ALL
  -- a column the live table no longer has: the archive keeps it (old rows' values), but new rows
  -- have nothing for it
  SELECT ar.name, 'drop not null', format('ALTER TABLE %s ALTER COLUMN %I DROP NOT NULL', p_archive, ar.name), NULL
    FROM archive ar
   WHERE ar.attnotnull AND ar.name <> 'archived_at'
     AND NOT EXISTS (SELECT 1 FROM live l WHERE l.name = ar.name)
$$;
