import type pg from 'pg';
import { withTransaction } from '../db/pool.ts';
import { currentStateOf, restoreArchivedTask as restoreArchivedRows } from '../db/queries/archive.ts';
import { upsertHold } from '../db/queries/archive-holds.ts';
import { type Actor, insertAudit } from '../db/queries/audit.ts';
import { minutesText } from '../domain/why-stale.ts';
import { ArchiveRefusedError } from '../errors.ts';
import { ConflictError } from './errors.ts';

/**
 * What an operator does to the archive, for the API, the console and the CLI (`restore`) alike:
 * move one archived task graph back, in one transaction with its audit row, and (when asked) hold
 * it out of archival for a while, since a finished task past retention would otherwise be archived
 * again by the next archival run.
 */

/** The longest hold a restore may set. */
export const MAX_HOLD_DAYS = 365;

/** Final states: archival takes a task once it has been in one of these past the retention. */
const FINAL_STATES = new Set(['complete', 'error', 'cancelled', 'resolved_manually']);

export interface RestoreArchivedTaskParams {
  taskUuid: string;
  /** Hold it out of archival for this many days from now (1..MAX_HOLD_DAYS); undefined: no hold. */
  holdDays?: number | undefined;
  /** The retention archival applies (archive.retention_days), to say when it would be archived again. */
  retentionDays: number;
  actor: Actor;
  now: Date;
}

export type RestoredGraph = Awaited<ReturnType<typeof restoreArchivedRows>> & {
  task_uuid: string;
  /** Its current state, and when it entered it. */
  state: string | null;
  state_entered_at: Date | null;
  /** Finished, and in its final state longer than the retention: archival would take it at once. */
  past_retention: boolean;
  /** When the hold ends, or null when it is not held. */
  held_until: Date | null;
  /** What archival will do with it, in words. */
  archival: string;
};

/** What archival will do with a restored task, in words. */
export function archivalOutlook(
  t: { state: string | null; entered_at: Date | null; held_until: Date | null },
  retentionDays: number,
  now: Date,
): { past_retention: boolean; text: string } {
  if (t.state === null || t.entered_at === null || !FINAL_STATES.has(t.state)) {
    return {
      past_retention: false,
      text: `it is not finished (${t.state ?? 'no state'}): archival leaves it alone until it is`,
    };
  }
  const eligibleAt = new Date(t.entered_at.getTime() + retentionDays * 86_400_000);
  const past = eligibleAt.getTime() <= now.getTime();
  const finishedAgo = minutesText(Math.floor((now.getTime() - t.entered_at.getTime()) / 60_000));
  if (t.held_until !== null && t.held_until.getTime() > now.getTime()) {
    return {
      past_retention: past,
      text: `held out of archival until ${t.held_until.toISOString()}${past ? '; the first archival run after that archives it again' : ''}`,
    };
  }
  return past
    ? {
        past_retention: true,
        text: `it finished ${finishedAgo} ago (${t.state}), past the retention of ${retentionDays} days: the next archival run archives it again`,
      }
    : {
        past_retention: false,
        text: `archival takes it again from ${eligibleAt.toISOString()} (${retentionDays} days after it finished)`,
      };
}

/**
 * Moves one archived task graph back to the live tables (NotFoundError when it is not archived),
 * and holds it out of archival when asked, with one audit row for both. A restore the database
 * refuses (the archive tables differ from the live ones: run `migrate`; or a value would be
 * dropped) is a ConflictError naming what to run (409 / exit 2), with nothing moved or audited.
 */
export async function restoreArchivedTask(
  pool: pg.Pool,
  p: RestoreArchivedTaskParams,
): Promise<RestoredGraph> {
  return withTransaction(pool, async (client) => {
    const restored = await restoreArchivedRows(client, p.taskUuid).catch((err: unknown) => {
      if (err instanceof ArchiveRefusedError)
        throw new ConflictError(err.message, { sqlstate: err.sqlstate, task_uuid: p.taskUuid });
      throw err;
    });
    const current = await currentStateOf(client, p.taskUuid);
    const hold =
      p.holdDays === undefined
        ? undefined
        : await upsertHold(client, {
            taskUuid: p.taskUuid,
            heldUntil: new Date(p.now.getTime() + p.holdDays * 86_400_000),
            heldBy: p.actor.name,
            reason: `restored by ${p.actor.name}`,
            now: p.now,
          });
    const outlook = archivalOutlook(
      {
        state: current?.state ?? null,
        entered_at: current?.entered_at ?? null,
        held_until: hold?.held_until ?? null,
      },
      p.retentionDays,
      p.now,
    );
    await insertAudit(client, {
      at: p.now,
      actor: p.actor,
      action: 'archive.restore',
      targetKind: 'task',
      targetId: p.taskUuid,
      before: { location: 'archive' },
      after: {
        location: 'live',
        ...restored,
        ...(hold ? { held_until: hold.held_until } : {}),
      },
      details: { archival: outlook.text, past_retention: outlook.past_retention },
    });
    return {
      task_uuid: p.taskUuid,
      ...restored,
      state: current?.state ?? null,
      state_entered_at: current?.entered_at ?? null,
      past_retention: outlook.past_retention,
      held_until: hold?.held_until ?? null,
      archival: outlook.text,
    };
  });
}
