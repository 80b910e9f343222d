import type { Db } from '../../src/db/pool.ts';

/**
 * A database's schema as the catalogs describe it, in a form two databases can be compared by:
 * every function (pg_get_functiondef), view (pg_get_viewdef), trigger (pg_get_triggerdef), table
 * with its columns, constraint, index, enum type and its labels, in the public schema. Rows are
 * keyed by name and sorted, so two databases built by different routes compare equal exactly when
 * their objects do. Tables listed in `except` (bookkeeping) are left out.
 */
export interface CatalogSnapshot {
  functions: Record<string, string>;
  views: Record<string, string>;
  triggers: Record<string, string>;
  columns: Record<string, string>;
  constraints: Record<string, string>;
  indexes: Record<string, string>;
  enums: Record<string, string>;
}

export async function catalogSnapshot(db: Db, except: string[] = []): Promise<CatalogSnapshot> {
  const rows = async (sql: string) =>
    Object.fromEntries((await db.query<{ k: string; v: string }>(sql, [except])).rows.map((r) => [r.k, r.v]));
  return {
    functions: await rows(`
      SELECT p.oid::regprocedure::text AS k, pg_get_functiondef(p.oid) AS v
        FROM pg_proc p
       WHERE p.pronamespace = 'public'::regnamespace AND cardinality($1::text[]) >= 0`),
    views: await rows(`
      SELECT c.relname AS k, pg_get_viewdef(c.oid) AS v
        FROM pg_class c
       WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('v', 'm')
         AND c.relname <> ALL ($1::text[])`),
    triggers: await rows(`
      SELECT t.tgrelid::regclass::text || '.' || t.tgname AS k, pg_get_triggerdef(t.oid) AS v
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
       WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace
         AND c.relname <> ALL ($1::text[])`),
    columns: await rows(`
      SELECT c.relname || '.' || lpad(a.attnum::text, 3, '0') || '.' || a.attname AS k,
             format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
               || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
               || CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END AS v
        FROM pg_class c
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
       WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
         AND c.relname <> ALL ($1::text[])`),
    constraints: await rows(`
      SELECT c.conrelid::regclass::text || '.' || c.conname AS k,
             pg_get_constraintdef(c.oid) || CASE WHEN c.convalidated THEN '' ELSE ' (not valid)' END
               || CASE WHEN c.condeferrable THEN ' deferrable' ELSE '' END AS v
        FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
       WHERE c.connamespace = 'public'::regnamespace AND r.relname <> ALL ($1::text[])`),
    indexes: await rows(`
      SELECT i.indexrelid::regclass::text AS k,
             pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' (invalid)' END AS v
        FROM pg_index i JOIN pg_class r ON r.oid = i.indrelid
       WHERE r.relnamespace = 'public'::regnamespace AND r.relname <> ALL ($1::text[])`),
    enums: await rows(`
      SELECT t.typname AS k, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) AS v
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
       WHERE t.typnamespace = 'public'::regnamespace AND cardinality($1::text[]) >= 0
       GROUP BY t.typname`),
  };
}
