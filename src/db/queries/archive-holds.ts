import type { Db } from '../pool.ts';

/**
 * Queries on tasker_archive_holds (migrations/0150_archive_holds.sql): tasks an operator restored
 * and holds out of archival until a time (archive_completed_tasks passes over them until then).
 */

export interface ArchiveHold {
  task_uuid: string;
  held_until: Date;
  held_by: string;
  reason: string;
  created_at: Date;
}

const COLUMNS = 'task_uuid, held_until, held_by, reason, created_at';

/** Holds a task until heldUntil; replaces an earlier hold of the task (primary key). */
export async function upsertHold(
  db: Db,
  h: { taskUuid: string; heldUntil: Date; heldBy: string; reason: string; now: Date },
): Promise<ArchiveHold> {
  const { rows } = await db.query<ArchiveHold>(
    `INSERT INTO tasker_archive_holds (task_uuid, held_until, held_by, reason, created_at)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (task_uuid) DO UPDATE
       SET held_until = EXCLUDED.held_until, held_by = EXCLUDED.held_by, reason = EXCLUDED.reason,
           created_at = EXCLUDED.created_at
     RETURNING ${COLUMNS}`,
    [h.taskUuid, h.heldUntil, h.heldBy, h.reason, h.now],
  );
  return rows[0]!;
}

/** The task's hold, if it has one in force at `now` (primary key). */
export async function holdOf(db: Db, taskUuid: string, now: Date): Promise<ArchiveHold | undefined> {
  const { rows } = await db.query<ArchiveHold>(
    `SELECT ${COLUMNS} FROM tasker_archive_holds WHERE task_uuid = $1 AND held_until > $2`,
    [taskUuid, now],
  );
  return rows[0];
}

/** Holds in force at `now`, ending soonest first, at most `limit` (idx_archive_holds_held_until). */
export async function holdsInForce(db: Db, now: Date, limit: number): Promise<ArchiveHold[]> {
  const { rows } = await db.query<ArchiveHold>(
    `SELECT ${COLUMNS} FROM tasker_archive_holds WHERE held_until > $1 ORDER BY held_until LIMIT $2`,
    [now, limit],
  );
  return rows;
}
