import type pg from 'pg';
import { NotFoundError } from '../../errors.ts';
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

/** One change sync_archive_tables made (or, with apply false, would make) to an archive table. */
export interface ArchiveTableChange {
  archive_table: string;
  column_name: string;
  /** "add <type>", "widen <type> to <type>" or "drop not null". */
  change: string;
}

/**
 * Brings the archive tables up to date with the live tables (every column, widened types), as
 * archive_completed_tasks does before each batch (migrations/functions/sync_archive_tables.sql).
 * What cannot be done without changing or losing a value raises SQLSTATE TL001, naming each column.
 */
export async function syncArchiveTables(db: Db, apply = true): Promise<ArchiveTableChange[]> {
  const { rows } = await db.query<ArchiveTableChange>(
    'SELECT archive_table, column_name, change FROM sync_archive_tables($1)',
    [apply],
  );
  return rows;
}

/** Whether this database has sync_archive_tables yet (migration 0030 applied). */
export async function canSyncArchiveTables(db: Db): Promise<boolean> {
  const { rows } = await db.query<{ present: boolean }>(
    "SELECT to_regprocedure('sync_archive_tables(boolean)') IS NOT NULL AS present",
  );
  return rows[0]!.present;
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
 * NotFoundError whose message says whether it is live or unknown.
 */
export async function restoreArchivedTask(db: Db, taskUuid: string): Promise<RestoreResult> {
  try {
    const { rows } = await db.query<RestoreResult>('SELECT * FROM restore_archived_task($1)', [taskUuid]);
    return rows[0]!;
  } catch (err) {
    if ((err as { code?: string }).code === 'P0002') throw new NotFoundError((err as Error).message);
    throw err;
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
 * Rows per archive table, cheap enough for a status screen on any archive size: each table is
 * counted exactly up to EXACT_COUNT_LIMIT rows (a scan that stops at the limit); past that, the
 * planner's estimate pg_class.reltuples (kept by autovacuum and ANALYZE) is reported with
 * exact = false, never below the limit. last_archived_at reads idx_tasks_archive_archived_at.
 */
export async function archiveTotals(db: Db): Promise<ArchiveTotals> {
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

/** v_archive_statistics, newest month first (aggregates the whole archive: dashboards, not hot paths). */
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
