-- The partitions of the six archive tables (tasker_lifecycle_archive_pairs), each with its range of
-- archived_at: [from_at, to_at), from_at NULL for MINVALUE (the adopted partition). A partition whose
-- DETACH ... CONCURRENTLY did not finish is listed with detach_pending true (retention finishes it).
-- Catalog reads only (pg_inherits by parent, pg_class by oid): as many rows as partitions.
CREATE OR REPLACE FUNCTION tasker_lifecycle_archive_partitions()
RETURNS TABLE (archive_table text, partition_name text, from_at timestamptz, to_at timestamptz,
               detach_pending boolean)
LANGUAGE plpgsql STABLE ROWS 50 AS $$
BEGIN
  RETURN QUERY
  SELECT p.archive_table, c.relname::text, b.from_at, b.to_at,
         -- pg_inherits.inhdetachpending (PostgreSQL 14 and later)
         coalesce((to_jsonb(i) ->> 'inhdetachpending')::boolean, false)
    FROM tasker_lifecycle_archive_pairs() p
    JOIN pg_inherits i ON i.inhparent = to_regclass(p.archive_table)
    JOIN pg_class c ON c.oid = i.inhrelid
   CROSS JOIN LATERAL (
     SELECT CASE WHEN m[1] = 'MINVALUE' THEN NULL ELSE btrim(m[1], '''')::timestamptz END AS from_at,
            CASE WHEN m[2] = 'MAXVALUE' THEN NULL ELSE btrim(m[2], '''')::timestamptz END AS to_at
       FROM regexp_match(pg_get_expr(c.relpartbound, c.oid), '^FOR VALUES FROM \((.+)\) TO \((.+)\)$') m
   ) b
   ORDER BY p.archive_table, b.from_at NULLS FIRST;
END
$$;
