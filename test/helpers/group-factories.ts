import type { Db } from '../../src/db/pool.ts';
import { enrichEntries } from '../../src/db/queries/dlq-enrichment.ts';
import { defaultLimits } from './enrichment-factories.ts';
import {
  hoursBefore,
  insertDlqEntry,
  insertEdge,
  insertStep,
  insertTask,
  minutesBefore,
  NOW,
  type Template,
} from './factories.ts';

/**
 * Investigations with a cause, for the grouping tests (issue 27): a task stuck with one failed
 * step that blocks the next, and its entry; enriched, they share a group with every entry whose
 * step, error (up to its masked parts), template, reason and state are the same.
 */

export interface FailingEntryOptions {
  template: Template;
  /** The failed step's name (default charge). */
  step?: string;
  /** The failed step's results.error (default a PaymentError "card declined for order 4411"). */
  error?: unknown;
  reason?: string;
  state?: string;
  /** Minutes before `at` the entry was opened (default 30). */
  minutesAgo?: number;
  /** The reference time (default NOW). */
  at?: Date;
  status?: string;
}

/**
 * A task stuck with one failed step (`step`, 3/3 attempts, results.error = `error`) that blocks a
 * pending "ship" step, and its investigation (pending unless `status` says otherwise).
 */
export async function failingEntry(db: Db, o: FailingEntryOptions): Promise<{ task: string; entry: string }> {
  const at = o.at ?? NOW;
  const task = await insertTask(db, {
    template: o.template,
    state: 'steps_in_process',
    enteredAt: hoursBefore(at, 3),
  });
  const failed = await insertStep(db, {
    task,
    name: o.step ?? 'charge',
    state: 'error',
    attempts: 3,
    maxAttempts: 3,
    results: {
      success: false,
      error: o.error ?? { message: 'card declined for order 4411', error_type: 'PaymentError' },
    },
  });
  const next = await insertStep(db, { task, name: 'ship', state: 'pending' });
  await insertEdge(db, failed, next);
  const entry = await insertDlqEntry(db, {
    task,
    reason: o.reason ?? 'max_retries_exceeded',
    state: o.state ?? 'steps_in_process',
    status: o.status,
    at: minutesBefore(at, o.minutesAgo ?? 30),
    namespace: o.template.namespace,
    taskName: o.template.name,
  });
  return { task, entry };
}

/** Enriches the entries (as the job does, at `at`), so that each gets its fingerprint. */
export async function enrichAll(db: Db, entries: readonly string[], at: Date = NOW): Promise<void> {
  for (let i = 0; i < entries.length; i += 500) {
    const rows = await enrichEntries(db, entries.slice(i, i + 500), defaultLimits({ now: at }));
    const notEnriched = rows.filter((r) => r.outcome !== 'enriched');
    if (notEnriched.length > 0) throw new Error(`not enriched: ${JSON.stringify(notEnriched)}`);
  }
}

/** The entry's failure fingerprint (null until enriched). */
export async function fingerprintOf(db: Db, entry: string): Promise<string | null> {
  const { rows } = await db.query<{ fp: string | null }>(
    'SELECT failure_fingerprint AS fp FROM tasker_tasks_dlq WHERE dlq_entry_uuid = $1',
    [entry],
  );
  return rows[0]?.fp ?? null;
}
