/**
 * The previous release's workers keep running while this build's `migrate` changes the database
 * (a rolling upgrade, docs/operating.md "Upgrades"). What they call must still be there, the same:
 * every function signature they could call, with its result type; every column of the tables and
 * views they read and write, with its type; no new NOT NULL column without a default on a table
 * they insert into. And their start-up check must pass: it refuses a pending migration of theirs,
 * and a migration whose recorded checksum differs from their file (7ef2c80 src/db/migrate.ts).
 * migrations/README.md "Changing things" is the rule this test holds every change to.
 * test/e2e/upgrade.test.ts runs the previous release's real workers through an upgrade.
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import type { Db } from '../../src/db/pool.ts';
import { migrate, readMigrations } from '../../src/install/sql.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';
import { previousReleaseMigrations } from '../helpers/previous-release.ts';

/** What the previous release's SQL depends on, by name. */
async function interfaceOf(db: Db) {
  const rows = async (sql: string) =>
    Object.fromEntries((await db.query<{ k: string; v: string }>(sql)).rows.map((r) => [r.k, r.v]));
  return {
    functions: await rows(`
      SELECT p.oid::regprocedure::text AS k, pg_get_function_result(p.oid) AS v
        FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace`),
    columns: await rows(`
      SELECT c.relname || '.' || a.attname AS k, format_type(a.atttypid, a.atttypmod) AS v
        FROM pg_class c
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
       WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')`),
    requiredColumns: await rows(`
      SELECT c.relname || '.' || a.attname AS k, 'not null, no default' AS v
        FROM pg_class c
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
       WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
         AND a.attnotnull AND d.adbin IS NULL AND a.attidentity = '' AND a.attgenerated = ''`),
  };
}

let db: TestDatabase;
let before: Awaited<ReturnType<typeof interfaceOf>>;
let after: Awaited<ReturnType<typeof interfaceOf>>;
const previous = previousReleaseMigrations();

beforeAll(async () => {
  db = await createTestDatabase({ template: false });
  await migrate(db.pool, previous);
  before = await interfaceOf(db.pool);
  await migrate(db.pool);
  after = await interfaceOf(db.pool);
});
afterAll(async () => {
  await db.drop();
  rmSync(previous, { recursive: true, force: true });
});

it("every function of the previous release keeps its signature and result type after this build's migrate", () => {
  expect(Object.keys(before.functions).length).toBeGreaterThan(30);
  const changed = Object.entries(before.functions)
    .filter(([signature, result]) => after.functions[signature] !== result)
    .map(([signature, result]) => ({ signature, was: result, now: after.functions[signature] ?? 'dropped' }));
  expect(changed).toEqual([]);
});

it('every column of its tables and views keeps its type, and no table of its gains a column it would have to fill', () => {
  const changed = Object.entries(before.columns)
    .filter(([column, type]) => after.columns[column] !== type)
    .map(([column, type]) => ({ column, was: type, now: after.columns[column] ?? 'dropped' }));
  expect(changed).toEqual([]);
  const tablesBefore = new Set(Object.keys(before.columns).map((c) => c.split('.')[0]));
  const newRequired = Object.keys(after.requiredColumns).filter(
    (c) => tablesBefore.has(c.split('.')[0]) && !(c in before.requiredColumns),
  );
  expect(newRequired).toEqual([]);
});

it("its workers' start-up check passes: none of its migrations pending, each recorded with its own file's checksum", async () => {
  const { rows } = await db.pool.query<{ version: number; checksum: string }>(
    'SELECT version, checksum FROM tasker_lifecycle_migrations',
  );
  const recorded = new Map(rows.map((r) => [r.version, r.checksum]));
  const problems = readMigrations(previous)
    .filter((m) => recorded.get(m.version) !== m.checksum)
    .map((m) => `${m.file}: ${recorded.has(m.version) ? 'recorded with another checksum' : 'not recorded'}`);
  expect(problems).toEqual([]);
});
