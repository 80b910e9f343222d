import type { Db } from '../pool.ts';

/**
 * Queries on the install module's own records (src/install/sql.ts): tasker_lifecycle_migrations,
 * one row per versioned migration applied, and tasker_lifecycle_sql_objects, one row per file of
 * migrations/functions|views|triggers with the checksum last applied. Both tables are created by
 * the runner itself (not by a migration), so a build that does not know one of them still reads
 * the other.
 */

export interface AppliedMigration {
  version: number;
  name: string;
  checksum: string;
}

export interface AppliedObjectFile {
  file: string;
  checksum: string;
  applied_at: Date;
}

export async function createSchemaHistoryTables(db: Db): Promise<void> {
  await db.query(`CREATE TABLE IF NOT EXISTS tasker_lifecycle_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())`);
  await db.query(`CREATE TABLE IF NOT EXISTS tasker_lifecycle_sql_objects (
    file text PRIMARY KEY,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())`);
}

/** Versioned migrations applied, oldest first; [] where the table does not exist yet. */
export async function appliedMigrations(db: Db): Promise<AppliedMigration[]> {
  if (!(await tableExists(db, 'tasker_lifecycle_migrations'))) return [];
  const { rows } = await db.query<AppliedMigration>(
    'SELECT version, name, checksum FROM tasker_lifecycle_migrations ORDER BY version',
  );
  return rows;
}

export async function recordMigration(db: Db, m: AppliedMigration): Promise<void> {
  await db.query('INSERT INTO tasker_lifecycle_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
    m.version,
    m.name,
    m.checksum,
  ]);
}

/** Object files applied, with the checksum each had; [] where the table does not exist yet. */
export async function appliedObjectFiles(db: Db): Promise<AppliedObjectFile[]> {
  if (!(await tableExists(db, 'tasker_lifecycle_sql_objects'))) return [];
  const { rows } = await db.query<AppliedObjectFile>(
    'SELECT file, checksum, applied_at FROM tasker_lifecycle_sql_objects ORDER BY file',
  );
  return rows;
}

export async function recordObjectFile(db: Db, file: string, checksum: string): Promise<void> {
  await db.query(
    `INSERT INTO tasker_lifecycle_sql_objects (file, checksum) VALUES ($1, $2)
     ON CONFLICT (file) DO UPDATE SET checksum = excluded.checksum, applied_at = now()`,
    [file, checksum],
  );
}

async function tableExists(db: Db, name: string): Promise<boolean> {
  const { rows } = await db.query<{ present: boolean }>('SELECT to_regclass($1) IS NOT NULL AS present', [
    name,
  ]);
  return rows[0]!.present;
}

// Arbitrary, fixed advisory lock key pair for "tasker-lifecycle migrations".
const LOCK_CLASS = 7_411_001;
const LOCK_ID = 1;

/**
 * Waits for the session advisory lock that serialises every `migrate`; it belongs to the session,
 * so the connection must reach PostgreSQL itself, never PgBouncer in transaction pooling mode.
 */
export async function lockSchemaChanges(db: Db): Promise<void> {
  await db.query('SELECT pg_advisory_lock($1, $2)', [LOCK_CLASS, LOCK_ID]);
}

export async function unlockSchemaChanges(db: Db): Promise<void> {
  await db.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_CLASS, LOCK_ID]);
}
