import type { Db } from '../../src/db/pool.ts';

/**
 * The monthly rollup (migrations/0210) beside a full count of the archive, month by month, for
 * tests that check the rollup stays equal to what the archive holds after every kind of change.
 */

const COUNTED = [
  ['tasks', 'tasker_tasks_archive'],
  ['steps', 'tasker_workflow_steps_archive'],
  ['transitions', 'tasker_task_transitions_archive'],
  ['edges', 'tasker_workflow_step_edges_archive'],
  ['step_transitions', 'tasker_workflow_step_transitions_archive'],
  ['dlq_entries', 'tasker_tasks_dlq_archive'],
] as const;

export type MonthCounts = Record<string, Record<(typeof COUNTED)[number][0], number>>;

/** Rows per month (UTC, 'YYYY-MM') and table, counted over the whole archive. */
export async function fullMonthCounts(db: Db): Promise<MonthCounts> {
  const out: MonthCounts = {};
  for (const [column, table] of COUNTED) {
    const { rows } = await db.query<{ month: string; n: number }>(
      `SELECT to_char(archived_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, count(*)::int AS n FROM ${table} GROUP BY 1`,
    );
    for (const r of rows) {
      out[r.month] ??= { tasks: 0, steps: 0, transitions: 0, edges: 0, step_transitions: 0, dlq_entries: 0 };
      out[r.month]![column] = r.n;
    }
  }
  return out;
}

/** The same from tasker_archive_months (delta rows summed; months with nothing left left out). */
export async function rollupMonthCounts(db: Db): Promise<MonthCounts> {
  const { rows } = await db.query<{ month: string } & MonthCounts[string]>(
    `SELECT to_char(archive_month, 'YYYY-MM') AS month, ${COUNTED.map(([c]) => `sum(${c})::int AS ${c}`).join(', ')}
       FROM tasker_archive_months GROUP BY archive_month
     HAVING sum(tasks + steps + transitions + edges + step_transitions + dlq_entries) > 0`,
  );
  return Object.fromEntries(rows.map(({ month, ...counts }) => [month, counts]));
}

/** What v_archive_statistics said before the rollup: the whole archive aggregated, per month. */
export async function statisticsByFullAggregate(db: Db): Promise<unknown[]> {
  const { rows } = await db.query(
    `SELECT to_char(date_trunc('month', t.archived_at AT TIME ZONE 'UTC'), 'YYYY-MM') AS archive_month,
            count(*)::int AS tasks_archived, count(DISTINCT t.named_task_uuid)::int AS distinct_task_templates,
            round(avg(extract(epoch FROM tr.created_at - t.created_at) / 86400), 2)::float8 AS avg_task_lifetime_days,
            (count(*) FILTER (WHERE tr.to_state = 'complete'))::int AS completed,
            (count(*) FILTER (WHERE tr.to_state = 'error'))::int AS failed,
            (count(*) FILTER (WHERE tr.to_state = 'cancelled'))::int AS cancelled,
            (count(*) FILTER (WHERE tr.to_state = 'resolved_manually'))::int AS resolved_manually
       FROM tasker_tasks_archive t
       LEFT JOIN tasker_task_transitions_archive tr ON tr.task_uuid = t.task_uuid AND tr.most_recent = true
      GROUP BY 1 ORDER BY 1`,
  );
  return rows;
}

/** v_archive_statistics (from the rollup), in the shape statisticsByFullAggregate returns. */
export async function statisticsFromView(db: Db): Promise<unknown[]> {
  const { rows } = await db.query(
    `SELECT to_char(archive_month, 'YYYY-MM') AS archive_month, tasks_archived::int, distinct_task_templates::int,
            avg_task_lifetime_days::float8, completed::int, failed::int, cancelled::int, resolved_manually::int
       FROM v_archive_statistics ORDER BY 1`,
  );
  return rows;
}
