import type pg from 'pg';
import type { Db } from '../db/pool.ts';
import {
  type EngineColumn,
  engineColumns,
  missingEngineFunctions,
  missingMostRecentRules,
  presentEngineTables,
  probeCoreTableShape,
} from '../db/queries/engine-schema.ts';

/**
 * The engine's tables (tasker-core owns them) against what this system needs: `migrate` checks
 * them before changing anything, on every run, so a later change by the engine that breaks this
 * system is reported too.
 */

/** Whether any of the engine's tables exists (then 0001 is adopted, not run). */
export async function hasEngineTables(db: Db): Promise<boolean> {
  return (await presentEngineTables(db)).length > 0;
}

/**
 * What the engine's tables lack against migrations/0001_core_tables.sql (the shape this system was
 * built against, probed in a scratch schema): tables, columns, types our SQL can read and write,
 * the most_recent rule, and the functions we call. Extra tables, columns and indexes are the
 * engine's business and fine.
 */
export async function engineSchemaProblems(client: pg.PoolClient, coreSql: string): Promise<string[]> {
  const expected = await probeCoreTableShape(client, coreSql).catch((err: unknown) => {
    if ((err as { code?: string }).code !== '42501') throw err;
    throw new Error(
      `checking the engine's tables builds 0001's shape in a scratch schema (rolled back), which needs the CREATE privilege on this database: ${(err as Error).message}`,
      { cause: err },
    );
  });
  const actual = new Map((await engineColumns(client)).map((c) => [`${c.table}.${c.column}`, c]));
  const tables = new Set((await presentEngineTables(client)).values());
  const problems: string[] = [];
  for (const table of new Set(expected.map((c) => c.table))) {
    if (!tables.has(table)) problems.push(`table ${table} is missing`);
  }
  for (const want of expected) {
    if (!tables.has(want.table)) continue;
    const have = actual.get(`${want.table}.${want.column}`);
    if (!have) problems.push(`${want.table}.${want.column} is missing (${want.type} expected)`);
    else if (!compatibleType(want, have)) {
      problems.push(`${want.table}.${want.column} is ${have.type}; ${want.type} expected`);
    }
  }
  for (const rule of await missingMostRecentRules(client)) problems.push(rule);
  for (const fn of await missingEngineFunctions(client)) problems.push(`function ${fn} is missing`);
  return problems;
}

/**
 * Types this system's SQL can read and write in place of 0001's: the same; any string type for a
 * string (lengths are the engine's business); a wider integer.
 */
function compatibleType(want: EngineColumn, have: EngineColumn): boolean {
  if (want.type === have.type) return true;
  if (want.category === 'S' && have.category === 'S') return true;
  const integers = ['smallint', 'integer', 'bigint'];
  return integers.includes(want.type) && integers.indexOf(have.type) > integers.indexOf(want.type);
}
