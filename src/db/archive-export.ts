import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { fileWriter, ParquetWriter } from 'hyparquet-writer';
import type pg from 'pg';
import { ArchiveRefusedError } from '../errors.ts';
import { detachAndDrop, partitionsToDrop } from './archive-retention.ts';
import { ARCHIVE_TABLES } from './queries/archive.ts';
import {
  archiveColumns,
  archiveExportOf,
  archiveKeyColumn,
  archiveMonthPage,
  archiveMonthRows,
  type ExportColumn,
  insertTextRows,
  liveColumns,
  recordArchiveExport,
  taskWhereabouts,
} from './queries/archive-export.ts';
import { archivePartitions } from './queries/archive-partitions.ts';

/**
 * Export of one month of the archive to Parquet (`tasker-lifecycle archive export --month YYYY-MM
 * --to DIR`; docs/archival.md): each of the six archive tables' rows of that month as
 * DIR/<table>.parquet, written a page at a time (PAGE_ROWS rows per row group, so memory stays
 * bounded on any month), every column as its PostgreSQL text (a UTF-8 string; json and jsonb
 * columns marked JSON), so a restore casts each back to the column's type exactly; then
 * DIR/manifest.json (per table: file, rows, SHA-256, columns and types). The files are read back
 * (hyparquet) and checked against the manifest (row counts, checksums, the first and last key)
 * and against the database's count of the month, before the export is recorded as verified in
 * tasker_archive_exports. Writer: hyparquet-writer (pure JavaScript, no native or WebAssembly
 * build, maintained with its reader hyparquet, which verifies).
 */

/** Rows per page read from the database and per Parquet row group. */
export const PAGE_ROWS = 10_000;

export interface ExportManifest {
  format: 'tasker-lifecycle archive export 1';
  month: string;
  from: string;
  to: string;
  exported_at: string;
  tables: {
    table: string;
    file: string;
    rows: number;
    sha256: string;
    key: string;
    columns: ExportColumn[];
  }[];
}

/** The UTC month 'YYYY-MM' as [from, to); a bad value is an error naming it. */
export function monthRange(month: string): { from: Date; to: Date } {
  const m = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(month);
  if (!m) throw new RangeError(`month ${JSON.stringify(month)}: expected YYYY-MM, such as 2026-04`);
  const from = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, 1));
  return { from, to: new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + 1, 1)) };
}

export async function exportArchiveMonth(
  pool: pg.Pool,
  o: { month: string; directory: string; now: Date },
): Promise<ExportManifest> {
  const { from, to } = monthRange(o.month);
  const dir = resolve(o.directory);
  mkdirSync(dir, { recursive: true });
  const manifest: ExportManifest = {
    format: 'tasker-lifecycle archive export 1',
    month: o.month,
    from: from.toISOString(),
    to: to.toISOString(),
    exported_at: o.now.toISOString(),
    tables: [],
  };
  for (const table of ARCHIVE_TABLES) {
    const columns = await archiveColumns(pool, table);
    const key = await archiveKeyColumn(pool, table);
    const file = `${table}.parquet`;
    const writer = new ParquetWriter({
      writer: fileWriter(join(dir, file)),
      schema: [
        { name: 'root', num_children: columns.length },
        ...columns.map((c) => ({
          name: c.name,
          type: 'BYTE_ARRAY' as const,
          converted_type: /^jsonb?$/.test(c.type) ? ('JSON' as const) : ('UTF8' as const),
          repetition_type: 'OPTIONAL' as const,
        })),
      ],
    });
    let rows = 0;
    let after: string | null = null;
    for (;;) {
      const page = await archiveMonthPage(pool, { table, key, columns, from, to, after, limit: PAGE_ROWS });
      if (page.length === 0) break;
      await writer.write({
        columnData: columns.map((c, i) => ({ name: c.name, data: page.map((r) => r.values[i] ?? null) })),
        rowGroupSize: PAGE_ROWS,
      });
      rows += page.length;
      after = page.at(-1)!.key;
      if (page.length < PAGE_ROWS) break;
    }
    writer.finish();
    manifest.tables.push({ table, file, rows, sha256: sha256(join(dir, file)), key, columns });
  }
  writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  await verifyExport(pool, dir, manifest);
  await recordArchiveExport(pool, {
    month: from,
    directory: dir,
    manifest,
    exportedAt: o.now,
    verifiedAt: new Date(),
  });
  return manifest;
}

/**
 * Reads every file back and checks it against the manifest (checksum, row count, columns) and the
 * manifest against the database's count of the month now; throws naming the first difference.
 */
export async function verifyExport(pool: pg.Pool, dir: string, manifest: ExportManifest): Promise<void> {
  const { from, to } = monthRange(manifest.month);
  for (const t of manifest.tables) {
    const path = join(dir, t.file);
    const bytes = readFileSync(path);
    if (sha256(path) !== t.sha256) throw new Error(`${path}: its SHA-256 differs from the manifest's`);
    const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    const meta = parquetMetadata(buffer);
    if (Number(meta.num_rows) !== t.rows)
      throw new Error(`${path}: ${meta.num_rows} rows, but the manifest says ${t.rows}`);
    const names = meta.schema.slice(1).map((s) => s.name);
    if (names.join(',') !== t.columns.map((c) => c.name).join(','))
      throw new Error(`${path}: its columns are not the manifest's`);
    if (t.rows > 0) {
      const keys = (await parquetReadObjects({ file: buffer, columns: [t.key] })) as Record<string, string>[];
      if (keys.length !== t.rows)
        throw new Error(`${path}: read back ${keys.length} rows, expected ${t.rows}`);
    }
    const inDatabase = await archiveMonthRows(pool, t.table, from, to);
    if (inDatabase !== t.rows)
      throw new Error(
        `${t.table} holds ${inDatabase} rows of ${manifest.month}, but the export has ${t.rows}`,
      );
  }
}

/**
 * Whether `month` may be dropped: a verified export whose row counts are the month's now. Returns
 * the reason it may not, or null.
 */
export async function dropRefusal(pool: pg.Pool, month: string): Promise<string | null> {
  const { from, to } = monthRange(month);
  const exported = await archiveExportOf(pool, from);
  if (!exported || exported.verified_at === null)
    return `${month} was not exported and verified: run \`tasker-lifecycle archive export --month ${month} --to DIR\` first, or drop it anyway with --force`;
  for (const t of (exported.manifest as ExportManifest).tables) {
    const now = await archiveMonthRows(pool, t.table, from, to);
    if (now !== t.rows)
      return `${t.table} holds ${now} rows of ${month} but its export in ${exported.directory} has ${t.rows}: export it again, or drop it anyway with --force`;
  }
  return null;
}

/**
 * `archive drop --month`: refused (ArchiveRefusedError, TL006) unless the month was exported and verified and
 * still holds what was exported, or `force`; then its own partitions (one per table) are detached
 * concurrently and dropped, tasks first, with the rollup (src/db/archive-retention.ts).
 * Returns the partitions dropped.
 */
export async function dropArchiveMonth(
  pool: pg.Pool,
  o: { month: string; force: boolean; lockTimeoutMs: number; statementTimeoutMs: number },
): Promise<string[]> {
  const { from, to } = monthRange(o.month);
  const own = (await archivePartitions(pool)).filter(
    (p) => p.from_at?.getTime() === from.getTime() && p.to_at?.getTime() === to.getTime(),
  );
  if (own.length === 0)
    throw refused(
      `${o.month} has no monthly partition of its own (it is part of the adopted partition, or was dropped already)`,
    );
  if (!o.force) {
    const refusal = await dropRefusal(pool, o.month);
    if (refusal !== null) throw refused(refusal);
  }
  return detachAndDrop(pool, partitionsToDrop(own, to), o);
}

/** Export, drop and restore --from refusals: SQLSTATE-like code TL006, exit 2 / 409 like other archive refusals. */
function refused(message: string): ArchiveRefusedError {
  return new ArchiveRefusedError(message, 'TL006');
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Rows put back per live table by a restore from an export. */
export type RestoredFromExport = Record<string, number>;

/**
 * `restore <task_uuid> --from DIR`: puts a task graph back into the live tables from an exported
 * month (after the month was dropped), exactly as it was archived: every column the export has,
 * cast from PostgreSQL's text back to the live column's type, in one transaction, parents first.
 * Refused (ArchiveRefusedError, TL006) while the task is live or still archived (restore it from the archive
 * then), when the export lacks it, or when the export has a value in a column the live table no
 * longer has. The files are checked against the manifest's checksums first. Reads each file
 * whole: memory grows with the month's size.
 */
export async function restoreFromExport(
  pool: pg.Pool,
  o: { directory: string; taskUuid: string },
): Promise<RestoredFromExport> {
  const dir = resolve(o.directory);
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as ExportManifest;
  const where = await taskWhereabouts(pool, o.taskUuid);
  if (where !== null)
    throw refused(
      `task ${o.taskUuid} is ${where === 'live' ? 'in the live tables' : 'still archived: restore it without --from'}; nothing was restored`,
    );
  const read = async (table: string) => {
    const t = manifest.tables.find((x) => x.table === `${table}_archive`);
    if (!t) throw refused(`${dir}/manifest.json has no ${table}_archive`);
    const path = join(dir, t.file);
    if (sha256(path) !== t.sha256) throw refused(`${path}: its SHA-256 differs from the manifest's`);
    const bytes = readFileSync(path);
    const rows = (await parquetReadObjects({
      file: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
    })) as Record<string, string | null>[];
    return { t, rows };
  };
  const tasks = await read('tasker_tasks');
  const steps = await read('tasker_workflow_steps');
  const taskRows = tasks.rows.filter((r) => r.task_uuid === o.taskUuid);
  if (taskRows.length === 0)
    throw refused(
      `task ${o.taskUuid} is not in the export of ${manifest.month} in ${dir}; nothing was restored`,
    );
  const stepRows = steps.rows.filter((r) => r.task_uuid === o.taskUuid);
  const stepIds = new Set(stepRows.map((r) => r.workflow_step_uuid));
  const pick: [string, (r: Record<string, string | null>) => boolean][] = [
    ['tasker_task_transitions', (r) => r.task_uuid === o.taskUuid],
    ['tasker_tasks_dlq', (r) => r.task_uuid === o.taskUuid],
    [
      'tasker_workflow_step_edges',
      (r) => stepIds.has(r.from_step_uuid ?? null) || stepIds.has(r.to_step_uuid ?? null),
    ],
    ['tasker_workflow_step_transitions', (r) => stepIds.has(r.workflow_step_uuid ?? null)],
  ];
  const graph: [string, ExportManifest['tables'][number], Record<string, string | null>[]][] = [
    ['tasker_tasks', tasks.t, taskRows],
  ];
  for (const [table, keep] of pick.slice(0, 2)) {
    const f = await read(table);
    graph.push([table, f.t, f.rows.filter(keep)]);
  }
  graph.push(['tasker_workflow_steps', steps.t, stepRows]);
  for (const [table, keep] of pick.slice(2)) {
    const f = await read(table);
    graph.push([table, f.t, f.rows.filter(keep)]);
  }
  const client = await pool.connect();
  const restored: RestoredFromExport = {};
  try {
    await client.query('BEGIN');
    for (const [table, t, rows] of graph) {
      const live = await liveColumns(client, table);
      const liveNames = new Set(live.map((c) => c.name));
      const lost = t.columns.filter(
        (c) => c.name !== 'archived_at' && !liveNames.has(c.name) && rows.some((r) => r[c.name] !== null),
      );
      if (lost.length > 0)
        throw refused(
          `cannot restore: ${lost.map((c) => `${t.table}.${c.name}`).join(', ')} hold values that ${table} has no column for any more; nothing was restored`,
        );
      const columns = live.filter((c) => !c.generated && t.columns.some((x) => x.name === c.name));
      restored[table] = await insertTextRows(
        client,
        table,
        columns,
        rows.map((r) => columns.map((c) => r[c.name] ?? null)),
      );
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined); // report the restore's error
    throw err;
  } finally {
    client.release();
  }
  return restored;
}
