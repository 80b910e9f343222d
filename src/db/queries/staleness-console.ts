import type { Db } from '../pool.ts';

/**
 * The console's staleness page, from v_task_staleness_monitoring (in-flight tasks through the
 * current-transition index, as `status` reads it): health per template, and the in-flight tasks
 * that are not stale yet but closest to being so. The view measures against the database's now().
 */

export interface TemplateHealth {
  namespace_name: string;
  task_name: string;
  healthy: number;
  warning: number;
  stale: number;
  min_minutes_until_stale: number | null;
}

/** Health counts per template (at most `limit` templates, those with the most stale tasks first). */
export async function healthByTemplate(db: Db, limit: number): Promise<TemplateHealth[]> {
  const { rows } = await db.query<TemplateHealth>(
    `SELECT namespace_name, task_name,
            count(*) FILTER (WHERE health_status = 'healthy')::integer AS healthy,
            count(*) FILTER (WHERE health_status = 'warning')::integer AS warning,
            count(*) FILTER (WHERE health_status = 'stale')::integer AS stale,
            min(minutes_until_stale) FILTER (WHERE health_status <> 'stale') AS min_minutes_until_stale
       FROM v_task_staleness_monitoring
      GROUP BY namespace_name, task_name
      ORDER BY stale DESC, warning DESC, namespace_name, task_name
      LIMIT $1`,
    [limit],
  );
  return rows;
}

export interface NearThresholdTask {
  task_uuid: string;
  namespace_name: string;
  task_name: string;
  current_state: string;
  time_in_state_minutes: number;
  staleness_threshold_minutes: number;
  threshold_percentage: number;
  minutes_until_stale: number;
  health_status: string;
}

/** In-flight tasks not yet stale, nearest their threshold first (at most `limit`). */
export async function tasksNearestThreshold(db: Db, limit: number): Promise<NearThresholdTask[]> {
  const { rows } = await db.query<NearThresholdTask>(
    `SELECT task_uuid, namespace_name, task_name, current_state, time_in_state_minutes, staleness_threshold_minutes,
            threshold_percentage, minutes_until_stale, health_status
       FROM v_task_staleness_monitoring
      WHERE health_status <> 'stale'
      ORDER BY minutes_until_stale, task_uuid
      LIMIT $1`,
    [limit],
  );
  return rows;
}
