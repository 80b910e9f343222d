import { setTimeout as sleep } from 'node:timers/promises';
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

/** The session holding the migration lock, as lockSchemaChanges names it when it gives up. */
export interface SchemaLockHolder {
  pid: number;
  application_name: string;
  state: string | null;
  /** Milliseconds its current statement has been running (or, idle, since its last one ended). */
  query_ms: number | null;
  query: string | null;
}

/**
 * Takes the session advisory lock that serialises every `migrate`, waiting up to `waitMs` for the
 * `migrate` holding it. It polls with pg_try_advisory_lock instead of waiting in
 * pg_advisory_lock(): a statement waiting there holds a snapshot, which the other `migrate`'s
 * CREATE INDEX CONCURRENTLY waits for while this one waits for its lock (a deadlock). Returns null
 * once held; the holder when it gave up (null too if the lock was freed as it gave up: held).
 * It belongs to the session, so the connection must reach PostgreSQL itself, never PgBouncer in
 * transaction pooling mode.
 */
export async function lockSchemaChanges(
  db: Db,
  waitMs: number,
  pollMs = 200,
): Promise<{ held: true } | { held: false; holder: SchemaLockHolder | null; waitedMs: number }> {
  const started = Date.now();
  for (;;) {
    const { rows } = await db.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS locked', [
      LOCK_CLASS,
      LOCK_ID,
    ]);
    if (rows[0]!.locked) return { held: true };
    const waitedMs = Date.now() - started;
    if (waitedMs >= waitMs) return { held: false, holder: await schemaLockHolder(db), waitedMs };
    await sleep(Math.min(waitMs - waitedMs, pollMs * (0.5 + Math.random())));
  }
}

/** Who holds the migration lock in this database, if anyone. */
export async function schemaLockHolder(db: Db): Promise<SchemaLockHolder | null> {
  const { rows } = await db.query<SchemaLockHolder>(
    `SELECT a.pid, coalesce(a.application_name, '') AS application_name, a.state,
            round(extract(epoch FROM clock_timestamp() - coalesce(a.query_start, a.backend_start)) * 1000)::float8
              AS query_ms,
            left(regexp_replace(a.query, '\\s+', ' ', 'g'), 300) AS query
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [LOCK_CLASS, LOCK_ID],
  );
  return rows[0] ?? null;
}

export async function unlockSchemaChanges(db: Db): Promise<void> {
  await db.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_CLASS, LOCK_ID]);
}
