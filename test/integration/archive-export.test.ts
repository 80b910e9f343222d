/**
 * Export of a month of the archive to Parquet, and `archive drop --month` (issue 24, step 4;
 * src/db/archive-export.ts): one Parquet file per archive table with every row of the
 * month, a manifest of row counts and checksums verified by reading the files back, and a drop
 * refused for a month not exported and verified (or changed since), unless forced.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { parquetReadObjects } from 'hyparquet';
import archiveJob, {
  type ArchiveFinishedTasksOptions,
  runArchival,
} from '../../jobs/archive-finished-tasks.ts';
import { loadConfig } from '../../src/config/load.ts';
import {
  dropArchiveMonth,
  type ExportManifest,
  exportArchiveMonth,
  restoreFromExport,
} from '../../src/db/archive-export.ts';
import { dropExpiredArchiveMonths } from '../../src/db/archive-retention.ts';
import { addPartitionsForMonths } from '../../src/db/queries/archive-partitions.ts';
import { monthsFrom } from '../../src/domain/archive-months.ts';
import { ArchiveRefusedError } from '../../src/errors.ts';
import { migrate } from '../../src/install/sql.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { archivedTaskUuids, insertFinishedGraphs, TABLES } from '../helpers/archive-factories.ts';
import { fullMonthCounts, rollupMonthCounts } from '../helpers/archive-rollup.ts';
import { runCli } from '../helpers/cli-process.ts';
import { createTestDatabase, resetTables, type TestDatabase } from '../helpers/db.ts';
import { hoursBefore, insertTemplate } from '../helpers/factories.ts';

const OPTIONS: ArchiveFinishedTasksOptions = {
  ...archiveJob.optionsFromConfig(loadConfig({ env: {} }).config),
  dry_run: false,
  pause_between_batches_ms: 0,
};
const APRIL = new Date('2033-04-20T00:00:00Z');
const MAY = new Date('2033-05-20T00:00:00Z');
const TIMEOUTS = { lockTimeoutMs: 1000, statementTimeoutMs: 60_000 };

let db: TestDatabase;
let dir: string;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.drop();
});
beforeEach(async () => {
  await resetTables(db.pool);
  dir = mkdtempSync(join(tmpdir(), 'tasker-export-'));
});

async function archiveMonth(now: Date, count: number, name: string): Promise<string[]> {
  const template = await insertTemplate(db.pool, { name });
  const tasks = await insertFinishedGraphs(db.pool, {
    named_task_uuid: template.named_task_uuid,
    state: 'complete',
    finishedAt: hoursBefore(now, 24 * 40),
    count,
    steps: 3,
    resolvedDlqEvery: 2,
  });
  const ctx = { pool: db.pool, now, logger: silentLogger(), signal: new AbortController().signal };
  expect((await runArchival(ctx, OPTIONS)).tasks_archived).toBe(count);
  return tasks;
}

const exportMonth = (month: string, directory: string) =>
  exportArchiveMonth(db.pool, { month, directory, now: new Date('2034-03-20T00:00:00Z') });

describe('archive export and drop', () => {
  it('writes each table of the month as Parquet, with a verified manifest, every row as the database holds it', async () => {
    await addPartitionsForMonths(db.pool, monthsFrom(APRIL, 1));
    const april = await archiveMonth(APRIL, 5, 'april');
    await archiveMonth(MAY, 2, 'may');
    const manifest = await exportArchiveMonth(db.pool, { month: '2033-04', directory: dir, now: MAY });

    expect(JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'))).toEqual(manifest);
    const expected = (await fullMonthCounts(db.pool))['2033-04']!;
    expect(Object.fromEntries(manifest.tables.map((t) => [t.table, t.rows]))).toEqual({
      tasker_tasks_archive: expected.tasks,
      tasker_workflow_steps_archive: expected.steps,
      tasker_workflow_step_edges_archive: expected.edges,
      tasker_task_transitions_archive: expected.transitions,
      tasker_workflow_step_transitions_archive: expected.step_transitions,
      tasker_tasks_dlq_archive: expected.dlq_entries,
    });
    // any Parquet reader gets every column of every row, as PostgreSQL's text of the value
    for (const table of TABLES) {
      const bytes = readFileSync(join(dir, `${table}_archive.parquet`));
      const rows = (await parquetReadObjects({
        file: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
      })) as Record<string, string | null>[];
      // the database's text of every column of every row of the month
      const { rows: cols } = await db.pool.query<{ name: string }>(
        `SELECT attname AS name FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`,
        [`${table}_archive`],
      );
      const { rows: inDb } = await db.pool.query<{ row: Record<string, string | null> }>(
        `SELECT json_build_object(${cols.map((c) => `'${c.name}', x."${c.name}"::text`).join(', ')}) AS row
           FROM ${table}_archive x WHERE archived_at >= '2033-04-01' AND archived_at < '2033-05-01'`,
      );
      expect(inDb.length).toBeGreaterThan(0);
      const key = manifest.tables.find((t) => t.table === `${table}_archive`)!.key;
      const sortByKey = (a: Record<string, string | null>, b: Record<string, string | null>) =>
        (a[key] ?? '').localeCompare(b[key] ?? '');
      expect([...rows].sort(sortByKey)).toEqual(inDb.map((r) => r.row).sort(sortByKey));
    }
    expect(april).toHaveLength(5);
  });

  it('drop --month refuses a month not exported and verified, or changed since its export; drops it after export, with the rollup', async () => {
    await addPartitionsForMonths(db.pool, monthsFrom(APRIL, 1));
    await archiveMonth(APRIL, 3, 'april2');
    const may = await archiveMonth(MAY, 2, 'may2');
    await expect(dropArchiveMonth(db.pool, { month: '2033-04', force: false, ...TIMEOUTS })).rejects.toThrow(
      new ArchiveRefusedError(
        '2033-04 was not exported and verified: run `tasker-lifecycle archive export --month 2033-04 --to DIR` first, or drop it anyway with --force',
        'TL006',
      ),
    );
    // exported, then changed: a task restored out of April after the export
    const exported = (await exportArchiveMonth(db.pool, {
      month: '2033-04',
      directory: dir,
      now: MAY,
    })) as ExportManifest;
    expect(exported.tables[0]!.rows).toBe(3);
    const [restored] = await archivedTaskUuids(db.pool);
    await db.pool.query('SELECT * FROM restore_archived_task($1)', [restored]);
    await expect(dropArchiveMonth(db.pool, { month: '2033-04', force: false, ...TIMEOUTS })).rejects.toThrow(
      /tasker_tasks_archive holds 2 rows of 2033-04 but its export in .* has 3: export it again/,
    );
    await exportArchiveMonth(db.pool, { month: '2033-04', directory: dir, now: MAY });
    const dropped = await dropArchiveMonth(db.pool, { month: '2033-04', force: false, ...TIMEOUTS });
    expect(dropped.sort()).toEqual(TABLES.map((t) => `${t}_archive_p203304`).sort());
    expect((await archivedTaskUuids(db.pool)).sort()).toEqual([...may].sort());
    expect(await rollupMonthCounts(db.pool)).toEqual(await fullMonthCounts(db.pool));
    // --force drops a month never exported
    expect(await dropArchiveMonth(db.pool, { month: '2033-05', force: true, ...TIMEOUTS })).toHaveLength(6);
    await expect(dropArchiveMonth(db.pool, { month: '2033-05', force: true, ...TIMEOUTS })).rejects.toThrow(
      /has no monthly partition of its own/,
    );
    rmSync(dir, { recursive: true, force: true });
  });

  it('export, drop, then restore --from puts a task back exactly as it was, engine-added columns included', async () => {
    // a column the engine added, with values, followed by the archive (migrate)
    await db.pool.query('ALTER TABLE tasker_tasks ADD COLUMN IF NOT EXISTS engine_note text');
    await db.pool.query(
      'ALTER TABLE tasker_workflow_steps ADD COLUMN IF NOT EXISTS engine_weight numeric(12, 4)',
    );
    await migrate(db.pool);
    await addPartitionsForMonths(db.pool, monthsFrom(APRIL, 1));
    const template = await insertTemplate(db.pool, { name: 'exact' });
    const tasks = await insertFinishedGraphs(db.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: hoursBefore(APRIL, 24 * 40),
      count: 3,
      steps: 4,
      resolvedDlqEvery: 1,
    });
    await db.pool.query("UPDATE tasker_tasks SET engine_note = 'note ' || task_uuid || E' \\ \u00e9\n'");
    await db.pool.query('UPDATE tasker_workflow_steps SET engine_weight = 12345678.1234');
    const task = tasks[1]!;
    const asText = async () => {
      const out: Record<string, string[]> = {};
      for (const table of TABLES) {
        const { rows } = await db.pool.query<{ t: string }>(
          `SELECT x::text AS t FROM ${table} x WHERE ${ownedBy(table)} ORDER BY x::text`,
          [task],
        );
        out[table] = rows.map((r) => r.t);
      }
      return out;
    };
    const before = await asText();
    expect(before.tasker_tasks![0]).toContain('note ');

    const ctx = { pool: db.pool, now: APRIL, logger: silentLogger(), signal: new AbortController().signal };
    expect((await runArchival(ctx, OPTIONS)).tasks_archived).toBe(3);
    await exportArchiveMonth(db.pool, { month: '2033-04', directory: dir, now: MAY });
    await dropArchiveMonth(db.pool, { month: '2033-04', force: false, ...TIMEOUTS });
    expect(await archivedTaskUuids(db.pool)).toEqual([]);

    const restored = await restoreFromExport(db.pool, { directory: dir, taskUuid: task });
    expect(restored).toEqual({
      tasker_tasks: 1,
      tasker_task_transitions: 4,
      tasker_tasks_dlq: 1,
      tasker_workflow_steps: 4,
      tasker_workflow_step_edges: 3,
      tasker_workflow_step_transitions: 12,
    });
    expect(await asText()).toEqual(before);
    // a second restore is refused: the task is live
    await expect(restoreFromExport(db.pool, { directory: dir, taskUuid: task })).rejects.toThrow(
      /is in the live tables; nothing was restored/,
    );
    rmSync(dir, { recursive: true, force: true });
  });

  it('the CLI: archive export, archive drop (refused, then done), restore --from; a bad month is exit 2 naming it', async () => {
    await addPartitionsForMonths(db.pool, monthsFrom(APRIL, 1));
    const [task] = await archiveMonth(APRIL, 2, 'cli');
    const env = { DATABASE_URL: db.url };
    const bad = await runCli(['archive', 'export', '--month', '2033-13', '--to', dir], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/2033-13.*expected a month as YYYY-MM/);
    const refused = await runCli(['archive', 'drop', '--month', '2033-04'], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('2033-04 was not exported and verified');
    const exported = await runCli(['archive', 'export', '--month', '2033-04', '--to', dir, '--json'], env);
    expect(exported.code).toBe(0);
    expect((JSON.parse(exported.stdout) as ExportManifest).tables[0]).toMatchObject({
      table: 'tasker_tasks_archive',
      rows: 2,
    });
    expect((await runCli(['archive', 'drop', '--month', '2033-04'], env)).code).toBe(0);
    const restored = await runCli(['restore', task!, '--from', dir, '--json'], env);
    expect(restored.code).toBe(0);
    expect(JSON.parse(restored.stdout)).toMatchObject({ task_uuid: task, tasker_tasks: 1 });
    rmSync(dir, { recursive: true, force: true });
  });

  it('retention with an export directory exports each month before dropping it, and keeps a month it cannot export', async () => {
    const JAN = new Date('2034-01-20T00:00:00Z');
    const FEB = new Date('2034-02-20T00:00:00Z');
    const MAR = new Date('2034-03-20T00:00:00Z');
    await addPartitionsForMonths(db.pool, monthsFrom(JAN, 2));
    const [janTask] = await archiveMonth(JAN, 2, 'jan');
    await archiveMonth(FEB, 1, 'feb');
    // first with a directory that cannot be made (a file is in its way): nothing exported, nothing dropped
    const blocked = join(dir, 'blocked');
    writeFileSync(blocked, 'not a directory');
    const kept = await dropExpiredArchiveMonths(db.pool, {
      keepMonths: 1,
      exportDir: blocked,
      exportMonth,
      now: MAR,
      ...TIMEOUTS,
    });
    expect(kept.exportFailures).toEqual([expect.stringMatching(/^2034-01: /)]);
    expect(kept.dropped.filter((p) => p.endsWith('_p203401'))).toEqual([]);
    expect((await fullMonthCounts(db.pool))['2034-01']!.tasks).toBe(2);

    const result = await dropExpiredArchiveMonths(db.pool, {
      keepMonths: 1,
      exportDir: join(dir, 'exports'),
      exportMonth,
      now: MAR,
      ...TIMEOUTS,
    });
    expect(result.exportFailures).toEqual([]);
    expect(result.dropped).toEqual(expect.arrayContaining(TABLES.map((t) => `${t}_archive_p203401`)));
    const manifest = JSON.parse(
      readFileSync(join(dir, 'exports', '2034-01', 'manifest.json'), 'utf8'),
    ) as ExportManifest;
    expect(manifest.tables.find((t) => t.table === 'tasker_tasks_archive')!.rows).toBe(2);
    expect(
      await restoreFromExport(db.pool, { directory: join(dir, 'exports', '2034-01'), taskUuid: janTask! }),
    ).toMatchObject({
      tasker_tasks: 1,
    });
    rmSync(dir, { recursive: true, force: true });
  });
});

/** The rows of one task's graph in a live table ($1: the task). */
function ownedBy(table: string): string {
  const steps = '(SELECT workflow_step_uuid FROM tasker_workflow_steps WHERE task_uuid = $1)';
  if (table === 'tasker_workflow_step_edges')
    return `x.from_step_uuid IN ${steps} OR x.to_step_uuid IN ${steps}`;
  if (table === 'tasker_workflow_step_transitions') return `x.workflow_step_uuid IN ${steps}`;
  return 'x.task_uuid = $1';
}
