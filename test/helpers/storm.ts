import type { Db } from '../../src/db/pool.ts';
import { insertDlqEntry, insertTask, insertTemplate, minutesBefore, type Template } from './factories.ts';

/**
 * A stale storm's rows, placed either side of what each backlog counts, for the tests of `status`,
 * the gauges and the console's storm panel (which must all show the same figures):
 *
 *   stale tasks   3 in steps_in_process for 120, 121 and 122 minutes (past any default threshold
 *                 of the test settings), 1 for 1 minute (under every one): 3 waiting, the longest
 *                 122 minutes;
 *   entries       2 never enriched (opened 30 and 20 minutes ago), 1 failing with its next attempt
 *                 due (a minute ago), 1 failing with its next attempt in 5 minutes, 1 given up, 1
 *                 enriched after 2 failed attempts: 2 awaiting (oldest 30 minutes), 2 retrying (1
 *                 due), 1 given up;
 *   runs          600 tasks detected 2 minutes ago; 200 and 100 entries enriched in the last minute
 *                 (one run still going); 5,000 enriched 6 minutes ago, before the 5-minute window.
 *
 * Enrichment states are written as markEnrichmentFailed and enrichment write them (the record in
 * task_snapshot.enrichment, its next attempt also in enrichment_next_attempt_at).
 */

export const STORM_ERROR = { code: '57014', message: 'canceling statement due to statement timeout' };

export interface StormRows {
  template: Template;
  entries: {
    awaiting: string[];
    retryingDue: string;
    retryingLater: string;
    givenUp: string;
    enriched: string;
  };
  /** When the retrying-later entry is tried again. */
  nextAttemptAt: Date;
}

export async function placeStorm(db: Db, now: Date): Promise<StormRows> {
  const template = await insertTemplate(db, { namespace: 'storm', name: `storm_${now.getTime()}` });
  for (let i = 0; i < 3; i++)
    await insertTask(db, { template, state: 'steps_in_process', enteredAt: minutesBefore(now, 120 + i) });
  await insertTask(db, { template, state: 'steps_in_process', enteredAt: minutesBefore(now, 1) });

  const entry = async (minutesAgo: number, enrichment: unknown, nextAttemptAt: Date | 'infinity' | null) => {
    const task = await insertTask(db, {
      template,
      state: 'error',
      enteredAt: minutesBefore(now, minutesAgo),
    });
    const id = await insertDlqEntry(db, {
      task,
      reason: 'staleness_timeout',
      at: minutesBefore(now, minutesAgo),
      namespace: template.namespace,
      taskName: template.name,
    });
    await db.query(
      `UPDATE tasker_tasks_dlq SET task_snapshot = task_snapshot || coalesce($2::jsonb, '{}'),
              enrichment_next_attempt_at = $3 WHERE dlq_entry_uuid = $1`,
      [id, enrichment === null ? null : JSON.stringify(enrichment), nextAttemptAt],
    );
    return id;
  };
  const failure = (attempts: number, next: Date | null) => ({
    enrichment: {
      version: 1,
      failed: true,
      failed_at: minutesBefore(now, 3),
      error: STORM_ERROR,
      failed_attempts: attempts,
      max_attempts: 8,
      next_attempt_at: next,
      gave_up: next === null,
    },
  });
  const due = minutesBefore(now, 1);
  const nextAttemptAt = minutesBefore(now, -5);
  const rows: StormRows = {
    template,
    nextAttemptAt,
    entries: {
      awaiting: [await entry(30, null, null), await entry(20, null, null)],
      retryingDue: await entry(25, failure(1, due), due),
      retryingLater: await entry(25, failure(2, nextAttemptAt), nextAttemptAt),
      givenUp: await entry(25, failure(8, null), 'infinity'),
      enriched: await entry(
        25,
        {
          enrichment: {
            version: 1,
            enriched_at: now,
            failed_attempts: 2,
            task_found: true,
            requested_detail: 'full',
            detail_level: 'compact',
            truncated: false,
            truncated_lists: [],
            truncated_payloads: 0,
          },
          diagnosis: { summary: 'step charge is out of retries' },
        },
        null,
      ),
    },
  };
  await db.query(
    `INSERT INTO tasker_job_runs (run_id, job_name, trigger, worker, started_at, finished_at, outcome, counts)
     VALUES (gen_random_uuid(), 'tasker.detect-stale-tasks', 'schedule', 'w:1', $1::timestamptz - interval '2 minutes', $1, 'completed', '{"tasks_detected": 600}'),
            (gen_random_uuid(), 'tasker.enrich-dlq-snapshots', 'event', 'w:1', $1::timestamptz - interval '1 minute', $1, 'completed', '{"enriched": 200}'),
            (gen_random_uuid(), 'tasker.enrich-dlq-snapshots', 'event', 'w:1', $1::timestamptz - interval '30 seconds', NULL, NULL, '{"enriched": 100}'),
            (gen_random_uuid(), 'tasker.enrich-dlq-snapshots', 'event', 'w:1', $1::timestamptz - interval '6 minutes', $1, 'completed', '{"enriched": 5000}')`,
    [now],
  );
  return rows;
}
