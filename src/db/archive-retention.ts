import { join } from 'node:path';
import type pg from 'pg';
import { monthStartBefore } from '../domain/archive-months.ts';
import {
  type ArchivePartition,
  archivedMonthsBefore,
  archivePartitions,
  detachPartitionConcurrently,
  dropDetachedPartition,
  finalizeDetach,
} from './queries/archive-partitions.ts';

/**
 * Retention of the archive by whole months (archive.keep_months; docs/archival.md): every archive
 * partition whose range ends at or before the first of the month keep_months months before `now`'s
 * month is detached CONCURRENTLY (SHARE UPDATE EXCLUSIVE on the parent: archival's inserts,
 * restores and reads go on; PostgreSQL waits for transactions already using the parent to end) and
 * then dropped, in a transaction that also takes its months out of the rollup. Constant time in
 * the rows dropped: no DELETE, nothing for vacuum. The current month and the keep_months before it
 * are kept.
 *
 * The tasks table's partition goes first: once it is detached, no restore can find a task of that
 * month, so none restores a graph whose children are half dropped. A DETACH ... CONCURRENTLY that
 * was interrupted (a killed worker, a lost connection, a statement timeout) leaves its partition
 * "detach pending"; the next pass finishes it (DETACH ... FINALIZE) and drops it. Until it is
 * dropped, the rows stay where they were (the partition), counted in the rollup.
 */

/** The order partitions of one month are detached and dropped: tasks first, then its children. */
const DROP_ORDER = [
  'tasker_tasks_archive',
  'tasker_task_transitions_archive',
  'tasker_tasks_dlq_archive',
  'tasker_workflow_steps_archive',
  'tasker_workflow_step_edges_archive',
  'tasker_workflow_step_transitions_archive',
];

export interface RetentionOptions {
  /** Months kept before `now`'s month; 0: retention off. */
  keepMonths: number;
  /**
   * Export each month to <exportDir>/<YYYY-MM> (src/db/archive-export.ts, verified) before its
   * partitions are dropped; a partition any of whose months fails to export is kept. null: no export.
   */
  exportDir?: string | null;
  /** How a month is exported to a directory (src/db/archive-export.ts exportArchiveMonth), with exportDir. */
  exportMonth?: (month: string, directory: string) => Promise<unknown>;
  now: Date;
  /** lock_timeout of each DETACH and DROP, in milliseconds. */
  lockTimeoutMs: number;
  /** statement_timeout of each DETACH ... CONCURRENTLY (its wait for older transactions), in milliseconds. */
  statementTimeoutMs: number;
}

export interface RetentionResult {
  /** Partitions dropped ("tasker_tasks_archive_p202601"). */
  dropped: string[];
  /** Everything archived before this was due to go (ISO 8601); null when retention is off. */
  cutoff: string | null;
  /** Months whose export failed ("YYYY-MM: why"): their partitions were kept. */
  exportFailures?: string[];
}

function monthIn(month: string, from: Date | null, to: Date | null): boolean {
  const start = new Date(`${month}-01T00:00:00Z`);
  return (from === null || from <= start) && (to === null || start < to);
}

/** The partitions retention drops, in the order it drops them. */
export function partitionsToDrop(partitions: readonly ArchivePartition[], cutoff: Date): ArchivePartition[] {
  return partitions
    .filter((p) => p.to_at !== null && p.to_at <= cutoff)
    .sort(
      (a, b) =>
        (a.to_at?.getTime() ?? 0) - (b.to_at?.getTime() ?? 0) ||
        DROP_ORDER.indexOf(a.archive_table) - DROP_ORDER.indexOf(b.archive_table),
    );
}

export async function dropExpiredArchiveMonths(pool: pg.Pool, o: RetentionOptions): Promise<RetentionResult> {
  if (o.keepMonths <= 0) return { dropped: [], cutoff: null };
  const cutoff = monthStartBefore(o.now, o.keepMonths);
  let due = partitionsToDrop(await archivePartitions(pool), cutoff);
  const exportFailures: string[] = [];
  if (o.exportDir && !o.exportMonth)
    throw new Error('retention with exportDir needs exportMonth: nothing was dropped');
  if (o.exportDir && o.exportMonth && due.length > 0) {
    // every month any due partition holds (the rollup's months: the adopted partition spans many)
    const months = await archivedMonthsBefore(pool, cutoff);
    const failed = new Set<string>();
    for (const month of months) {
      try {
        await o.exportMonth(month, join(o.exportDir, month));
      } catch (err) {
        failed.add(month);
        exportFailures.push(`${month}: ${(err as Error).message}`);
      }
    }
    if (failed.size > 0)
      due = due.filter((p) => !months.some((m) => failed.has(m) && monthIn(m, p.from_at, p.to_at)));
  }
  const dropped = due.length === 0 ? [] : await detachAndDrop(pool, due, o);
  return { dropped, cutoff: cutoff.toISOString(), exportFailures };
}

/**
 * Detaches each partition CONCURRENTLY (or finishes a detach left pending) and drops it, taking its
 * months out of the rollup in the DROP's transaction, in the order given; names dropped.
 */
export async function detachAndDrop(
  pool: pg.Pool,
  due: readonly ArchivePartition[],
  o: { lockTimeoutMs: number; statementTimeoutMs: number },
): Promise<string[]> {
  const dropped: string[] = [];
  const client = await pool.connect();
  try {
    await client.query(
      "SELECT set_config('lock_timeout', $1, false), set_config('statement_timeout', $2, false)",
      [`${o.lockTimeoutMs}ms`, `${o.statementTimeoutMs}ms`],
    );
    for (const p of due) {
      // outside a transaction: DETACH ... CONCURRENTLY cannot run in one
      if (p.detach_pending) await finalizeDetach(client, p.archive_table, p.partition_name);
      else await detachPartitionConcurrently(client, p.archive_table, p.partition_name);
      await client.query('BEGIN');
      try {
        await dropDetachedPartition(client, {
          archiveTable: p.archive_table,
          partition: p.partition_name,
          from: p.from_at,
          to: p.to_at,
        });
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined); // report the drop's error
        throw err;
      }
      dropped.push(p.partition_name);
    }
  } finally {
    // the session's timeouts go back to the pool's defaults
    await client.query('RESET lock_timeout; RESET statement_timeout').catch(() => undefined);
    client.release();
  }
  return dropped;
}
