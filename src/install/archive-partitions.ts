import {
  addAdoptionCheck,
  addArchivePartition,
  adoptArchiveTable,
  adoptionBound,
  archiveTableShapes,
  buildAdoptionKey,
  canPartitionArchive,
  dropAdoptionKey,
  recountRollup,
  rollupStarted,
  validateAdoptionCheck,
} from '../db/queries/archive-partitions.ts';
import { monthsFrom } from '../domain/archive-months.ts';
import type { LockSafeDdl } from './lock-safe-ddl.ts';

/**
 * `migrate`'s part of the archive's monthly partitions (migrations/0210, docs/archival.md):
 *
 * 1. Adopting an unpartitioned archive without rewriting it. A bound B is chosen once (the first of
 *    the month after now and after the newest archived task) and, per table, each in a transaction
 *    of its own under [migrate] lock_timeout_ms with retries:
 *    a. CHECK (archived_at < B) NOT VALID is added (ACCESS EXCLUSIVE for a catalog change);
 *    b. it is validated (one scan under SHARE UPDATE EXCLUSIVE: archival, restore and reads go on);
 *    c. UNIQUE (<key>, archived_at) is built CONCURRENTLY (an INVALID one left by a failed build is
 *       dropped concurrently first).
 *    Then one transaction counts the archive into the rollup (SHARE on the six tables: archival and
 *    restore wait for that count, reads and the engine do not) and, for each table, renames it, makes
 *    a partitioned parent with its name and attaches the old table for [MINVALUE, B): the validated
 *    CHECK proves the range, so nothing is scanned, and the old table keeps its files (relfilenode).
 *    A migrate that stops anywhere is finished by the next (each step looks at the catalog first).
 * 2. Partitions ahead of need: for the current month and the next PARTITIONS_AHEAD months (UTC), a
 *    partition of each table where none covers it, each in a short transaction of its own: made
 *    standalone, then attached (SHARE UPDATE EXCLUSIVE on the parent, which no archival batch,
 *    restore or read waits on). The archival job does the same before its first batch.
 */

/** Months after the current one that `migrate` makes partitions for. */
export const PARTITIONS_AHEAD = 2;

export interface ArchivePartitionsResult {
  /** What was done ("adopted tasker_tasks_archive up to ...", "made tasker_tasks_archive_p202701"). */
  partitionChanges: string[];
}

export async function partitionArchiveTables(ddl: LockSafeDdl): Promise<ArchivePartitionsResult> {
  const client = ddl.client;
  const changes: string[] = [];
  if (!(await canPartitionArchive(client))) return { partitionChanges: changes };
  let shapes = await archiveTableShapes(client);
  if (shapes.some((s) => s.relkind !== 'p') || !(await rollupStarted(client))) {
    const bound = await ddl.transaction('choosing the archive adoption bound', () => adoptionBound(client));
    for (const s of shapes.filter((t) => t.relkind !== 'p')) {
      if (s.range_check === 'absent')
        await ddl.transaction(`adding ${s.archive_table}_adopt_range`, () =>
          addAdoptionCheck(client, s.archive_table, bound),
        );
      if (s.range_check !== 'valid')
        await ddl.transaction(`validating ${s.archive_table}_adopt_range`, () =>
          validateAdoptionCheck(client, s.archive_table),
        );
      if (s.adopt_key === 'invalid')
        await ddl.retrying(
          `dropping the invalid ${s.archive_table}_adopt_key`,
          () => ddl.outsideTransaction(() => dropAdoptionKey(client, s.archive_table)),
          'Nothing was changed.',
        );
      if (s.adopt_key !== 'valid')
        await ddl.retrying(
          `building ${s.archive_table}_adopt_key`,
          async () => {
            await ddl.noLongTransactionOn(s.archive_table);
            await ddl.outsideTransaction(() => buildAdoptionKey(client, s.archive_table, s.key_columns));
          },
          'A failed build leaves an INVALID index, which the next migrate drops and builds again.',
        );
    }
    shapes = await archiveTableShapes(client);
    const tasks = await ddl.transaction('adopting the archive tables as monthly partitions', async () => {
      const counted = await recountRollup(client);
      for (const s of shapes.filter((t) => t.relkind !== 'p'))
        await adoptArchiveTable(client, s.archive_table, bound);
      return counted;
    });
    changes.push(
      `adopted the archive tables as partitions for everything archived before ${bound.toISOString()} (${tasks} archived tasks counted into the rollup)`,
    );
  }
  for (const name of await addPartitionsAhead(ddl, new Date(), PARTITIONS_AHEAD))
    changes.push(`made ${name}`);
  return { partitionChanges: changes };
}

/**
 * A partition of each archive table for the month holding `now` and the `ahead` months after it,
 * where none covers it; each in a short transaction under [migrate] lock_timeout_ms. Names made.
 */
export async function addPartitionsAhead(ddl: LockSafeDdl, now: Date, ahead: number): Promise<string[]> {
  const made: string[] = [];
  for (const month of monthsFrom(now, ahead)) {
    for (const s of await archiveTableShapes(ddl.client)) {
      if (s.relkind !== 'p') continue;
      const name = await ddl.transaction(
        `making the ${month.toISOString().slice(0, 7)} partition of ${s.archive_table}`,
        () => addArchivePartition(ddl.client, s.archive_table, month),
      );
      if (name !== null) made.push(name);
    }
  }
  return made;
}
