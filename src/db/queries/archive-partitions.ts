import type pg from 'pg';
import type { Db } from '../pool.ts';

/**
 * Queries for the monthly partitions of the six archive tables and their rollup (migrations/0210):
 * adopting an unpartitioned archive (`migrate`), making partitions ahead of need (`migrate` and the
 * archival job), dropping whole months (retention), and reading what each month holds.
 * Identifiers come from tasker_lifecycle_archive_pairs() / the catalog and are escaped here.
 */

export interface ArchivePartition {
  archive_table: string;
  partition_name: string;
  /** null: MINVALUE (the adopted partition: everything archived before the adoption bound). */
  from_at: Date | null;
  to_at: Date | null;
  detach_pending: boolean;
}

/** Every partition of the six archive tables (tasker_lifecycle_archive_partitions: catalog reads). */
export async function archivePartitions(db: Db): Promise<ArchivePartition[]> {
  const { rows } = await db.query<ArchivePartition>(
    'SELECT archive_table, partition_name, from_at, to_at, detach_pending FROM tasker_lifecycle_archive_partitions()',
  );
  return rows;
}

export interface ArchiveTableShape {
  archive_table: string;
  /** 'p': partitioned; 'r': a plain table still to adopt. */
  relkind: string;
  /** Its primary key's columns other than archived_at, escaped, in key order. */
  key_columns: string;
  /** CHECK <table>_adopt_range: absent, added NOT VALID, or validated. */
  range_check: 'absent' | 'not_valid' | 'valid';
  /** UNIQUE index <table>_adopt_key: absent, invalid (a concurrent build that failed), or valid. */
  adopt_key: 'absent' | 'invalid' | 'valid';
}

/** Where each archive table stands in its adoption (catalog reads; a missing table is left out). */
export async function archiveTableShapes(db: Db): Promise<ArchiveTableShape[]> {
  const { rows } = await db.query<ArchiveTableShape>(
    `SELECT p.archive_table, c.relkind::text AS relkind,
            (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.n)
               FROM pg_constraint pk
              CROSS JOIN LATERAL unnest(pk.conkey) WITH ORDINALITY AS k(attnum, n)
               JOIN pg_attribute a ON a.attrelid = pk.conrelid AND a.attnum = k.attnum
              WHERE pk.conrelid = c.oid AND pk.contype = 'p' AND a.attname <> 'archived_at') AS key_columns,
            coalesce((SELECT CASE WHEN ck.convalidated THEN 'valid' ELSE 'not_valid' END FROM pg_constraint ck
                       WHERE ck.conrelid = c.oid AND ck.conname = p.archive_table || '_adopt_range'), 'absent') AS range_check,
            coalesce((SELECT CASE WHEN i.indisvalid THEN 'valid' ELSE 'invalid' END FROM pg_index i
                       WHERE i.indexrelid = to_regclass(p.archive_table || '_adopt_key')), 'absent') AS adopt_key
       FROM tasker_lifecycle_archive_pairs() p
       JOIN pg_class c ON c.oid = to_regclass(p.archive_table)`,
  );
  return rows;
}

/**
 * The bound the archive tables are adopted up to, chosen once and kept (tasker_archive_adoption):
 * the first of the month (UTC) after both now and the newest archived task
 * (idx_tasks_archive_archived_at), so every row already there, and every row archival adds until
 * the adoption is done, falls before it.
 */
export async function adoptionBound(db: Db): Promise<Date> {
  await db.query(
    `INSERT INTO tasker_archive_adoption (archive_table, upper_bound)
     SELECT p.archive_table,
            date_trunc('month', greatest(now(), (SELECT max(archived_at) FROM tasker_tasks_archive)), 'UTC')
              + interval '1 month'
       FROM tasker_lifecycle_archive_pairs() p
     ON CONFLICT (archive_table) DO NOTHING`,
  );
  const { rows } = await db.query<{ bound: Date }>(
    'SELECT max(upper_bound) AS bound FROM tasker_archive_adoption',
  );
  return rows[0]!.bound;
}

/** ALTER TABLE <t> ADD CONSTRAINT <t>_adopt_range CHECK (archived_at < bound) NOT VALID (ACCESS EXCLUSIVE, catalog only). */
export async function addAdoptionCheck(db: Db, table: string, bound: Date): Promise<void> {
  const { rows } = await db.query<{ sql: string }>(
    `SELECT format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (archived_at < %L) NOT VALID', $1::text, $1 || '_adopt_range', $2::timestamptz) AS sql`,
    [table, bound],
  );
  await db.query(rows[0]!.sql);
}

/** VALIDATE CONSTRAINT <t>_adopt_range: one scan of the table under SHARE UPDATE EXCLUSIVE (writes go on). */
export async function validateAdoptionCheck(db: Db, table: string): Promise<void> {
  await db.query(`ALTER TABLE ${ident(table)} VALIDATE CONSTRAINT ${ident(`${table}_adopt_range`)}`);
}

/** CREATE UNIQUE INDEX CONCURRENTLY <t>_adopt_key ON <t> (<key columns>, archived_at): outside a transaction. */
export async function buildAdoptionKey(db: Db, table: string, keyColumns: string): Promise<void> {
  await db.query(
    `CREATE UNIQUE INDEX CONCURRENTLY ${ident(`${table}_adopt_key`)} ON ${ident(table)} (${keyColumns}, archived_at)`,
  );
}

/** DROP INDEX CONCURRENTLY <t>_adopt_key (an INVALID one left by a build that failed). */
export async function dropAdoptionKey(db: Db, table: string): Promise<void> {
  await db.query(`DROP INDEX CONCURRENTLY IF EXISTS ${ident(`${table}_adopt_key`)}`);
}

/** Counts the whole archive into the rollup and starts it (tasker_lifecycle_archive_rollup_recount); tasks counted. */
export async function recountRollup(db: Db): Promise<number> {
  const { rows } = await db.query<{ n: string }>('SELECT tasker_lifecycle_archive_rollup_recount() AS n');
  return Number(rows[0]!.n);
}

export async function rollupStarted(db: Db): Promise<boolean> {
  const { rows } = await db.query<{ started: boolean }>(
    'SELECT EXISTS (SELECT 1 FROM tasker_archive_rollup_started) AS started',
  );
  return rows[0]!.started;
}

/** The catalog-only last step of adopting one table (tasker_lifecycle_adopt_archive_table). */
export async function adoptArchiveTable(db: Db, table: string, bound: Date): Promise<boolean> {
  const { rows } = await db.query<{ adopted: boolean }>(
    'SELECT tasker_lifecycle_adopt_archive_table($1, $2) AS adopted',
    [table, bound],
  );
  return rows[0]!.adopted;
}

/**
 * Makes the partition of `table` for the month (UTC) holding `month` unless one covers it
 * (tasker_lifecycle_add_archive_partition): its name, or null. The caller sets lock_timeout.
 */
export async function addArchivePartition(db: Db, table: string, month: Date): Promise<string | null> {
  const { rows } = await db.query<{ name: string | null }>(
    'SELECT tasker_lifecycle_add_archive_partition($1::regclass, $2) AS name',
    [table, month],
  );
  return rows[0]!.name;
}

/** Whether the functions and tables of 0210 are there (a database before this build has none). */
export async function canPartitionArchive(db: Db): Promise<boolean> {
  const { rows } = await db.query<{ present: boolean }>(
    `SELECT to_regprocedure('tasker_lifecycle_adopt_archive_table(text, timestamptz)') IS NOT NULL
            AND to_regclass('tasker_archive_adoption') IS NOT NULL AS present`,
  );
  return rows[0]!.present;
}

/** ALTER TABLE <parent> DETACH PARTITION <p> CONCURRENTLY (outside a transaction; SHARE UPDATE EXCLUSIVE). */
export async function detachPartitionConcurrently(db: Db, parent: string, partition: string): Promise<void> {
  await db.query(`ALTER TABLE ${ident(parent)} DETACH PARTITION ${ident(partition)} CONCURRENTLY`);
}

/** Finishes a DETACH ... CONCURRENTLY that was interrupted. */
export async function finalizeDetach(db: Db, parent: string, partition: string): Promise<void> {
  await db.query(`ALTER TABLE ${ident(parent)} DETACH PARTITION ${ident(partition)} FINALIZE`);
}

/**
 * In the caller's transaction: drops a detached partition and takes its months out of the rollup
 * (tasker_archive_months, tasker_archive_month_templates by their primary keys) for the rows of
 * that one table. from/to: the partition's range.
 */
export async function dropDetachedPartition(
  client: pg.PoolClient,
  p: { archiveTable: string; partition: string; from: Date | null; to: Date | null },
): Promise<void> {
  const { rows } = await client.query<{ exists: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = to_regclass($1)
                       AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)) AS exists`,
    [p.partition],
  );
  if (rows[0]!.exists) await client.query(`DROP TABLE ${ident(p.partition)}`);
  await client.query(`SELECT tasker_lifecycle_archive_rollup_forget($1, $2, $3)`, [
    p.archiveTable,
    p.from,
    p.to,
  ]);
}

function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** lock_timeout of the archival job's partition making: it gives up rather than wait. */
export const JOB_PARTITION_LOCK_TIMEOUT_MS = 200;

/**
 * The archival job's partition making, before its first batch (never inside one): for each month
 * given and each partitioned archive table, tasker_lifecycle_add_archive_partition in a transaction
 * of its own under lock_timeout = JOB_PARTITION_LOCK_TIMEOUT_MS. A lock not granted (SQLSTATE 55P03)
 * is passed over and reported: a batch whose month then has no partition refuses (TL005).
 */
export async function addPartitionsForMonths(
  pool: pg.Pool,
  months: readonly Date[],
): Promise<{ made: string[]; lockNotGranted: string[] }> {
  const made: string[] = [];
  const lockNotGranted: string[] = [];
  if (!(await canPartitionArchive(pool))) return { made, lockNotGranted };
  const tables = (await archiveTableShapes(pool))
    .filter((s) => s.relkind === 'p')
    .map((s) => s.archive_table);
  const covered = await archivePartitions(pool);
  const client = await pool.connect();
  try {
    for (const month of months) {
      for (const table of tables) {
        const end = new Date(Date.UTC(month.getUTCFullYear(), month.getUTCMonth() + 1, 1));
        if (
          covered.some(
            (p) => p.archive_table === table && (p.from_at ?? month) <= month && (p.to_at ?? end) >= end,
          )
        )
          continue; // nothing to do: no transaction, no lock
        await client.query('BEGIN');
        try {
          await client.query("SELECT set_config('lock_timeout', $1, true)", [
            `${JOB_PARTITION_LOCK_TIMEOUT_MS}ms`,
          ]);
          const name = await addArchivePartition(client, table, month);
          await client.query('COMMIT');
          if (name !== null) made.push(name);
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined); // report the work's error
          if ((err as { code?: string }).code !== '55P03') throw err;
          lockNotGranted.push(`${table} ${month.toISOString().slice(0, 7)}`);
        }
      }
    }
  } finally {
    client.release();
  }
  return { made, lockNotGranted };
}

/**
 * Folds the rollup's delta rows into one per month (tasker_lifecycle_archive_rollup_compact), in a
 * transaction of its own; rows folded (0: nothing to fold, or another compaction was at it).
 */
export async function compactRollup(db: Db): Promise<number> {
  const { rows } = await db.query<{ n: string }>('SELECT tasker_lifecycle_archive_rollup_compact() AS n');
  return Number(rows[0]!.n);
}

/** The months ('YYYY-MM') the rollup has rows for before `before` (idx_archive_months_month). */
export async function archivedMonthsBefore(db: Db, before: Date): Promise<string[]> {
  const { rows } = await db.query<{ month: string }>(
    `SELECT to_char(archive_month, 'YYYY-MM') AS month FROM tasker_archive_months
      WHERE archive_month < ($1::timestamptz AT TIME ZONE 'UTC')::date
      GROUP BY archive_month
     HAVING sum(tasks + steps + transitions + edges + step_transitions + dlq_entries) > 0
      ORDER BY archive_month`,
    [before],
  );
  return rows.map((r) => r.month);
}

export interface ArchiveMonthOverview {
  /** 'YYYY-MM' (UTC). */
  month: string;
  /** Rows of all six archive tables (the rollup). */
  rows: number;
  /** Bytes of the month's own partitions (tables and indexes); null: it sits in the adopted partition. */
  bytes: number | null;
  export_directory: string | null;
  exported_at: Date | null;
  verified_at: Date | null;
}

/**
 * The archive month by month, newest first, for the console: rows from the rollup, sizes from the
 * catalog (pg_total_relation_size of each monthly partition: file sizes, no scan), export state from
 * tasker_archive_exports. Never reads the archive itself.
 */
export async function archiveMonthsOverview(db: Db, months: number): Promise<ArchiveMonthOverview[]> {
  const { rows } = await db.query<ArchiveMonthOverview>(
    `WITH p AS (
       SELECT (x.from_at AT TIME ZONE 'UTC')::date AS month, sum(pg_total_relation_size(to_regclass(x.partition_name))) AS bytes
         FROM tasker_lifecycle_archive_partitions() x
        WHERE x.from_at IS NOT NULL AND NOT x.detach_pending
        GROUP BY 1
     ), m AS (
       SELECT archive_month, sum(tasks + steps + transitions + edges + step_transitions + dlq_entries) AS rows
         FROM tasker_archive_months GROUP BY archive_month
     )
     SELECT to_char(m.archive_month, 'YYYY-MM') AS month, m.rows::bigint::int AS rows, p.bytes::bigint AS bytes,
            e.directory AS export_directory, e.exported_at, e.verified_at
       FROM m
       LEFT JOIN p ON p.month = m.archive_month
       LEFT JOIN tasker_archive_exports e ON e.archive_month = m.archive_month
      WHERE m.rows > 0
      ORDER BY m.archive_month DESC
      LIMIT $1`,
    [months],
  );
  return rows.map((r) => ({ ...r, bytes: r.bytes === null ? null : Number(r.bytes) }));
}
