/**
 * npm run bench -- archive-retention: what the monthly partitions (issue 24, docs/archival.md) buy.
 *
 *   (a) retention: dropping one month of the archive (src/db/archive-retention.ts: each of
 *       the six partitions detached CONCURRENTLY, then dropped with its months taken out of the
 *       rollup) against DELETE of a month of the same size (another month: the same number of
 *       graphs and rows), one statement per table in one transaction; the target is "well under a
 *       second" for the drop, whatever the month's size;
 *   (b) the console's /archive page reads (v_archive_statistics for 24 months and the archive
 *       totals, both from the monthly rollup) against the full aggregate the view ran before the
 *       rollup (every archived task joined to its final transition); target under 50 ms.
 * Medians of BENCH_REPEAT runs (default 5; 3 for the full aggregate and one DELETE, which are slow).
 * The load average (1 minute) is printed beside each figure: the machine may be shared.
 *
 * Data: BENCH_GRAPHS archived graphs (default 1,000,000), 29 rows each (1 task, 5 steps, 4 edges,
 * 4 task transitions, 15 step transitions), spread evenly over BENCH_MONTHS months (default 10),
 * bulk-loaded set-based (graphs inserted in the live tables, then moved by one INSERT … SELECT per
 * table, archived_at chosen per task), not through archival; then the rollup is counted once
 * (tasker_lifecycle_archive_rollup_recount) and the tables analyzed. Use BENCH_GRAPHS=100000 while
 * developing (1M takes long to load on a small machine).
 */
import { loadavg } from 'node:os';
import type pg from 'pg';
import { dropExpiredArchiveMonths } from '../src/db/archive-retention.ts';
import { archiveStatistics, archiveTotals } from '../src/db/queries/archive.ts';
import { addArchivePartition } from '../src/db/queries/archive-partitions.ts';
import { insertFinishedGraphs } from '../test/helpers/archive-factories.ts';
import { insertTemplate } from '../test/helpers/factories.ts';
import type { BenchServer } from './db.ts';
import { timed } from './db.ts';

const GRAPHS = positive('BENCH_GRAPHS', 1_000_000);
const MONTHS = positive('BENCH_MONTHS', 10);
const REPEAT = positive('BENCH_REPEAT', 5);
/** Graphs inserted and moved per chunk while loading. */
const CHUNK = 100_000;
/** The first archived month (UTC); months after it follow. Far from now, so partitions are made here. */
const FIRST_MONTH = new Date('2035-01-01T00:00:00Z');

const ARCHIVES = [
  'tasker_tasks_archive',
  'tasker_workflow_steps_archive',
  'tasker_workflow_step_edges_archive',
  'tasker_task_transitions_archive',
  'tasker_workflow_step_transitions_archive',
  'tasker_tasks_dlq_archive',
];

export default async function archiveRetention(server: BenchServer): Promise<void> {
  console.log(`server: ${server.description}; load average ${load()}`);
  console.log(`data: ${GRAPHS.toLocaleString('en')} archived graphs (29 rows each) over ${MONTHS} months`);
  const db = await server.createDatabase();
  try {
    const loaded = await timed(() => loadArchive(db.pool));
    console.log(`loaded in ${(loaded.ms / 1000).toFixed(0)} s; load average ${load()}`);

    // (b) first, on the whole archive
    const page = async () => {
      await archiveStatistics(db.pool, 24);
      await archiveTotals(db.pool);
    };
    await page(); // warm
    const pageMs = median(await repeat(REPEAT, page));
    const fullMs = median(await repeat(3, () => fullAggregate(db.pool)));
    console.log(
      `(b) /archive page reads (rollup): median ${pageMs.toFixed(1)} ms; the full aggregate it replaced: median ${fullMs.toFixed(0)} ms (${(fullMs / pageMs).toFixed(0)}x); target < 50 ms: ${pageMs < 50 ? 'met' : 'NOT met'}; load average ${load()}`,
    );

    // (a) DELETE of the second month's rows, then a drop of the first (same size)
    const month2 = monthStart(1);
    const month3 = monthStart(2);
    const month1Rows = await rowsIn(db.pool, monthStart(0), month2);
    const rows = await rowsIn(db.pool, month2, month3);
    const deleted = await timed(() => deleteMonth(db.pool, month2, month3));
    console.log(
      `(a) DELETE of one month (${rows.toLocaleString('en')} rows in six tables, one transaction): ${(deleted.ms / 1000).toFixed(1)} s; load average ${load()}`,
    );
    // the partitions before the first month (empty: the adopted one, those migrate made) go first,
    // untimed, so that the timed drop is the first month's six partitions alone
    await dropExpiredArchiveMonths(db.pool, {
      keepMonths: MONTHS - 1,
      now: monthStart(MONTHS - 1),
      lockTimeoutMs: 1000,
      statementTimeoutMs: 600_000,
    });
    const dropped = await timed(() =>
      dropExpiredArchiveMonths(db.pool, {
        keepMonths: MONTHS - 2,
        now: monthStart(MONTHS - 1),
        lockTimeoutMs: 1000,
        statementTimeoutMs: 600_000,
      }),
    );
    console.log(
      `    drop of one month (${month1Rows.toLocaleString('en')} rows; ${dropped.result.dropped.length} partitions detached concurrently and dropped, rollup kept): ${dropped.ms.toFixed(0)} ms (DELETE / drop: ${(deleted.ms / dropped.ms).toFixed(1)}x); target well under 1 s: ${dropped.ms < 1000 ? 'met' : 'NOT met'}; load average ${load()}`,
    );
  } finally {
    await db.drop();
  }
}

function monthStart(i: number): Date {
  return new Date(Date.UTC(FIRST_MONTH.getUTCFullYear(), FIRST_MONTH.getUTCMonth() + i, 1));
}

async function loadArchive(pool: pg.Pool): Promise<void> {
  for (let i = 0; i < MONTHS; i++)
    for (const table of ARCHIVES) await addArchivePartition(pool, table, monthStart(i));
  const template = await insertTemplate(pool, { name: 'bench' });
  // one session: the temporary table of archived_at per task lives in it
  const client = await pool.connect();
  try {
    for (let done = 0; done < GRAPHS; done += CHUNK) {
      await insertFinishedGraphs(pool, {
        named_task_uuid: template.named_task_uuid,
        state: 'complete',
        finishedAt: new Date('2034-06-01T00:00:00Z'),
        count: Math.min(CHUNK, GRAPHS - done),
        spacingSeconds: 1,
      });
      // archived_at per task: month (task number mod MONTHS), a minute within it
      await client.query(
        'CREATE TEMPORARY TABLE IF NOT EXISTS bench_at (task_uuid uuid PRIMARY KEY, archived_at timestamptz); TRUNCATE bench_at',
      );
      await client.query(
        `INSERT INTO bench_at
       SELECT t.task_uuid,
              $1::timestamptz + make_interval(months => ((row_number() OVER (ORDER BY t.task_uuid)) % $2)::int)
                + make_interval(mins => ((row_number() OVER (ORDER BY t.task_uuid)) % 40000)::int)
         FROM tasker_tasks t`,
        [FIRST_MONTH, MONTHS],
      );
      await client.query('ANALYZE bench_at');
      const into = async (live: string) =>
        `INSERT INTO ${live}_archive (${(await pool.query<{ c: string }>('SELECT tasker_lifecycle_columns($1::regclass, false) AS c', [live])).rows[0]!.c}, archived_at)`;
      await client.query(
        `BEGIN;
       ${await into('tasker_workflow_step_transitions')}
         SELECT x.*, a.archived_at FROM tasker_workflow_step_transitions x
           JOIN tasker_workflow_steps s ON s.workflow_step_uuid = x.workflow_step_uuid JOIN bench_at a ON a.task_uuid = s.task_uuid;
       ${await into('tasker_workflow_step_edges')}
         SELECT x.*, a.archived_at FROM tasker_workflow_step_edges x
           JOIN tasker_workflow_steps s ON s.workflow_step_uuid = x.from_step_uuid JOIN bench_at a ON a.task_uuid = s.task_uuid;
       ${await into('tasker_workflow_steps')} SELECT x.*, a.archived_at FROM tasker_workflow_steps x JOIN bench_at a USING (task_uuid);
       ${await into('tasker_task_transitions')} SELECT x.*, a.archived_at FROM tasker_task_transitions x JOIN bench_at a USING (task_uuid);
       ${await into('tasker_tasks_dlq')} SELECT x.*, a.archived_at FROM tasker_tasks_dlq x JOIN bench_at a USING (task_uuid);
       ${await into('tasker_tasks')} SELECT x.*, a.archived_at FROM tasker_tasks x JOIN bench_at a USING (task_uuid);
       TRUNCATE tasker_workflow_step_transitions, tasker_workflow_step_edges, tasker_workflow_steps,
                tasker_task_transitions, tasker_tasks_dlq, tasker_tasks CASCADE;
       COMMIT`,
      );
    }
  } finally {
    client.release();
  }
  await pool.query('SELECT tasker_lifecycle_archive_rollup_recount()');
  await pool.query('VACUUM ANALYZE');
}

async function rowsIn(pool: pg.Pool, from: Date, to: Date): Promise<number> {
  let n = 0;
  for (const table of ARCHIVES) {
    const { rows } = await pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${table} WHERE archived_at >= $1 AND archived_at < $2`,
      [from, to],
    );
    n += Number(rows[0]!.n);
  }
  return n;
}

async function deleteMonth(pool: pg.Pool, from: Date, to: Date): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    for (const table of ARCHIVES)
      await client.query(`DELETE FROM ${table} WHERE archived_at >= $1 AND archived_at < $2`, [from, to]);
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}

/** v_archive_statistics's query before the rollup (migrations/views/v_archive_statistics.sql at 37cbbcc). */
async function fullAggregate(pool: pg.Pool): Promise<void> {
  await pool.query(
    `SELECT date_trunc('month', t.archived_at AT TIME ZONE 'UTC')::date AS archive_month, count(*),
            count(DISTINCT t.named_task_uuid), min(t.created_at), max(t.created_at),
            round(avg(extract(epoch FROM tr.created_at - t.created_at) / 86400), 2),
            count(*) FILTER (WHERE tr.to_state = 'complete'), count(*) FILTER (WHERE tr.to_state = 'error'),
            count(*) FILTER (WHERE tr.to_state = 'cancelled'), count(*) FILTER (WHERE tr.to_state = 'resolved_manually'),
            min(t.archived_at), max(t.archived_at)
       FROM tasker_tasks_archive t
       LEFT JOIN tasker_task_transitions_archive tr ON tr.task_uuid = t.task_uuid AND tr.most_recent = true
      GROUP BY 1 ORDER BY 1 DESC LIMIT 24`,
  );
}

async function repeat(n: number, fn: () => Promise<void>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await timed(fn)).ms);
  return out;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function load(): string {
  return loadavg()[0]!.toFixed(1);
}

function positive(name: string, def: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) {
    console.error(`${name}=${JSON.stringify(raw)}: expected a whole number ≥ 1`);
    process.exit(2);
  }
  return Number(raw);
}
