import type pg from 'pg';
import type { Db } from '../pool.ts';

/**
 * Catalog queries about the engine's tables (tasker-core owns them; migrations/0001_core_tables.sql
 * is the shape this system was built against): which exist, their columns and types, the
 * most_recent rule, the engine functions this system calls, and the foreign keys archival relies on.
 * Read-only, except probeCoreTableShape, whose work is always rolled back.
 */

/** The engine's tables, as 0001 creates them where they are absent. */
export const ENGINE_TABLES = [
  'tasker_task_namespaces',
  'tasker_named_tasks',
  'tasker_named_steps',
  'tasker_tasks',
  'tasker_workflow_steps',
  'tasker_workflow_step_edges',
  'tasker_task_transitions',
  'tasker_workflow_step_transitions',
] as const;

/** The engine's functions this system calls or uses as a default, with their argument types. */
export const ENGINE_FUNCTIONS = [
  'uuid_generate_v7()',
  'update_updated_at_column()',
  'transition_task_state_atomic(uuid, character varying, character varying, uuid, jsonb)',
] as const;

/** The transition tables whose current row is the one with most_recent = true, and their key. */
export const MOST_RECENT_RULES = [
  { table: 'tasker_task_transitions', key: 'task_uuid' },
  { table: 'tasker_workflow_step_transitions', key: 'workflow_step_uuid' },
] as const;

export interface EngineColumn {
  table: string;
  column: string;
  /** format_type(), e.g. "character varying(128)". */
  type: string;
  /** pg_type.typcategory: S string, N numeric, D date/time, U user (jsonb, uuid), B boolean. */
  category: string;
}

/** Which of the engine's tables exist (on the search path). */
export async function presentEngineTables(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ table: string }>(
    `SELECT t AS table FROM unnest($1::text[]) t WHERE to_regclass(t) IS NOT NULL ORDER BY t`,
    [ENGINE_TABLES],
  );
  return rows.map((r) => r.table);
}

const COLUMNS = `
  SELECT t AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type,
         ty.typcategory AS category
    FROM unnest($1::text[]) t
    JOIN pg_attribute a ON a.attrelid = to_regclass(coalesce($2::text || '.', '') || t)
    JOIN pg_type ty ON ty.oid = a.atttypid
   WHERE a.attnum > 0 AND NOT a.attisdropped
   ORDER BY t, a.attnum`;

/** Columns of the engine's tables as they are in this database. */
export async function engineColumns(db: Db): Promise<EngineColumn[]> {
  const { rows } = await db.query<EngineColumn>(COLUMNS, [ENGINE_TABLES, null]);
  return rows;
}

const PROBE_SCHEMA = 'tasker_lifecycle_probe';

/**
 * The columns 0001 would create: its SQL run in a scratch schema inside a transaction that is
 * always rolled back, so the check can never drift from the file. Needs a client outside any
 * transaction, and the CREATE privilege on the database (as migrating does anyway).
 */
export async function probeCoreTableShape(client: pg.PoolClient, coreSql: string): Promise<EngineColumn[]> {
  await client.query('BEGIN');
  try {
    await client.query(`CREATE SCHEMA ${PROBE_SCHEMA}`);
    await client.query(`SELECT set_config('search_path', $1, true)`, [PROBE_SCHEMA]);
    await client.query(coreSql);
    const { rows } = await client.query<EngineColumn>(COLUMNS, [ENGINE_TABLES, PROBE_SCHEMA]);
    return rows;
  } finally {
    await client.query('ROLLBACK');
  }
}

/**
 * Transition tables without the most_recent rule: a unique index on (key) or (key, most_recent)
 * whose predicate is most_recent (= true). Without it two current rows could coexist and every
 * "current state" this system reads would be ambiguous.
 */
export async function missingMostRecentRules(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ table: string; key: string }>(
    `SELECT r.tbl AS table, r.key
       FROM unnest($1::text[], $2::text[]) AS r(tbl, key)
      WHERE NOT EXISTS (
        SELECT 1 FROM pg_index i
         WHERE i.indrelid = to_regclass(r.tbl) AND i.indisunique AND i.indisvalid
           AND pg_get_expr(i.indpred, i.indrelid) ~ '^\\(*most_recent( = true)?\\)*$'
           AND (SELECT array_agg(a.attname::text ORDER BY k.ord)
                  FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
               IN (ARRAY[r.key], ARRAY[r.key, 'most_recent']))
      ORDER BY r.tbl`,
    [MOST_RECENT_RULES.map((r) => r.table), MOST_RECENT_RULES.map((r) => r.key)],
  );
  return rows.map(
    (r) => `${r.table}: no unique index on (${r.key}) WHERE most_recent (one current row per ${r.key})`,
  );
}

/** The engine functions (ENGINE_FUNCTIONS) that do not exist with those argument types. */
export async function missingEngineFunctions(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ signature: string }>(
    `SELECT f AS signature FROM unnest($1::text[]) f WHERE to_regprocedure(f) IS NULL`,
    [ENGINE_FUNCTIONS],
  );
  return rows.map((r) => r.signature);
}

/** One foreign key archival relies on that the database does not enforce as archival needs it. */
export interface ArchivalKeyProblem {
  /** "tasker_workflow_steps (task_uuid) -> tasker_tasks (task_uuid)". */
  foreign_key: string;
  /** "missing: add it with ALTER TABLE …", "NOT VALID (name): run ALTER TABLE … VALIDATE CONSTRAINT name", … */
  problem: string;
}

/**
 * The foreign keys archival relies on (each child table to its parent: steps, task transitions and
 * DLQ entries to tasks; step transitions and both ends of an edge to steps) that are missing, NOT
 * VALID, NOT ENFORCED, DEFERRABLE or have their triggers disabled, each with what to run
 * (migrations/functions/tasker_lifecycle_archive_key_problems.sql, which archive_completed_tasks
 * checks before every batch too). null on a database this build's `migrate` has not reached.
 */
export async function archivalKeyProblems(db: Db): Promise<ArchivalKeyProblem[] | null> {
  const { rows: present } = await db.query<{ present: boolean }>(
    "SELECT to_regprocedure('tasker_lifecycle_archive_key_problems()') IS NOT NULL AS present",
  );
  if (!present[0]!.present) return null;
  const { rows } = await db.query<ArchivalKeyProblem>(
    `SELECT k.foreign_key, k.problem
       FROM tasker_lifecycle_archive_key_problems() WITH ORDINALITY AS k(foreign_key, problem, n)
      ORDER BY k.n`,
  );
  return rows;
}
