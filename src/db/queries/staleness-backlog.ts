import type { Db } from '../pool.ts';

/**
 * Stale tasks still waiting for detection, read cheaply enough for every metrics scrape: a stale
 * storm leaves a million of them, and counting a million is not cheap. So this reads at most
 * `cap` entries of idx_task_transitions_in_flight (current transitions of in-flight tasks, keyed
 * by when the state was entered), the oldest first, from the range detection itself starts from:
 * entered longer ago than the smallest configured state threshold. Of those it counts the tasks in
 * their state longer than that state's configured default (tasker_lifecycle_settings:
 * waiting_for_dependencies, waiting_for_retry, steps_in_process; 1440 minutes for the others).
 *
 * What it leaves out, on purpose, to stay one bounded index read: a template's own thresholds and
 * lifetimes (v_task_staleness_monitoring and `status`'s staleness line apply them, reading every
 * in-flight task). So it is the storm's size and trend, not an exact figure: it saturates at `cap`
 * (capped: true), and a template with a shorter threshold is counted from the default.
 */

/**
 * Most candidates the gauge (tasker_staleness_waiting_tasks) and `status` read: they saturate
 * here, so a scrape during a stale storm costs a bounded read, not a count of the whole storm.
 */
export const STALE_WAITING_CAP = 100_000;

export interface StaleTasksWaiting {
  /** Tasks stale by their state's default threshold, among the `cap` oldest candidates. */
  waiting: number;
  /** The candidate range held `cap` entries or more: waiting is a lower bound. */
  capped: boolean;
  /** When the oldest waiting task entered its state (null when none). */
  oldest_entered_at: Date | null;
}

const WAITING_SQL = `WITH s AS (
       SELECT waiting_for_dependencies_minutes AS wfd, waiting_for_retry_minutes AS wfr,
              steps_in_process_minutes AS sip,
              least(waiting_for_dependencies_minutes, waiting_for_retry_minutes, steps_in_process_minutes, 1440)
                AS smallest
         FROM tasker_lifecycle_settings WHERE singleton),
     candidates AS (
       SELECT tr.created_at, tr.to_state
         FROM tasker_task_transitions tr
        WHERE tr.most_recent = true
          AND tr.to_state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
          AND tr.created_at < (SELECT $1::timestamptz - make_interval(mins => s.smallest) FROM s)
        ORDER BY tr.created_at
        LIMIT $2)
     SELECT count(*) FILTER (WHERE c.created_at < $1::timestamptz - make_interval(mins =>
                               CASE c.to_state WHEN 'waiting_for_dependencies' THEN s.wfd
                                               WHEN 'waiting_for_retry' THEN s.wfr
                                               WHEN 'steps_in_process' THEN s.sip
                                               ELSE 1440 END))::integer AS waiting,
            count(*) >= $2 AS capped,
            min(c.created_at) FILTER (WHERE c.created_at < $1::timestamptz - make_interval(mins =>
                               CASE c.to_state WHEN 'waiting_for_dependencies' THEN s.wfd
                                               WHEN 'waiting_for_retry' THEN s.wfr
                                               WHEN 'steps_in_process' THEN s.sip
                                               ELSE 1440 END)) AS oldest_entered_at
       FROM candidates c CROSS JOIN s`;

/** Stale tasks waiting for detection at `now`, reading at most `cap` index entries (see above). */
export async function staleTasksWaiting(db: Db, now: Date, cap: number): Promise<StaleTasksWaiting> {
  const { rows } = await db.query<StaleTasksWaiting>(WAITING_SQL, [now, cap]);
  return rows[0] ?? { waiting: 0, capped: false, oldest_entered_at: null };
}

/** EXPLAIN (ANALYZE, BUFFERS) of staleTasksWaiting, to check what it reads. */
export async function staleTasksWaitingPlan(db: Db, now: Date, cap: number): Promise<string> {
  const { rows } = await db.query<{ 'QUERY PLAN': string }>(
    `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) ${WAITING_SQL}`,
    [now, cap],
  );
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}
