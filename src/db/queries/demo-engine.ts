import type { Db } from '../pool.ts';

/**
 * A stand-in for the workflow engine, for `npm start`'s demo: it creates templates and tasks and
 * moves them through their states the way tasker-core would (transitions through
 * transition_task_state_atomic), so that detection, investigations and archival have something
 * to do. Not used by the jobs.
 */

export interface DemoTemplate {
  named_task_uuid: string;
  name: string;
}

export async function ensureDemoTemplates(db: Db): Promise<DemoTemplate[]> {
  const { rows } = await db.query<DemoTemplate>(
    `WITH ns AS (
       INSERT INTO tasker_task_namespaces (name, description) VALUES ('demo', 'npm start demo workload')
       ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING task_namespace_uuid),
     steps AS (
       INSERT INTO tasker_named_steps (name) VALUES ('fetch'), ('transform'), ('store')
       ON CONFLICT (name) DO NOTHING)
     INSERT INTO tasker_named_tasks (task_namespace_uuid, name, configuration)
     SELECT ns.task_namespace_uuid, t.name, t.configuration::jsonb
       FROM ns, (VALUES
         ('order_fulfilment', '{"lifecycle": {"max_waiting_for_dependencies_minutes": 2, "max_waiting_for_retry_minutes": 1, "max_steps_in_process_minutes": 2, "max_duration_minutes": 10}}'),
         ('invoice_export', '{"lifecycle": {"max_waiting_for_retry_minutes": 1, "max_steps_in_process_minutes": 1, "staleness_action": "dlq"}}'),
         ('nightly_report', '{"lifecycle": {"max_steps_in_process_minutes": 3, "max_waiting_for_retry_minutes": "soon"}}')
       ) AS t(name, configuration)
     ON CONFLICT (task_namespace_uuid, name, version) DO UPDATE SET configuration = EXCLUDED.configuration
     RETURNING named_task_uuid, name`,
  );
  return rows;
}

/** A new task with three steps, entering `state` at `at` (created `ageMinutes` before that). */
export async function createDemoTask(
  db: Db,
  template: string,
  state: string,
  at: Date,
  ageMinutes = 0,
): Promise<string> {
  const { rows } = await db.query<{ task_uuid: string }>(
    `WITH task AS (
       INSERT INTO tasker_tasks (named_task_uuid, identity_hash, initiator, source_system, created_at, updated_at, requested_at)
       VALUES ($1, md5(random()::text), 'demo', 'npm-start', $2::timestamptz - make_interval(mins => $4), $2, $2)
       RETURNING task_uuid, created_at),
     transitions AS (
       INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
       SELECT task_uuid, 'pending', NULL, 0, $3 = 'pending', created_at, created_at FROM task
       UNION ALL
       SELECT task_uuid, $3, 'pending', 1, true, $2, $2 FROM task WHERE $3 <> 'pending'),
     steps AS (
       INSERT INTO tasker_workflow_steps (task_uuid, named_step_uuid, attempts, max_attempts, created_at, updated_at)
       SELECT task.task_uuid, s.named_step_uuid, 0, 3, $2, $2
         FROM task, tasker_named_steps s WHERE s.name IN ('fetch', 'transform', 'store')
       RETURNING workflow_step_uuid)
     INSERT INTO tasker_workflow_step_transitions (workflow_step_uuid, to_state, sort_key, most_recent, created_at, updated_at)
     SELECT workflow_step_uuid, 'pending', 0, true, $2, $2 FROM steps
     RETURNING (SELECT task_uuid FROM task)`,
    [template, at, state, ageMinutes],
  );
  return rows[0]!.task_uuid;
}

/** In-flight demo tasks the engine still moves (not the ones it left stuck). */
export async function movableDemoTasks(
  db: Db,
  limit: number,
): Promise<Array<{ task_uuid: string; state: string }>> {
  const { rows } = await db.query(
    `SELECT tr.task_uuid, tr.to_state AS state
       FROM tasker_task_transitions tr
       JOIN tasker_tasks t ON t.task_uuid = tr.task_uuid
      WHERE tr.most_recent AND tr.to_state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
        AND t.initiator = 'demo' AND NOT coalesce((t.tags ->> 'stuck')::boolean, false)
      ORDER BY tr.created_at LIMIT $1`,
    [limit],
  );
  return rows;
}

export async function markStuck(db: Db, taskUuid: string): Promise<void> {
  await db.query(`UPDATE tasker_tasks SET tags = '{"stuck": true}' WHERE task_uuid = $1`, [taskUuid]);
}

export async function transition(db: Db, taskUuid: string, from: string, to: string): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>(
    `SELECT transition_task_state_atomic($1, $2, $3, NULL, '{"source": "demo"}') AS ok`,
    [taskUuid, from, to],
  );
  return rows[0]!.ok;
}

/** Finished tasks from long ago, for archival to find. */
export async function seedFinishedTasks(
  db: Db,
  template: string,
  count: number,
  daysAgo: number,
): Promise<void> {
  await db.query(
    `WITH task AS (
       INSERT INTO tasker_tasks (named_task_uuid, identity_hash, initiator, complete, created_at, updated_at, requested_at)
       SELECT $1, md5(random()::text), 'demo-history', true, now() - make_interval(days => $3) - interval '1 hour', now(), now()
         FROM generate_series(1, $2)
       RETURNING task_uuid, created_at)
     INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
     SELECT task_uuid, 'pending', NULL, 0, false, created_at, created_at FROM task
     UNION ALL
     SELECT task_uuid, 'complete', 'pending', 1, true, created_at + interval '1 hour', created_at + interval '1 hour' FROM task`,
    [template, count, daysAgo],
  );
}
