import type pg from 'pg';
import { ArchiveRefusedError, NotFoundError } from '../../errors.ts';
import { type Db, withStatementTimeout } from '../pool.ts';

/**
 * Queries for archival: archive_completed_tasks, restore_archived_task, v_archive_statistics and the
 * six tasker_*_archive tables (migrations/0005_archive.sql).
 */

/** Which final states are archived, and whether resolved DLQ entries move with their task. */
export interface ArchivePolicies {
  archive_completed: boolean;
  archive_failed: boolean;
  archive_cancelled: boolean;
  archive_resolved_manually: boolean;
  archive_dlq_resolved: boolean;
}

/**
 * Where a batch starts: after this task (in state-entry order). The time is kept as PostgreSQL's
 * exact text (ISO 8601, UTC, microseconds), never as a JavaScript Date: a Date keeps milliseconds
 * only, and a cursor rounded down makes the next page repeat tasks (a dry run then counted them
 * again and reported more than the real run moves).
 */
export interface ArchiveCursor {
  stateEnteredAt: string;
  taskUuid: string;
}

export interface ArchiveBatchParams {
  now: Date;
  dryRun: boolean;
  retentionDays: number;
  batchSize: number;
  policies: ArchivePolicies;
  namespace?: string | null | undefined;
  taskName?: string | null | undefined;
  /**
   * Only tasks that entered their final state before this too (narrows the retention window); a
   * string is passed to PostgreSQL as written, microseconds included.
   */
  finishedBefore?: Date | string | null | undefined;
  after?: ArchiveCursor | null | undefined;
}

/** One row of archive_completed_tasks. */
export interface ArchiveBatchResult {
  tasks_archived: number;
  steps_archived: number;
  /** Task transitions (upstream's name). */
  transitions_archived: number;
  execution_time_ms: number;
  edges_archived: number;
  step_transitions_archived: number;
  dlq_entries_archived: number;
  tasks_skipped: number;
  more_candidates: boolean;
  last_state_entered_at: Date | null;
  last_task_uuid: string | null;
  cutoff: Date;
  task_uuids: string[];
  /**
   * The batch locked every row of each graph SKIP LOCKED and compared counts (migration 0070's
   * careful path): always in a dry run; in a real run only when its fast path met a row another
   * session holds.
   */
  locked_row_by_row: boolean;
  /** Where the next batch starts (last_state_entered_at exactly, and last_task_uuid), or null. */
  cursor: ArchiveCursor | null;
}

/**
 * One archival batch, in the caller's transaction (see runArchiveBatch). The indexes each step
 * reads are listed above archive_completed_tasks in the migration.
 */
export async function archiveBatch(db: Db, p: ArchiveBatchParams): Promise<ArchiveBatchResult> {
  const { rows } = await db.query<Omit<ArchiveBatchResult, 'cursor'> & { cursor_at: string | null }>(
    `SELECT a.*,
            to_char(a.last_state_entered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor_at
       FROM archive_completed_tasks(
         p_retention_days => $1, p_batch_size => $2, p_dry_run => $3, p_now => $4,
         p_namespace => $5, p_task_name => $6, p_finished_before => $7::timestamptz,
         p_archive_completed => $8, p_archive_failed => $9, p_archive_cancelled => $10,
         p_archive_resolved_manually => $11, p_archive_dlq_resolved => $12,
         p_after_state_entered_at => $13::timestamptz, p_after_task_uuid => $14) a`,
    [
      p.retentionDays,
      p.batchSize,
      p.dryRun,
      p.now,
      p.namespace ?? null,
      p.taskName ?? null,
      p.finishedBefore ?? null,
      p.policies.archive_completed,
      p.policies.archive_failed,
      p.policies.archive_cancelled,
      p.policies.archive_resolved_manually,
      p.policies.archive_dlq_resolved,
      p.after?.stateEnteredAt ?? null,
      p.after?.taskUuid ?? null,
    ],
  );
  const { cursor_at, ...result } = rows[0]!;
  return {
    ...result,
    cursor:
      cursor_at === null || result.last_task_uuid === null
        ? null
        : { stateEnteredAt: cursor_at, taskUuid: result.last_task_uuid },
  };
}

/**
 * One batch as its own transaction, with statement_timeout set for this transaction only (SET
 * LOCAL), so a batch that runs too long is cancelled (SQLSTATE 57014) and rolled back whole.
 *
 * A real batch also commits with synchronous_commit off, so its COMMIT does not wait for its WAL
 * to reach the disk (batches were mostly shorter so: docs/benchmarks.md), and a batch is a move
 * that is safe to lose. A server crash in the fraction of a second before the WAL writer
 * flushes it undoes the whole batch, never half of it: every graph is then still live, exactly
 * once, and the next run moves it again. The first synchronous commit after it (the run's own
 * record: its completion in pg-boss, or an inline run's tasker_job_runs row; any live transaction)
 * flushes it with everything before it. The flush itself still happens, and live commits wait
 * behind it as before.
 */
export async function runArchiveBatch(
  pool: pg.Pool,
  p: ArchiveBatchParams,
  statementTimeoutMs: number,
  beforeCommit?: (client: pg.PoolClient) => Promise<void>,
): Promise<ArchiveBatchResult> {
  // withStatementTimeout also turns a connection lost mid-batch into this batch's error, instead
  // of an 'error' event nobody listens to (which would crash the worker).
  return withStatementTimeout(
    pool,
    statementTimeoutMs,
    async (client) => {
      if (!p.dryRun) await client.query(`SELECT set_config('synchronous_commit', 'off', true)`);
      return archiveBatch(client, p);
    },
    beforeCommit,
  );
}

export interface CandidateCountParams {
  now: Date;
  retentionDays: number;
  policies: ArchivePolicies;
  namespace?: string | null | undefined;
  taskName?: string | null | undefined;
  finishedBefore?: Date | null | undefined;
}

/**
 * About how many tasks a run would archive, counting at most `limit` (for a progress bar): finished
 * tasks in the allowed states before the cut-off, template filter applied, DLQ rules not (so it can
 * count a few too many). Index-only range scans of idx_task_transitions_finished, bounded by limit.
 */
export async function countArchiveCandidates(
  db: Db,
  p: CandidateCountParams,
  limit: number,
): Promise<number> {
  const states = [
    p.policies.archive_completed && 'complete',
    p.policies.archive_failed && 'error',
    p.policies.archive_cancelled && 'cancelled',
    p.policies.archive_resolved_manually && 'resolved_manually',
  ].filter((s): s is string => typeof s === 'string');
  const { rows } = await db.query<{ n: number }>(
    `WITH cutoff AS (
       SELECT least($2::timestamptz - make_interval(hours => 24 * $3), coalesce($4::timestamptz, 'infinity')) AS at
     ),
     templates AS (
       SELECT array_agg(nt.named_task_uuid) AS ids
         FROM tasker_named_tasks nt
         JOIN tasker_task_namespaces ns ON ns.task_namespace_uuid = nt.task_namespace_uuid
        WHERE ($5::varchar IS NOT NULL OR $6::varchar IS NOT NULL)
          AND ($5::varchar IS NULL OR ns.name = $5) AND ($6::varchar IS NULL OR nt.name = $6)
     )
     SELECT count(*)::integer AS n FROM (
       SELECT 1
         FROM unnest($1::varchar[]) AS s(state)
        CROSS JOIN cutoff CROSS JOIN templates
        CROSS JOIN LATERAL (
          SELECT tr.task_uuid FROM tasker_task_transitions tr
           WHERE tr.most_recent = true
             AND tr.to_state IN ('complete', 'error', 'cancelled', 'resolved_manually')
             AND tr.to_state = s.state AND tr.created_at < cutoff.at
             AND NOT EXISTS (SELECT 1 FROM tasker_archive_holds h
                              WHERE h.task_uuid = tr.task_uuid AND h.held_until > $2::timestamptz)
             AND (($5::varchar IS NULL AND $6::varchar IS NULL)
                  OR EXISTS (SELECT 1 FROM tasker_tasks t WHERE t.task_uuid = tr.task_uuid
                                AND t.named_task_uuid = ANY (templates.ids)))
           LIMIT $7) c
        LIMIT $7) bounded`,
    [
      states,
      p.now,
      p.retentionDays,
      p.finishedBefore ?? null,
      p.namespace ?? null,
      p.taskName ?? null,
      limit,
    ],
  );
  return rows[0]!.n;
}

/**
 * SQLSTATEs of archival's and restore's refusals: TL001 an archive column cannot take the live
 * values, TL002 a restore would drop a value, TL003 the archive tables differ from the live ones
 * (run `migrate`), TL004 a foreign key archival relies on (migrations/functions/
 * tasker_lifecycle_archive_refusals.sql).
 */
const REFUSED = new Set(['TL001', 'TL002', 'TL003', 'TL004']);

/** A refusal from the database as an ArchiveRefusedError (its message names what to run); anything else as it is. */
function asRefusal(err: unknown): unknown {
  const code = (err as { code?: string }).code;
  return code !== undefined && REFUSED.has(code)
    ? new ArchiveRefusedError((err as Error).message, code, err)
    : err;
}

/**
 * Throws ArchiveRefusedError, naming each reason and what to run, when archival ('archival') or a
 * restore ('restore') must not move a row now: the archive tables differ from the live ones, or
 * (archival only) a foreign key it relies on is missing or not enforced. archive_completed_tasks and
 * restore_archived_task check the same themselves; this asks before a run starts. Catalog reads.
 */
export async function refuseUnlessMovable(db: Db, action: 'archival' | 'restore'): Promise<void> {
  try {
    await db.query('SELECT tasker_lifecycle_refuse_archive_moves($1)', [action]);
  } catch (err) {
    throw asRefusal(err);
  }
}

/**
 * Why archival ('archival') or a restore ('restore') would refuse now, each reason naming what to
 * run; [] when it would not. null on a database this build's `migrate` has not reached (the check
 * does not exist there yet). Catalog reads only.
 */
export async function archiveRefusals(db: Db, action: 'archival' | 'restore'): Promise<string[] | null> {
  const { rows: present } = await db.query<{ present: boolean }>(
    "SELECT to_regprocedure('tasker_lifecycle_archive_refusals(text)') IS NOT NULL AS present",
  );
  if (!present[0]!.present) return null;
  const { rows } = await db.query<{ reason: string }>(
    `SELECT r.reason FROM tasker_lifecycle_archive_refusals($1) WITH ORDINALITY AS r(sqlstate, reason, n)
      ORDER BY r.sqlstate, r.n`,
    [action],
  );
  return rows.map((r) => r.reason);
}

/** A live table and its archive table (tasker_lifecycle_archive_pairs), parents first. */
export interface ArchivePair {
  live_table: string;
  archive_table: string;
  /** Both tables exist. */
  present: boolean;
}

export async function archivePairs(db: Db): Promise<ArchivePair[]> {
  const { rows } = await db.query<ArchivePair>(
    `SELECT p.live_table, p.archive_table,
            to_regclass(p.live_table) IS NOT NULL AND to_regclass(p.archive_table) IS NOT NULL AS present
       FROM tasker_lifecycle_archive_pairs() WITH ORDINALITY AS p(live_table, archive_table, n)
      ORDER BY p.n`,
  );
  return rows;
}

/** One column an archive table lacks against its live table (tasker_lifecycle_archive_differences). */
export interface ArchiveDifference {
  live_table: string;
  archive_table: string;
  column_name: string | null;
  /** "add <type>", "widen <type> to <type>" or "drop not null"; null with a problem. */
  change: string | null;
  /** Why the archive table cannot take the live column as it is (change it by hand), or a missing table. */
  problem: string | null;
}

/** What every archive table lacks against its live table, parents first; [] when nothing. Catalog reads. */
export async function archiveDifferences(db: Db): Promise<ArchiveDifference[]> {
  const { rows } = await db.query<ArchiveDifference>(
    `SELECT d.live_table, d.archive_table, d.column_name, d.change, d.problem
       FROM tasker_lifecycle_archive_differences()
            WITH ORDINALITY AS d(live_table, archive_table, column_name, change, problem, n)
      ORDER BY d.n`,
  );
  return rows;
}

/** Whether this database has tasker_lifecycle_follow_live_table (nothing to follow before 0030 and this build's files). */
export async function canFollowLiveTables(db: Db): Promise<boolean> {
  const { rows } = await db.query<{ present: boolean }>(
    `SELECT to_regprocedure('tasker_lifecycle_follow_live_table(regclass, regclass, boolean, bigint)') IS NOT NULL
            AND to_regprocedure('tasker_lifecycle_archive_pairs()') IS NOT NULL AS present`,
  );
  return rows[0]!.present;
}

/** One change an archive table needed to take every column of its live table. */
export interface ArchiveColumnChange {
  column_name: string;
  /** "add <type>", "widen <type> to <type>" or "drop not null". */
  change: string;
  /** The SQL that makes it, for an operator to run by hand. */
  statement: string;
  /** It rewrites the table or rebuilds an index (as this server decides: an empty copy is changed and compared). */
  rewrites: boolean;
  /** The archive table's rows, counted up to maxRewriteRows + 1, for a change that rewrites; else null. */
  archive_rows: number | null;
  /** Made; false: left (it rewrites a table with more than maxRewriteRows rows). */
  applied: boolean;
}

/**
 * Brings one archive table up to date with its live table (tasker_lifecycle_follow_live_table), in a
 * transaction of its own on this client (outside any other) with lock_timeout = lockTimeoutMs: a
 * change that rewrites the table is made only when the table has at most maxRewriteRows rows (null:
 * whatever its size), else it is returned with applied false. Throws SQLSTATE 55P03 when the
 * table's lock is not granted in time, TL001 when a change cannot be made without changing a value;
 * nothing of this table is changed then.
 */
export async function followLiveTable(
  client: pg.PoolClient,
  p: { pair: ArchivePair; maxRewriteRows: number | null; lockTimeoutMs: number },
): Promise<ArchiveColumnChange[]> {
  await client.query('BEGIN');
  try {
    await client.query("SELECT set_config('lock_timeout', $1, true)", [`${p.lockTimeoutMs}ms`]);
    const { rows } = await client.query<ArchiveColumnChange>(
      `SELECT column_name, change, statement, rewrites, archive_rows, applied
         FROM tasker_lifecycle_follow_live_table($1::regclass, $2::regclass, true, $3)`,
      [p.pair.live_table, p.pair.archive_table, p.maxRewriteRows],
    );
    await client.query('COMMIT');
    return rows;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined); // report the work's error, not the rollback's
    throw err;
  }
}

/** Rows moved back per table by restore_archived_task. */
export interface RestoreResult {
  tasks_restored: number;
  steps_restored: number;
  transitions_restored: number;
  edges_restored: number;
  step_transitions_restored: number;
  dlq_entries_restored: number;
}

/**
 * Moves one archived task graph back to the live tables. A task that is not archived is a
 * NotFoundError whose message says whether it is live or unknown; a restore the database refuses
 * (the archive tables differ from the live ones, or a value would be dropped) is an
 * ArchiveRefusedError naming what to run.
 */
export async function restoreArchivedTask(db: Db, taskUuid: string): Promise<RestoreResult> {
  try {
    const { rows } = await db.query<RestoreResult>('SELECT * FROM restore_archived_task($1)', [taskUuid]);
    return rows[0]!;
  } catch (err) {
    if ((err as { code?: string }).code === 'P0002') throw new NotFoundError((err as Error).message);
    throw asRefusal(err);
  }
}

/** A live task's current state and when it entered it (idx_task_transitions_uuid_most_recent). */
export async function currentStateOf(
  db: Db,
  taskUuid: string,
): Promise<{ state: string; entered_at: Date } | undefined> {
  const { rows } = await db.query<{ state: string; entered_at: Date }>(
    `SELECT to_state AS state, created_at AS entered_at FROM tasker_task_transitions
      WHERE task_uuid = $1 AND most_recent = true`,
    [taskUuid],
  );
  return rows[0];
}

export const ARCHIVE_TABLES = [
  'tasker_tasks_archive',
  'tasker_workflow_steps_archive',
  'tasker_workflow_step_edges_archive',
  'tasker_task_transitions_archive',
  'tasker_workflow_step_transitions_archive',
  'tasker_tasks_dlq_archive',
] as const;
export type ArchiveTable = (typeof ARCHIVE_TABLES)[number];

export interface ArchiveTableTotal {
  table: ArchiveTable;
  rows: number;
  /** true: counted; false: the planner's estimate (pg_class.reltuples), used above EXACT_COUNT_LIMIT. */
  exact: boolean;
}

export interface ArchiveTotals {
  tables: ArchiveTableTotal[];
  /** When the newest archived task was archived (idx_tasks_archive_archived_at), or null. */
  last_archived_at: Date | null;
}

/** Tables with up to this many rows are counted exactly; bigger ones are estimated. */
export const EXACT_COUNT_LIMIT = 10_000;

/**
 * Rows per archive table, exact and cheap on any archive size: the sums of the monthly rollup
 * (tasker_archive_months, delta rows folded to a row per month by each archival run; migrations/0210),
 * which archival, restore and retention keep in their own transactions; last_archived_at is the rollup's too. Until `migrate` has started
 * the rollup (an archive not adopted yet), each table is counted exactly up to EXACT_COUNT_LIMIT rows
 * (a scan that stops at the limit) and, past that, the planner's estimate pg_class.reltuples is
 * reported with exact = false; last_archived_at then reads idx_tasks_archive_archived_at.
 */
export async function archiveTotals(db: Db): Promise<ArchiveTotals> {
  const { rows: rollup } = await db.query<Record<ArchiveTable, number> & { last_archived_at: Date | null }>(
    `SELECT coalesce(sum(tasks), 0)::bigint AS tasker_tasks_archive,
            coalesce(sum(steps), 0)::bigint AS tasker_workflow_steps_archive,
            coalesce(sum(edges), 0)::bigint AS tasker_workflow_step_edges_archive,
            coalesce(sum(transitions), 0)::bigint AS tasker_task_transitions_archive,
            coalesce(sum(step_transitions), 0)::bigint AS tasker_workflow_step_transitions_archive,
            coalesce(sum(dlq_entries), 0)::bigint AS tasker_tasks_dlq_archive,
            max(last_archived_at) AS last_archived_at
       FROM tasker_archive_months
      WHERE EXISTS (SELECT 1 FROM tasker_archive_rollup_started)
     HAVING EXISTS (SELECT 1 FROM tasker_archive_rollup_started)`,
  );
  if (rollup[0]) {
    const r = rollup[0];
    return {
      tables: ARCHIVE_TABLES.map((table) => ({ table, rows: Number(r[table]), exact: true })),
      last_archived_at: r.last_archived_at,
    };
  }
  return archiveTotalsCounted(db);
}

async function archiveTotalsCounted(db: Db): Promise<ArchiveTotals> {
  const bounded = ARCHIVE_TABLES.map(
    (t) => `(SELECT count(*) FROM (SELECT 1 FROM ${t} LIMIT $1 + 1) x) AS ${t}`,
  ).join(',\n            ');
  const { rows } = await db.query<Record<ArchiveTable, number> & { last_archived_at: Date | null }>(
    `SELECT ${bounded},
            (SELECT max(archived_at) FROM tasker_tasks_archive) AS last_archived_at`,
    [EXACT_COUNT_LIMIT],
  );
  const { rows: estimates } = await db.query<{ table: ArchiveTable; estimate: number }>(
    `SELECT c.relname AS table, greatest(c.reltuples, 0)::bigint AS estimate
       FROM pg_class c WHERE c.oid = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t)`,
    [ARCHIVE_TABLES],
  );
  const counted = rows[0]!;
  return {
    tables: ARCHIVE_TABLES.map((table) => {
      const n = counted[table];
      if (n <= EXACT_COUNT_LIMIT) return { table, rows: n, exact: true };
      const estimate = estimates.find((e) => e.table === table)?.estimate ?? 0;
      return { table, rows: Math.max(estimate, EXACT_COUNT_LIMIT + 1), exact: false };
    }),
    last_archived_at: counted.last_archived_at,
  };
}

export interface ArchiveMonth {
  archive_month: string;
  tasks_archived: number;
  distinct_task_templates: number;
  oldest_task_archived: Date;
  newest_task_archived: Date;
  avg_task_lifetime_days: number | null;
  completed: number;
  failed: number;
  cancelled: number;
  resolved_manually: number;
  first_archived_at: Date;
  last_archived_at: Date;
}

/** v_archive_statistics, newest month first (reads the monthly rollup, never the archive). */
export async function archiveStatistics(db: Db, months: number): Promise<ArchiveMonth[]> {
  const { rows } = await db.query<ArchiveMonth>(
    `SELECT to_char(archive_month, 'YYYY-MM') AS archive_month, tasks_archived, distinct_task_templates,
            oldest_task_archived, newest_task_archived, avg_task_lifetime_days, completed, failed, cancelled,
            resolved_manually, first_archived_at, last_archived_at
       FROM v_archive_statistics ORDER BY v_archive_statistics.archive_month DESC LIMIT $1`,
    [months],
  );
  return rows;
}
