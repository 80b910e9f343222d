import type { Db } from '../pool.ts';

/**
 * Queries for exporting a month of the archive (src/db/archive-export.ts): each archive
 * table's columns with their types (the parent's catalog), its rows of one month a page at a time
 * (keyset on the table's key, in that month's partition), and the record of exports
 * (tasker_archive_exports, migrations/0210).
 */

export interface ExportColumn {
  name: string;
  /** format_type: what a restore casts the text back to. */
  type: string;
}

export async function archiveColumns(db: Db, table: string): Promise<ExportColumn[]> {
  const { rows } = await db.query<ExportColumn>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_attribute a
      WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [table],
  );
  return rows;
}

/** The key column of an archive table other than archived_at (its primary key's first column). */
export async function archiveKeyColumn(db: Db, table: string): Promise<string> {
  const { rows } = await db.query<{ name: string }>(
    `SELECT a.attname AS name FROM pg_constraint c
       JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
      WHERE c.conrelid = to_regclass($1) AND c.contype = 'p'`,
    [table],
  );
  if (!rows[0]) throw new Error(`archive table ${table} has no primary key`);
  return rows[0].name;
}

/**
 * One page of a month's rows of `table`, every column as its PostgreSQL text (NULL as null), in key
 * order after `after` (null: from the start). Reads the month's partition through its primary key
 * (key, archived_at).
 */
export async function archiveMonthPage(
  db: Db,
  p: {
    table: string;
    key: string;
    columns: readonly ExportColumn[];
    from: Date;
    to: Date;
    after: string | null;
    limit: number;
  },
): Promise<{ key: string; values: (string | null)[] }[]> {
  const q = (name: string) => `"${name.replaceAll('"', '""')}"`;
  const { rows } = await db.query<{ key: string; values: (string | null)[] }>(
    `SELECT x.${q(p.key)}::text AS key, ARRAY[${p.columns.map((c) => `x.${q(c.name)}::text`).join(', ')}] AS values
       FROM ${q(p.table)} x
      WHERE x.archived_at >= $1 AND x.archived_at < $2 AND ($3::text IS NULL OR x.${q(p.key)} > $3::uuid)
      ORDER BY x.${q(p.key)}
      LIMIT $4`,
    [p.from, p.to, p.after, p.limit],
  );
  return rows;
}

/** Rows of `table` archived in [from, to) (that month's partition). */
export async function archiveMonthRows(db: Db, table: string, from: Date, to: Date): Promise<number> {
  const { rows } = await db.query<{ n: string }>(
    `SELECT count(*) AS n FROM "${table.replaceAll('"', '""')}" WHERE archived_at >= $1 AND archived_at < $2`,
    [from, to],
  );
  return Number(rows[0]!.n);
}

export interface ArchiveExportRecord {
  archive_month: string;
  directory: string;
  manifest: unknown;
  exported_at: Date;
  verified_at: Date | null;
}

export async function recordArchiveExport(
  db: Db,
  r: { month: Date; directory: string; manifest: unknown; exportedAt: Date; verifiedAt: Date },
): Promise<void> {
  await db.query(
    `INSERT INTO tasker_archive_exports (archive_month, directory, manifest, exported_at, verified_at)
     VALUES ($1::timestamptz AT TIME ZONE 'UTC', $2, $3, $4, $5)
     ON CONFLICT (archive_month) DO UPDATE
        SET directory = excluded.directory, manifest = excluded.manifest,
            exported_at = excluded.exported_at, verified_at = excluded.verified_at`,
    [r.month, r.directory, JSON.stringify(r.manifest), r.exportedAt, r.verifiedAt],
  );
}

/** The month's export, if any (tasker_archive_exports_pkey). */
export async function archiveExportOf(db: Db, month: Date): Promise<ArchiveExportRecord | undefined> {
  const { rows } = await db.query<ArchiveExportRecord>(
    `SELECT to_char(archive_month, 'YYYY-MM') AS archive_month, directory, manifest, exported_at, verified_at
       FROM tasker_archive_exports WHERE archive_month = ($1::timestamptz AT TIME ZONE 'UTC')::date`,
    [month],
  );
  return rows[0];
}

/** The columns of a live table with their types (what a restore from an export casts to). */
export async function liveColumns(db: Db, table: string): Promise<(ExportColumn & { generated: boolean })[]> {
  const { rows } = await db.query<ExportColumn & { generated: boolean }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attgenerated <> '' AS generated
       FROM pg_attribute a
      WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [table],
  );
  return rows;
}

/**
 * Inserts rows given as PostgreSQL text into a live table, each value cast to its column's type
 * (the type's input function: the value comes back exactly as it was printed); `rows` is a JSON
 * array of arrays of strings (or null) in `columns`' order. Returns the rows inserted.
 */
export async function insertTextRows(
  db: Db,
  table: string,
  columns: readonly ExportColumn[],
  rows: readonly (readonly (string | null)[])[],
): Promise<number> {
  if (rows.length === 0) return 0;
  const q = (name: string) => `"${name.replaceAll('"', '""')}"`;
  const result = await db.query(
    `INSERT INTO ${q(table)} (${columns.map((c) => q(c.name)).join(', ')}) OVERRIDING SYSTEM VALUE
     SELECT ${columns.map((c, i) => `(e ->> ${i})::${c.type}`).join(', ')}
       FROM jsonb_array_elements($1::jsonb) e`,
    [JSON.stringify(rows)],
  );
  return result.rowCount ?? 0;
}

/** Whether the task is live or archived now (tasker_tasks_pkey, tasker_tasks_archive_pkey). */
export async function taskWhereabouts(db: Db, taskUuid: string): Promise<'live' | 'archived' | null> {
  const { rows } = await db.query<{ live: boolean; archived: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM tasker_tasks WHERE task_uuid = $1) AS live,
            EXISTS (SELECT 1 FROM tasker_tasks_archive WHERE task_uuid = $1) AS archived`,
    [taskUuid],
  );
  return rows[0]!.live ? 'live' : rows[0]!.archived ? 'archived' : null;
}
