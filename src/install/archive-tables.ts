import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { type ArchiveConfig, ArchiveSchema } from '../config/schema.ts';
import {
  type ArchiveColumnChange,
  type ArchivePair,
  archiveDifferences,
  archivePairs,
  canFollowLiveTables,
  followLiveTable,
} from '../db/queries/archive.ts';
import { archivalKeyProblems } from '../db/queries/engine-schema.ts';
import { EngineSchemaError } from '../errors.ts';

/**
 * `migrate`'s part of the archive tables (step 6 of docs/operating.md "What migrate does"). Only
 * `migrate` changes them: archival batches and restores compare the catalogs and refuse while the
 * archive tables differ from the live ones, naming each column and `tasker-lifecycle migrate`
 * (migrations/functions/tasker_lifecycle_refuse_archive_moves.sql).
 *
 * Each archive table is brought up to date with its live table in a transaction of its own, under
 * lock_timeout = archive.alter_lock_timeout_ms (tried LOCK_ATTEMPTS times): a column the live table
 * has is added, a widened type widened, a NOT NULL the live table dropped dropped. A change that
 * rewrites the table or rebuilds an index (integer to bigint, a new column with a volatile default;
 * PostgreSQL decides, on an empty copy) is made only while the table has at most
 * archive.max_rewrite_rows rows, or with `migrate --allow-archive-rewrites`; otherwise it is left,
 * with the statement that makes it, and archival and restore refuse until it is made. Changes
 * that only touch the catalog (a new column with no default or a non-volatile one, varchar(n) to a
 * longer varchar or to text) are made whatever the size.
 *
 * Then the foreign keys archival relies on are checked: a missing or unenforced one is reported
 * (archival refuses until it is fixed; detection, restore and migrate itself do not need them).
 * What cannot be done without changing a value (a live column named archived_at, a type that is not
 * a widening of the archive's) is refused with an EngineSchemaError, as before.
 */

export interface ArchiveTableOptions {
  /** A change that rewrites an archive table is made only up to this many rows; null: at any size. */
  maxRewriteRows: number | null;
  /** lock_timeout of each archive table's changes, in milliseconds. */
  lockTimeoutMs: number;
}

export function archiveTableOptions(
  archive: Pick<ArchiveConfig, 'max_rewrite_rows' | 'alter_lock_timeout_ms'>,
  allowRewrites: boolean,
): ArchiveTableOptions {
  return {
    maxRewriteRows: allowRewrites ? null : archive.max_rewrite_rows,
    lockTimeoutMs: archive.alter_lock_timeout_ms,
  };
}

/** The configuration's defaults, without --allow-archive-rewrites (migrate() called with no options). */
export const DEFAULT_ARCHIVE_TABLE_OPTIONS: ArchiveTableOptions = archiveTableOptions(
  ArchiveSchema.parse({}),
  false,
);

/** Tries at each archive table's lock before it is left for the next migrate. */
export const LOCK_ATTEMPTS = 3;
const PAUSE_BETWEEN_ATTEMPTS_MS = 250;

export interface ArchiveTablesResult {
  /** Changes made to the archive tables ("table.column: change"). */
  archiveChanges: string[];
  /**
   * Changes not made, each saying why and what to run (a rewrite of a table over
   * archive.max_rewrite_rows, a lock not granted): archival and restore refuse until they are made.
   */
  archiveChangesLeft: string[];
  /**
   * The foreign keys archival relies on that are missing or not enforced, each with what to run:
   * archival refuses until they are fixed (detection, restore and migrate do not need them).
   */
  archivalKeyProblems: string[];
}

export async function followLiveTables(
  client: pg.PoolClient,
  options: ArchiveTableOptions = DEFAULT_ARCHIVE_TABLE_OPTIONS,
): Promise<ArchiveTablesResult> {
  const result: ArchiveTablesResult = { archiveChanges: [], archiveChangesLeft: [], archivalKeyProblems: [] };
  if (!(await canFollowLiveTables(client))) return result; // before 0030 and this build's files
  const problems: string[] = [];
  for (const pair of await archivePairs(client)) {
    if (!pair.present) {
      problems.push(`table ${pair.live_table} or ${pair.archive_table} is missing`);
      continue;
    }
    let changes: ArchiveColumnChange[];
    try {
      changes = await followWithRetries(client, pair, options);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'TL001') {
        problems.push((err as Error).message);
        continue;
      }
      if (code === '55P03') {
        const left = await lockNotGranted(client, pair, options);
        if (left !== null) result.archiveChangesLeft.push(left);
        continue;
      }
      throw err;
    }
    for (const c of changes) {
      if (c.applied) result.archiveChanges.push(`${pair.archive_table}.${c.column_name}: ${c.change}`);
      else result.archiveChangesLeft.push(rewriteLeft(pair, c, options));
    }
  }
  const keys = (await archivalKeyProblems(client)) ?? [];
  result.archivalKeyProblems = keys.map(
    (k) => `archival refuses until the foreign key ${k.foreign_key} is fixed: ${k.problem}`,
  );
  if (problems.length > 0) {
    throw new EngineSchemaError(
      'the archive tables cannot follow the live tables (migrations are applied; archival and restore refuse until this is fixed)',
      [
        ...problems,
        'change the archive column(s) by hand to a type that holds every live value, then run migrate again',
        ...result.archiveChangesLeft,
        ...result.archivalKeyProblems,
      ],
    );
  }
  return result;
}

async function followWithRetries(
  client: pg.PoolClient,
  pair: ArchivePair,
  options: ArchiveTableOptions,
): Promise<ArchiveColumnChange[]> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await followLiveTable(client, {
        pair,
        maxRewriteRows: options.maxRewriteRows,
        lockTimeoutMs: options.lockTimeoutMs,
      });
    } catch (err) {
      if ((err as { code?: string }).code !== '55P03' || attempt >= LOCK_ATTEMPTS) throw err;
      await sleep(PAUSE_BETWEEN_ATTEMPTS_MS);
    }
  }
}

function rewriteLeft(pair: ArchivePair, c: ArchiveColumnChange, options: ArchiveTableOptions): string {
  return (
    `${pair.archive_table}.${c.column_name}: ${c.change} rewrites the table, which has more than ` +
    `${options.maxRewriteRows} rows (archive.max_rewrite_rows), so it was not made; archival and restore ` +
    'refuse until it is. In a maintenance window run `tasker-lifecycle migrate --allow-archive-rewrites` ' +
    `(it holds ${pair.archive_table} ACCESS EXCLUSIVE while it rewrites; the live tables are not touched), ` +
    `or run: ${c.statement}`
  );
}

async function lockNotGranted(
  client: pg.PoolClient,
  pair: ArchivePair,
  options: ArchiveTableOptions,
): Promise<string | null> {
  const pending = (await archiveDifferences(client))
    .filter((d) => d.archive_table === pair.archive_table && d.change !== null)
    .map((d) => `${d.column_name}: ${d.change}`);
  if (pending.length === 0) return null; // another migrate made the changes meanwhile
  return (
    `${pair.archive_table} was not changed (${pending.join(', ')}): its lock was not ` +
    `granted within ${options.lockTimeoutMs} ms (archive.alter_lock_timeout_ms) in ${LOCK_ATTEMPTS} tries, ` +
    'because another session is using the table (an archival batch, a restore, a read of the archive); ' +
    'archival and restore refuse until it is changed: run `tasker-lifecycle migrate` again'
  );
}
