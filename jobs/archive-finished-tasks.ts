/**
 * Archival: moves finished task graphs (task, steps, edges, step transitions, task transitions,
 * resolved DLQ entries) older than the retention period from the live tables to the archive tables,
 * in bounded batches, without hurting the live workload.
 *
 * Reads: the current transition of finished tasks (idx_task_transitions_finished), their DLQ entries
 * (idx_dlq_unique_pending_task, idx_dlq_task_lookup), and the graphs of the tasks chosen (every
 * child table through its foreign-key index).
 * Writes: deletes those graphs from the six live tables and inserts them, unchanged plus
 * archived_at = ctx.now, into the six tasker_*_archive tables; one transaction per batch.
 *
 * Options (from [archive] and [archive.policies]; an ad-hoc run may set each): retention_days,
 * batch_size (graphs per transaction, at most), max_batches (per run), batch_statement_timeout_ms,
 * pause_between_batches_ms, duty_cycle_percent, batch_target_ms, dry_run, the per-state policies and
 * archive_dlq_resolved, the filters namespace / task_name (template) / finished_before (ISO
 * 8601; it narrows the retention window, never widens it), and keep_months (archive retention by
 * whole months; 0: off).
 *
 * Partitions: before its first batch a real run makes the monthly archive partitions of ctx.now's
 * month and the next (each standalone, then attached under SHARE UPDATE EXCLUSIVE, in a short
 * transaction of its own with a 200 ms lock_timeout: never inside a batch). After its batches, with
 * keep_months > 0, it drops every archive partition that ended before the first of the month
 * keep_months months back (detached concurrently, then dropped with its months taken out of the
 * rollup: src/db/archive-retention.ts).
 *
 * One run: call archive_completed_tasks batch by batch, each in its own transaction under SET
 * LOCAL statement_timeout, continuing from where the previous batch stopped (a keyset cursor on
 * state-entry time and task uuid, kept to PostgreSQL's microsecond, so tasks skipped once are not
 * rescanned and a dry run counts each task once). A run (real or dry) first refuses, moving
 * nothing, while the archive tables differ from the live tables (naming each column and `tasker-
 * lifecycle migrate`, which alone changes them) or a foreign key the moves rely on is missing or not
 * enforced (naming each key and what to run): an ArchiveRefusedError, so the run fails (it is retried
 * like any failure, and `status` shows why); every batch checks the same again in SQL and never
 * changes a table. A batch that times out (SQLSTATE
 * 57014) is rolled back and retried at half the size; after three successes in a row the size
 * doubles again, up to batch_size. Each batch is also sized from the previous one's pace, so that
 * it takes about batch_target_ms (at most double the last size, never above batch_size; the first
 * batch assumes FIRST_BATCH_GRAPHS_PER_MS): on a busy server batches get smaller, not longer. So
 * batch boundaries depend on time: a dry run and a real run report the same tasks when both run to
 * the end; where max_batches stops them, each covers what its own batch sizes allowed. Deadlocks
 * and serialization failures are retried up to three times. Between batches: a pause (the fixed pause, or longer so that batches take at most
 * duty_cycle_percent of the run's wall time), and the abort signal is checked. The run stops when no
 * candidates are left, after max_batches, or when aborted. All batches judge age against ctx.now.
 * A dry run walks the same batches (same choice, same locks) and counts instead of moving.
 *
 * Schedule: every archive.archive_interval_hours (cron, UTC), none when archive.enabled is false.
 *
 * Logs: warn on each timeout (batch size before and after), debug per batch. The result has counts
 * per table, batches, timeouts, retries, the final batch size, the longest batch and why it stopped.
 *
 * Safe with N workers: each batch locks the task rows and current transitions it moves (FOR UPDATE
 * SKIP LOCKED), so concurrent runs take disjoint tasks. A real run then locks the tasks' steps
 * (NOWAIT) and moves the rest without locking it row by row first: no row can be added to a graph
 * whose task and steps it holds (the foreign-key checks wait for its locks), and a row another
 * session holds fails the move within 1 ms (lock_timeout), after which the batch is redone the
 * careful way (every row locked SKIP LOCKED and counted, migration 0070), as a dry run always
 * does. Either way it never waits for the engine; a task with a row held elsewhere is skipped
 * whole and stays live for a later run; every graph
 * moves whole in one transaction, so a crash or kill at any point leaves each task exactly once,
 * live or archived, and the next run carries on.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import type { Config } from '../src/config/schema.ts';
import { exportArchiveMonth } from '../src/db/archive-export.ts';
import { dropExpiredArchiveMonths } from '../src/db/archive-retention.ts';
import {
  type ArchiveBatchResult,
  type ArchiveCursor,
  refuseUnlessMovable,
  runArchiveBatch,
} from '../src/db/queries/archive.ts';
import { addPartitionsForMonths, compactRollup } from '../src/db/queries/archive-partitions.ts';
import { checkTemplateFilter, templateFilterProblem } from '../src/db/queries/templates.ts';
import { AdaptiveBatchSize } from '../src/domain/adaptive-batch-size.ts';
import { monthsFrom } from '../src/domain/archive-months.ts';
import { cronEveryHours } from '../src/worker/cron.ts';
import { defineJob, type JobContext } from '../src/worker/job.ts';

export const ArchivePoliciesOptions = z.strictObject({
  archive_completed: z.boolean(),
  archive_failed: z.boolean(),
  archive_cancelled: z.boolean(),
  archive_resolved_manually: z.boolean(),
  archive_dlq_resolved: z.boolean(),
});

export const ArchiveFinishedTasksOptions = z
  .strictObject({
    dry_run: z.boolean(),
    retention_days: z.int().min(1).max(3650),
    batch_size: z.int().min(1).max(10000),
    max_batches: z.int().min(1).max(100000),
    batch_statement_timeout_ms: z.int().min(100).max(600000),
    pause_between_batches_ms: z.int().min(0).max(60000),
    /**
     * Percent of the run's wall time spent in batches (100: no throttle beyond the fixed pause).
     * Defaults to 100 so that runs queued before this option existed still parse.
     */
    duty_cycle_percent: z.int().min(1).max(100).default(100),
    /**
     * How long a batch should take, in milliseconds: each batch is sized from the previous one's
     * pace. Defaults to 500 so that runs queued before this option existed still parse.
     */
    batch_target_ms: z.int().min(10).max(600000).default(500),
    policies: ArchivePoliciesOptions,
    /** Only tasks of templates in this namespace. */
    namespace: z.string().min(1).max(64).nullable(),
    /** Only tasks of templates with this name (any version). */
    task_name: z.string().min(1).max(64).nullable(),
    /** Only tasks that entered their final state before this instant too (ISO 8601 with offset). */
    finished_before: z.iso.datetime({ offset: true }).nullable(),
    /**
     * Retention: months of archive kept besides ctx.now's (archive.keep_months); 0: off. Defaults
     * to 0 so that runs queued before this option existed still parse.
     */
    keep_months: z.int().min(0).max(1200).default(0),
    /** Retention exports each month to <export_dir>/<YYYY-MM> before dropping it; '': it does not. */
    export_dir: z.string().max(4096).default(''),
  })
  .refine(
    (o) =>
      o.policies.archive_completed ||
      o.policies.archive_failed ||
      o.policies.archive_cancelled ||
      o.policies.archive_resolved_manually,
    { error: 'no final state is allowed by the policies, so nothing could be archived', path: ['policies'] },
  );
export type ArchiveFinishedTasksOptions = z.infer<typeof ArchiveFinishedTasksOptions>;

export const ARCHIVE_TABLE_COUNTS = [
  'tasks_archived',
  'steps_archived',
  'transitions_archived',
  'edges_archived',
  'step_transitions_archived',
  'dlq_entries_archived',
] as const;
export type ArchiveCounts = Record<(typeof ARCHIVE_TABLE_COUNTS)[number], number>;

/** no_matching_template: the namespace / task_name filter names no template, so nothing can ever match. */
export type ArchiveStopReason = 'no_more_candidates' | 'max_batches' | 'aborted' | 'no_matching_template';

export interface ArchiveFinishedTasksResult extends ArchiveCounts {
  dry_run: boolean;
  /** Tasks that entered their final state before this were eligible (ISO 8601). */
  cutoff: string;
  batches: number;
  /** Rows of all six tables. */
  rows_archived: number;
  /** Candidates passed over: held by another archiver, or no longer eligible once locked. */
  tasks_skipped: number;
  timeouts: number;
  /** Batches retried after a deadlock or serialization failure. */
  retries: number;
  final_batch_size: number;
  longest_batch_ms: number;
  duration_ms: number;
  stopped_by: ArchiveStopReason;
  aborted: boolean;
  /** Monthly archive partitions dropped by retention after the batches (keep_months). */
  partitions_dropped: number;
}

export type ArchiveProgress =
  | {
      kind: 'batch';
      batch: number;
      batch_size: number;
      batch_ms: number;
      result: ArchiveBatchResult;
      totals: ArchiveCounts;
    }
  | { kind: 'timeout'; batch_size: number; next_batch_size: number }
  | { kind: 'retry'; batch_size: number; code: string };

const GROW_AFTER_SUCCESSES = 3;
/**
 * The pace the first batch of a run assumes: 0.5 graphs per millisecond, about what a 2-core
 * server shared with other work managed (docs/benchmarks.md), so that the first batch, which has
 * no pace to go by, keeps to batch_target_ms there too (250 graphs at the default 500 ms).
 */
export const FIRST_BATCH_GRAPHS_PER_MS = 0.5;
const MAX_RETRIES = 3;
const RETRYABLE = new Set(['40P01', '40001', '55P03']);
/** lock_timeout of retention's DETACH and DROP statements, in milliseconds. */
const RETENTION_LOCK_TIMEOUT_MS = 1000;

export function archiveOptionsFromConfig(config: Readonly<Config>): ArchiveFinishedTasksOptions {
  const a = config.archive;
  return {
    dry_run: a.dry_run,
    retention_days: a.retention_days,
    batch_size: a.archive_batch_size,
    max_batches: a.max_batches_per_run,
    batch_statement_timeout_ms: a.batch_statement_timeout_ms,
    pause_between_batches_ms: a.pause_between_batches_ms,
    duty_cycle_percent: a.duty_cycle_percent,
    batch_target_ms: a.batch_target_ms,
    policies: { ...a.policies },
    namespace: null,
    task_name: null,
    finished_before: null,
    keep_months: a.keep_months,
    export_dir: a.export_dir,
  };
}

/** One archival run; onProgress hears about every batch, timeout and retry (the CLI draws a bar). */
export async function runArchival(
  ctx: JobContext,
  options: ArchiveFinishedTasksOptions,
  onProgress?: (progress: ArchiveProgress) => void,
): Promise<ArchiveFinishedTasksResult> {
  const started = performance.now();
  const size = new AdaptiveBatchSize(options.batch_size, GROW_AFTER_SUCCESSES);
  const totals: ArchiveCounts = {
    tasks_archived: 0,
    steps_archived: 0,
    transitions_archived: 0,
    edges_archived: 0,
    step_transitions_archived: 0,
    dlq_entries_archived: 0,
  };
  // The size the last batch's pace allows for batch_target_ms (never above batch_size); the batch
  // size is the smaller of this and the timeout breaker's. Before any batch has shown the pace, the
  // first one assumes FIRST_BATCH_GRAPHS_PER_MS.
  let paced = firstBatchSize(options);
  let cursor: ArchiveCursor | null = null;
  let cutoff: Date | null = null;
  let batches = 0;
  let skipped = 0;
  let timeouts = 0;
  let retries = 0;
  let retriesInRow = 0;
  let longest = 0;
  let stoppedBy: ArchiveStopReason = 'max_batches';

  // Before anything: archive tables that differ from the live ones (run migrate) or a foreign key
  // the moves rely on refuse the run, naming each and what to run (ArchiveRefusedError).
  await refuseUnlessMovable(ctx.pool, 'archival');

  // The monthly partitions this run's batches write (ctx.now's month) and the next month's, made
  // ahead of need here, outside any batch: each made standalone and attached in a short
  // transaction of its own (SHARE UPDATE EXCLUSIVE on the parent, which no batch, restore or read
  // waits on), giving up after 200 ms rather than wait.
  if (!options.dry_run) {
    const partitions = await addPartitionsForMonths(ctx.pool, monthsFrom(ctx.now, 1));
    if (partitions.made.length > 0)
      ctx.logger.info(`archival made partitions ${partitions.made.join(', ')}`, {
        job: 'tasker.archive-finished-tasks',
        partitions_made: partitions.made.length,
      });
    for (const left of partitions.lockNotGranted)
      ctx.logger.warn(
        `archival could not make the partition of ${left} now (its lock was busy); a later run or migrate will`,
        {
          job: 'tasker.archive-finished-tasks',
        },
      );
  }

  // A filter that names no template can never match: the run ends at once, as done (retrying it
  // would only hold the queue's waiting slot). The CLI refuses such a filter before queueing.
  const filter = { namespace: options.namespace, taskName: options.task_name };
  const filterProblem = templateFilterProblem(filter, await checkTemplateFilter(ctx.pool, filter));
  if (filterProblem !== undefined) {
    ctx.logger.warn(`archival run skipped: ${filterProblem}`, { job: 'tasker.archive-finished-tasks' });
    stoppedBy = 'no_matching_template';
  }

  while (stoppedBy !== 'no_matching_template' && batches < options.max_batches) {
    if (ctx.signal.aborted) {
      stoppedBy = 'aborted';
      break;
    }
    const batchSize = Math.min(size.current, paced);
    const batchStarted = performance.now();
    let result: ArchiveBatchResult;
    try {
      result = await runArchiveBatch(
        ctx.pool,
        {
          now: ctx.now,
          dryRun: options.dry_run,
          retentionDays: options.retention_days,
          batchSize,
          policies: options.policies,
          namespace: options.namespace,
          taskName: options.task_name,
          finishedBefore: options.finished_before,
          after: cursor,
        },
        options.batch_statement_timeout_ms,
        ctx.commitFence,
      );
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      if (isStatementTimeout(err)) {
        timeouts += 1;
        ctx.progress?.({ dry_run: options.dry_run, timeouts: 1 });
        if (batchSize === 1) {
          throw new Error(
            `archiving one task took longer than batch_statement_timeout_ms (${options.batch_statement_timeout_ms} ms) after ${batches} batches; raise the timeout or look for locks on the task tables`,
            { cause: err },
          );
        }
        size.shrink();
        paced = Math.max(1, Math.floor(batchSize / 2));
        const next = Math.min(size.current, paced);
        ctx.logger.warn('archival batch timed out; retrying smaller', {
          job: 'tasker.archive-finished-tasks',
          batch_size: batchSize,
          next_batch_size: next,
          statement_timeout_ms: options.batch_statement_timeout_ms,
        });
        onProgress?.({ kind: 'timeout', batch_size: batchSize, next_batch_size: next });
      } else if (RETRYABLE.has(code) && retriesInRow < MAX_RETRIES) {
        retries += 1;
        retriesInRow += 1;
        onProgress?.({ kind: 'retry', batch_size: batchSize, code });
        ctx.progress?.({ dry_run: options.dry_run, retries: 1 });
      } else {
        const where = cursor ? `after task ${cursor.taskUuid} (${cursor.stateEnteredAt})` : 'first';
        throw new Error(
          `archival batch ${batches + 1} (${where}, size ${batchSize}) failed: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
      await pause(options.pause_between_batches_ms, ctx.signal);
      continue;
    }

    const batchMs = performance.now() - batchStarted;
    batches += 1;
    retriesInRow = 0;
    longest = Math.max(longest, batchMs);
    cutoff ??= result.cutoff;
    skipped += result.tasks_skipped;
    for (const key of ARCHIVE_TABLE_COUNTS) totals[key] += result[key];
    if (result.cursor !== null) cursor = result.cursor;
    size.succeeded();
    paced = sizeForTarget(batchSize, result.tasks_archived + result.tasks_skipped, batchMs, options);
    ctx.logger.debug('archival batch', {
      job: 'tasker.archive-finished-tasks',
      batch: batches,
      batch_size: batchSize,
      duration_ms: Math.round(batchMs),
      tasks_archived: result.tasks_archived,
      locked_row_by_row: result.locked_row_by_row,
      dry_run: options.dry_run,
    });
    ctx.progress?.({
      dry_run: options.dry_run,
      batches: 1,
      ...Object.fromEntries(ARCHIVE_TABLE_COUNTS.map((key) => [key, result[key]])),
      rows_archived: ARCHIVE_TABLE_COUNTS.reduce((sum, key) => sum + result[key], 0),
      tasks_skipped: result.tasks_skipped,
    });
    onProgress?.({
      kind: 'batch',
      batch: batches,
      batch_size: batchSize,
      batch_ms: batchMs,
      result,
      totals: { ...totals },
    });

    if (!result.more_candidates) {
      stoppedBy = 'no_more_candidates';
      break;
    }
    if (batches < options.max_batches) {
      await pause(
        pauseAfter(batchMs, options.pause_between_batches_ms, options.duty_cycle_percent),
        ctx.signal,
      );
    }
  }
  if (stoppedBy === 'max_batches' && ctx.signal.aborted) stoppedBy = 'aborted';

  // The rollup's delta rows (one or a few per batch) folded into one per month, outside any batch.
  if (!options.dry_run && batches > 0) await compactRollup(ctx.pool);

  // Retention, after the batches of a real run that was not aborted: whole months past keep_months
  // are detached concurrently and dropped (src/db/archive-retention.ts).
  let dropped: string[] = [];
  if (!options.dry_run && options.keep_months > 0 && stoppedBy !== 'aborted') {
    const retention = await dropExpiredArchiveMonths(ctx.pool, {
      keepMonths: options.keep_months,
      exportDir: options.export_dir === '' ? null : options.export_dir,
      exportMonth: (month, directory) => exportArchiveMonth(ctx.pool, { month, directory, now: ctx.now }),
      now: ctx.now,
      lockTimeoutMs: RETENTION_LOCK_TIMEOUT_MS,
      statementTimeoutMs: options.batch_statement_timeout_ms,
    });
    dropped = retention.dropped;
    for (const failure of retention.exportFailures ?? [])
      ctx.logger.warn(`archival retention kept a month it could not export: ${failure}`, {
        job: 'tasker.archive-finished-tasks',
      });
    if (dropped.length > 0)
      ctx.logger.info(`archival retention dropped ${dropped.join(', ')}`, {
        job: 'tasker.archive-finished-tasks',
        partitions_dropped: dropped.length,
      });
  }

  return {
    dry_run: options.dry_run,
    cutoff: (cutoff ?? cutoffOf(ctx.now, options)).toISOString(),
    batches,
    ...totals,
    rows_archived: ARCHIVE_TABLE_COUNTS.reduce((sum, key) => sum + totals[key], 0),
    tasks_skipped: skipped,
    timeouts,
    retries,
    final_batch_size: Math.min(size.current, paced),
    longest_batch_ms: Math.round(longest),
    duration_ms: Math.round(performance.now() - started),
    stopped_by: stoppedBy,
    aborted: stoppedBy === 'aborted',
    partitions_dropped: dropped.length,
  };
}

/** When pg-boss runs the job: every archive.archive_interval_hours (cron, UTC); never when disabled. */
export function archiveSchedule(config: Readonly<Config>): string | null {
  return config.archive.enabled ? cronEveryHours(config.archive.archive_interval_hours) : null;
}

const archiveFinishedTasks = {
  name: 'tasker.archive-finished-tasks',
  description:
    'Move finished task graphs older than the retention period to the archive tables, in bounded batches.',
  optionsSchema: ArchiveFinishedTasksOptions,
  optionsFromConfig: archiveOptionsFromConfig,
  schedule: archiveSchedule,
  run: (ctx: JobContext, options: ArchiveFinishedTasksOptions) => runArchival(ctx, options),
  workDone: (result: ArchiveFinishedTasksResult) => (result.dry_run ? 0 : result.tasks_archived),
  // Its pauses between batches end at once when the run is asked to stop.
  longestBatchMs: (options: ArchiveFinishedTasksOptions) => options.batch_statement_timeout_ms,
  stoppedEarly: (result: ArchiveFinishedTasksResult) =>
    result.stopped_by === 'no_more_candidates'
      ? null
      : {
          reason: result.stopped_by === 'aborted' ? ('aborted' as const) : ('max_batches' as const),
          handOn: !result.dry_run,
        },
};

export default defineJob<ArchiveFinishedTasksOptions, ArchiveFinishedTasksResult>(archiveFinishedTasks);

function isStatementTimeout(err: unknown): boolean {
  return (err as { code?: string }).code === '57014' && /statement timeout/i.test((err as Error).message);
}

/** The cut-off the SQL function would compute (reported when no batch ran). */
function cutoffOf(now: Date, o: ArchiveFinishedTasksOptions): Date {
  const byRetention = new Date(now.getTime() - o.retention_days * 86_400_000);
  if (o.finished_before === null) return byRetention;
  const before = new Date(o.finished_before);
  return before < byRetention ? before : byRetention;
}

/** The first batch's size: what batch_target_ms allows at FIRST_BATCH_GRAPHS_PER_MS, within 1..batch_size. */
export function firstBatchSize(
  o: Pick<ArchiveFinishedTasksOptions, 'batch_size' | 'batch_target_ms'>,
): number {
  return Math.max(1, Math.min(o.batch_size, Math.floor(o.batch_target_ms * FIRST_BATCH_GRAPHS_PER_MS)));
}

/**
 * The next batch's size from the last one's pace: a batch of `size` that examined `examined` tasks
 * (moved or skipped) in batchMs gets size x batch_target_ms / batchMs, at most double the last
 * size and never above batch_size or below 1. A short batch (fewer tasks than its size: the last
 * one of a run) says nothing about the pace of a full one and keeps the size.
 */
export function sizeForTarget(
  size: number,
  examined: number,
  batchMs: number,
  o: Pick<ArchiveFinishedTasksOptions, 'batch_size' | 'batch_target_ms'>,
): number {
  if (examined < size || batchMs <= 0) return Math.min(size, o.batch_size);
  const byPace = Math.floor((size * o.batch_target_ms) / batchMs);
  return Math.max(1, Math.min(o.batch_size, 2 * size, byPace));
}

/**
 * The pause after a batch that took batchMs: long enough that batches take at most
 * dutyCyclePercent of the wall time (batch / (batch + pause) <= duty cycle), and never shorter
 * than the fixed pause. 50 % after a 400 ms batch: 400 ms; 25 %: 1,200 ms.
 */
export function pauseAfter(batchMs: number, pauseMs: number, dutyCyclePercent: number): number {
  return Math.max(pauseMs, Math.round((batchMs * (100 - dutyCyclePercent)) / dutyCyclePercent));
}

/** Waits ms, or less when the run is aborted meanwhile. */
async function pause(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return;
  await sleep(ms, undefined, { signal }).catch(() => undefined); // aborted: the loop checks the signal next
}
