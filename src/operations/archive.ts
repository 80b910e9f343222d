import type pg from 'pg';
import { withTransaction } from '../db/pool.ts';
import { restoreArchivedTask as restoreArchivedRows } from '../db/queries/archive.ts';
import { type Actor, insertAudit } from '../db/queries/audit.ts';

/**
 * What an operator does to the archive, for the API, the console and the CLI (`restore`) alike:
 * move one archived task graph back, in one transaction with its audit row.
 */

export interface RestoreArchivedTaskParams {
  taskUuid: string;
  actor: Actor;
  now: Date;
}

export type RestoredGraph = Awaited<ReturnType<typeof restoreArchivedRows>> & { task_uuid: string };

/** Moves one archived task graph back to the live tables (NotFoundError when it is not archived). */
export async function restoreArchivedTask(
  pool: pg.Pool,
  p: RestoreArchivedTaskParams,
): Promise<RestoredGraph> {
  return withTransaction(pool, async (client) => {
    const restored = await restoreArchivedRows(client, p.taskUuid);
    await insertAudit(client, {
      at: p.now,
      actor: p.actor,
      action: 'archive.restore',
      targetKind: 'task',
      targetId: p.taskUuid,
      before: { location: 'archive' },
      after: { location: 'live', ...restored },
    });
    return { task_uuid: p.taskUuid, ...restored };
  });
}
