import pg from 'pg';
import type { Db } from '../pool.ts';

/**
 * The indexes this system keeps on the engine's tables (migrations/indexes/<name>.sql), as the
 * catalog has them, and the concurrent statements that change them (src/install/index-files.ts
 * decides which). Identifiers are quoted here; the CREATE INDEX CONCURRENTLY statements come from
 * the index files themselves.
 */

/** An index as the catalog has it. */
export interface IndexState {
  name: string;
  /** The table it is on. */
  table: string;
  /** pg_index.indisvalid: false while CREATE INDEX CONCURRENTLY runs, and after one failed. */
  valid: boolean;
  /** pg_get_indexdef: CREATE [UNIQUE] INDEX name ON schema.table USING … */
  definition: string;
}

/** The index called `name` (on the search path), or null when there is none. */
export async function indexState(db: Db, name: string): Promise<IndexState | null> {
  const { rows } = await db.query<IndexState>(
    `SELECT c.relname AS name, i.indrelid::regclass::text AS table, i.indisvalid AS valid,
            pg_get_indexdef(i.indexrelid) AS definition
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE i.indexrelid = to_regclass($1)`,
    [pg.escapeIdentifier(name)],
  );
  return rows[0] ?? null;
}

/** Whether the table exists (on the search path). */
export async function tableExists(db: Db, table: string): Promise<boolean> {
  const { rows } = await db.query<{ present: boolean }>(
    "SELECT coalesce(to_regclass($1) IS NOT NULL AND (SELECT relkind IN ('r', 'p') FROM pg_class WHERE oid = to_regclass($1)), false) AS present",
    [pg.escapeIdentifier(table)],
  );
  return rows[0]!.present;
}

const PROBE_TABLE = 'tasker_lifecycle_index_probe';

/**
 * pg_get_indexdef of the index `CREATE INDEX ON <table> <tail>` would make: built on an empty
 * temporary copy of the table's columns (CREATE TEMP TABLE … (LIKE table)), so the definition is
 * PostgreSQL's own rendering for this table's column types, comparable with an existing index's.
 * Call inside a transaction that is rolled back; it takes ACCESS SHARE on the table only.
 */
export async function probeIndexDefinition(db: Db, table: string, tail: string): Promise<string> {
  await db.query(`CREATE TEMP TABLE ${PROBE_TABLE} (LIKE ${pg.escapeIdentifier(table)}) ON COMMIT DROP`);
  await db.query(`CREATE INDEX ${PROBE_TABLE}_idx ON pg_temp.${PROBE_TABLE} ${tail}`);
  const { rows } = await db.query<{ definition: string }>(
    `SELECT pg_get_indexdef(to_regclass('pg_temp.${PROBE_TABLE}_idx')) AS definition`,
  );
  return rows[0]!.definition;
}

/** DROP INDEX CONCURRENTLY IF EXISTS: blocks no read or write (outside a transaction only). */
export async function dropIndexConcurrently(db: Db, name: string): Promise<void> {
  await db.query(`DROP INDEX CONCURRENTLY IF EXISTS ${pg.escapeIdentifier(name)}`);
}

/** ALTER INDEX … RENAME: SHARE UPDATE EXCLUSIVE on the index only, which no read or write waits on. */
export async function renameIndex(db: Db, from: string, to: string): Promise<void> {
  await db.query(`ALTER INDEX ${pg.escapeIdentifier(from)} RENAME TO ${pg.escapeIdentifier(to)}`);
}
