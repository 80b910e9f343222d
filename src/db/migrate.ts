import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { EngineSchemaError } from '../errors.ts';
import { migrationsDir } from '../paths.ts';
import { canSyncArchiveTables, syncArchiveTables } from './queries/archive.ts';
import {
  type EngineColumn,
  engineColumns,
  missingEngineFunctions,
  missingMostRecentRules,
  presentEngineTables,
  probeCoreTableShape,
} from './queries/engine-schema.ts';

/**
 * Applies migrations/NNNN_name.sql in order, each in its own transaction, and records them in
 * tasker_lifecycle_migrations (version, name, checksum, applied_at). A session advisory lock makes
 * it safe for any number of processes to run it at once: one applies, the others wait and then
 * find nothing left to do. The lock belongs to the session, so the pool passed in must reach
 * PostgreSQL itself (database.direct_url), never PgBouncer in transaction pooling mode, which would
 * hand the lock's server connection to other clients between statements. A file changed after it was applied is refused (migrations are
 * forward-only and immutable), as is a database that has a migration this build does not know.
 *
 * The engine's tables belong to the engine (tasker-core). Migration 0001 creates them only where
 * none exists (standalone, demo, tests). Where any exists, the runner checks them against what
 * this system needs (every table and column of 0001, with a compatible type, the most_recent
 * rule, the engine functions it calls) and refuses with an EngineSchemaError naming each gap,
 * before changing anything; when all is there, 0001 is recorded as adopted instead of run, and
 * only this system's migrations are applied. This check runs on every `migrate`, so a later change
 * by the engine that breaks this system is reported too. Last, the archive tables are brought up
 * to date with the live tables (columns the engine added, types it widened).
 */

/** The migration that creates the engine's tables (see above). */
export const ENGINE_MIGRATION_VERSION = 1;

export interface Migration {
  version: number;
  name: string;
  file: string;
  sql: string;
  checksum: string;
}

export interface MigrationResult {
  applied: string[];
  alreadyApplied: number;
  /**
   * The engine's tables: created by 0001 here, adopted (they existed; 0001 recorded, not run), or
   * verified (0001 applied before; checked again).
   */
  engineTables: 'created' | 'adopted' | 'verified';
  /** Changes made to the archive tables to follow the live tables ("table.column: change"). */
  archiveChanges: string[];
}

export interface MigrationStatus {
  pending: Migration[];
  /** Applied versions with no file here: the database is newer than this build. */
  unknown: number[];
}

// Arbitrary, fixed advisory lock key pair for "tasker-lifecycle migrations".
const LOCK_CLASS = 7_411_001;
const LOCK_ID = 1;

const FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;

export function readMigrations(dir = migrationsDir): Migration[] {
  return readdirSync(dir)
    .filter((f) => FILE_PATTERN.test(f))
    .sort()
    .map((file) => {
      const [, version, name] = FILE_PATTERN.exec(file)!;
      const sql = readFileSync(join(dir, file), 'utf8');
      return { version: Number(version), name: name!, file, sql, checksum: sha256(sql) };
    });
}

export async function migrate(pool: pg.Pool, dir = migrationsDir): Promise<MigrationResult> {
  const migrations = readMigrations(dir);
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1, $2)', [LOCK_CLASS, LOCK_ID]);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS tasker_lifecycle_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        checksum text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now())`);
      const applied = await appliedMigrations(client);
      const { pending, unknown } = compare(migrations, applied);
      if (unknown.length > 0) {
        throw new Error(
          `the database has migration(s) ${unknown.join(', ')} that this build does not have: deploy the newer build instead`,
        );
      }
      // Before anything is changed: the engine's tables, if any exist, must have what we need.
      const engineFirst = (await presentEngineTables(client)).length > 0;
      const core = migrations.find((m) => m.version === ENGINE_MIGRATION_VERSION);
      if (engineFirst && core) {
        const problems = await engineSchemaProblems(client, core.sql);
        if (problems.length > 0) {
          throw new EngineSchemaError(
            "the workflow engine's tables in this database lack what tasker-lifecycle needs (nothing was changed)",
            problems,
          );
        }
      }
      const done: string[] = [];
      let engineTables: MigrationResult['engineTables'] = 'verified';
      for (const m of pending) {
        const adopt = m.version === ENGINE_MIGRATION_VERSION && engineFirst;
        try {
          await client.query('BEGIN');
          if (!adopt) await client.query(m.sql);
          await client.query(
            'INSERT INTO tasker_lifecycle_migrations (version, name, checksum) VALUES ($1, $2, $3)',
            [m.version, m.name, m.checksum],
          );
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined); // report the migration's error, not the rollback's
          throw new Error(`migration ${m.file} failed: ${(err as Error).message}`, { cause: err });
        }
        if (m.version === ENGINE_MIGRATION_VERSION) engineTables = adopt ? 'adopted' : 'created';
        if (!adopt) done.push(m.file);
      }
      const archiveChanges = await followLiveTables(client);
      return {
        applied: done,
        alreadyApplied: migrations.length - pending.length,
        engineTables,
        archiveChanges,
      };
    } finally {
      await client.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_CLASS, LOCK_ID]);
    }
  } finally {
    client.release();
  }
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

/** The archive tables take every column of the live tables (nothing to do before 0030). */
async function followLiveTables(client: pg.PoolClient): Promise<string[]> {
  if (!(await canSyncArchiveTables(client))) return [];
  try {
    const changes = await syncArchiveTables(client);
    return changes.map((c) => `${c.archive_table}.${c.column_name}: ${c.change}`);
  } catch (err) {
    if ((err as { code?: string }).code !== 'TL001') throw err;
    throw new EngineSchemaError(
      'the archive tables cannot follow the live tables (migrations are applied; archival and restore refuse until this is fixed)',
      [(err as Error).message, (err as { hint?: string }).hint ?? ''].filter((m) => m !== ''),
    );
  }
}

/** Pending and unknown migrations, without changing anything. */
export async function migrationStatus(
  db: pg.Pool | pg.PoolClient,
  dir = migrationsDir,
): Promise<MigrationStatus> {
  const exists = await db.query<{ present: boolean }>(
    "SELECT to_regclass('tasker_lifecycle_migrations') IS NOT NULL AS present",
  );
  const applied = exists.rows[0]!.present ? await appliedMigrations(db) : [];
  return compare(readMigrations(dir), applied);
}

interface AppliedRow {
  version: number;
  name: string;
  checksum: string;
}

async function appliedMigrations(db: pg.Pool | pg.PoolClient): Promise<AppliedRow[]> {
  const { rows } = await db.query<AppliedRow>(
    'SELECT version, name, checksum FROM tasker_lifecycle_migrations ORDER BY version',
  );
  return rows;
}

function compare(migrations: Migration[], applied: AppliedRow[]): MigrationStatus {
  const byVersion = new Map(migrations.map((m) => [m.version, m]));
  const appliedVersions = new Set<number>();
  for (const row of applied) {
    appliedVersions.add(row.version);
    const m = byVersion.get(row.version);
    if (m && m.checksum !== row.checksum) {
      throw new Error(
        `migration ${m.file} was changed after it was applied (checksum ${row.checksum.slice(0, 12)} in the database, ${m.checksum.slice(0, 12)} on disk): migrations are immutable, add a new one instead`,
      );
    }
  }
  return {
    pending: migrations.filter((m) => !appliedVersions.has(m.version)),
    unknown: applied.filter((r) => !byVersion.has(r.version)).map((r) => r.version),
  };
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
