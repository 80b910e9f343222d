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

/** The kinds of trouble the demo engine gets into, each ending in its own kind of investigation. */
export type DemoTrouble = 'retries_exhausted' | 'dependency_cycle' | 'missing_worker';

/**
 * A task stuck since `at` (created 10 minutes before) with steps fetch -> transform -> store that
 * show one kind of trouble, the way the engine leaves them: retries_exhausted (transform failed
 * 3 of 3 attempts with an error in its results; detection opens max_retries_exceeded), dependency
 * cycle (store also feeds transform back: dependency_cycle_detected), missing_worker (steps handed
 * out, enqueued, and never started: worker_unavailable). Marked stuck, so the demo leaves it.
 */
export async function createTroubledDemoTask(
  db: Db,
  template: string,
  trouble: DemoTrouble,
  at: Date,
): Promise<string> {
  const taskState = trouble === 'dependency_cycle' ? 'waiting_for_dependencies' : 'steps_in_process';
  const steps: Record<DemoTrouble, Array<[string, string, number, unknown]>> = {
    retries_exhausted: [
      ['fetch', 'complete', 1, { rows: 120 }],
      [
        'transform',
        'error',
        3,
        {
          success: false,
          error: {
            message: 'upstream pricing service answered 503 three times',
            error_type: 'UpstreamUnavailable',
          },
        },
      ],
      ['store', 'pending', 0, null],
    ],
    dependency_cycle: [
      ['fetch', 'complete', 1, { rows: 40 }],
      ['transform', 'pending', 0, null],
      ['store', 'pending', 0, null],
    ],
    missing_worker: [
      ['fetch', 'enqueued', 0, null],
      ['transform', 'pending', 0, null],
      ['store', 'pending', 0, null],
    ],
  };
  const edges: Array<[string, string]> = [
    ['fetch', 'transform'],
    ['transform', 'store'],
    ...(trouble === 'dependency_cycle' ? [['store', 'transform'] as [string, string]] : []),
  ];
  const { rows } = await db.query<{ task_uuid: string }>(
    `WITH task AS (
       INSERT INTO tasker_tasks (named_task_uuid, identity_hash, initiator, source_system, tags, created_at, updated_at, requested_at)
       VALUES ($1, md5(random()::text), 'demo', 'npm-start', '{"stuck": true}', $2::timestamptz - interval '10 minutes', $2, $2)
       RETURNING task_uuid, created_at),
     transitions AS (
       INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
       SELECT task_uuid, 'pending', NULL, 0, false, created_at, created_at FROM task
       UNION ALL
       SELECT task_uuid, $3, 'pending', 1, true, $2, $2 FROM task),
     spec AS (
       SELECT s.name, s.state, s.attempts, s.results, s.ord
         FROM jsonb_to_recordset($4::jsonb) AS s(name text, state text, attempts integer, results jsonb, ord integer)),
     steps AS (
       INSERT INTO tasker_workflow_steps (task_uuid, named_step_uuid, attempts, max_attempts, results, last_attempted_at,
                                          created_at, updated_at)
       SELECT task.task_uuid, n.named_step_uuid, spec.attempts, 3, spec.results,
              CASE WHEN spec.attempts > 0 THEN $2::timestamptz - interval '2 minutes' END,
              task.created_at, $2
         FROM task CROSS JOIN spec JOIN tasker_named_steps n ON n.name = spec.name
       RETURNING workflow_step_uuid, named_step_uuid),
     named AS (
       SELECT st.workflow_step_uuid, n.name, spec.state, spec.ord
         FROM steps st JOIN tasker_named_steps n ON n.named_step_uuid = st.named_step_uuid JOIN spec ON spec.name = n.name),
     step_transitions AS (
       INSERT INTO tasker_workflow_step_transitions (workflow_step_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
       SELECT workflow_step_uuid, 'pending', NULL, 0, state = 'pending', $2::timestamptz - interval '9 minutes', $2::timestamptz - interval '9 minutes'
         FROM named
       UNION ALL
       SELECT workflow_step_uuid, state, 'pending', 1, true, $2::timestamptz - interval '2 minutes' + ord * interval '1 second',
              $2::timestamptz - interval '2 minutes' + ord * interval '1 second'
         FROM named WHERE state <> 'pending')
     INSERT INTO tasker_workflow_step_edges (from_step_uuid, to_step_uuid, name, created_at, updated_at)
     SELECT a.workflow_step_uuid, b.workflow_step_uuid, e.from_name || ' feeds ' || e.to_name, $2, $2
       FROM jsonb_to_recordset($5::jsonb) AS e(from_name text, to_name text)
       JOIN named a ON a.name = e.from_name JOIN named b ON b.name = e.to_name
     RETURNING (SELECT task_uuid FROM task)`,
    [
      template,
      at,
      taskState,
      JSON.stringify(
        steps[trouble].map(([name, state, attempts, results], ord) => ({
          name,
          state,
          attempts,
          results,
          ord,
        })),
      ),
      JSON.stringify(edges.map(([from_name, to_name]) => ({ from_name, to_name }))),
    ],
  );
  return rows[0]!.task_uuid;
}
