import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { migrationsDir } from '../paths.ts';

/**
 * Applies migrations/NNNN_name.sql in order, each in its own transaction, and records them in
 * tasker_lifecycle_migrations (version, name, checksum, applied_at). A session advisory lock makes
 * it safe for any number of processes to run it at once: one applies, the others wait and then
 * find nothing left to do. A file changed after it was applied is refused (migrations are
 * forward-only and immutable), as is a database that has a migration this build does not know.
 */

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
      const done: string[] = [];
      for (const m of pending) {
        try {
          await client.query('BEGIN');
          await client.query(m.sql);
          await client.query(
            'INSERT INTO tasker_lifecycle_migrations (version, name, checksum) VALUES ($1, $2, $3)',
            [m.version, m.name, m.checksum],
          );
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined); // report the migration's error, not the rollback's
          throw new Error(`migration ${m.file} failed: ${(err as Error).message}`, { cause: err });
        }
        done.push(m.file);
      }
      return { applied: done, alreadyApplied: migrations.length - pending.length };
    } finally {
      await client.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_CLASS, LOCK_ID]);
    }
  } finally {
    client.release();
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
