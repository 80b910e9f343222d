import type { Db } from '../../src/db/pool.ts';

/**
 * Whole task graphs for archival tests and the archive benchmark, inserted set-based (one statement
 * per call, generate_series), and helpers to read every row of the six live and six archive tables.
 *
 * Every column gets a value that is neither NULL nor its default, so a copy that dropped a column
 * would show. A graph: the task; 4 task transitions (pending -> steps_in_process -> evaluating_results -> the
 * final state, the last one most_recent, created at finishedAt); `steps` steps (default 5), each
 * with 3 step transitions (pending -> in_progress -> complete) and chained by steps - 1 edges
 * (step 1 -> 2 -> ...); optionally one resolved DLQ entry.
 */

export interface GraphOptions {
  named_task_uuid: string;
  /** The final (current) state; any state works, terminal or not. */
  state: string;
  /** When the newest graph entered its final state. */
  finishedAt: Date;
  /** Number of graphs (default 1). Graph i (0-based) finished i x spacingSeconds before finishedAt. */
  count?: number;
  spacingSeconds?: number;
  /** Minutes from the task's creation to finishedAt (default 60). */
  lifetimeMinutes?: number;
  /** Steps per task (default 5). */
  steps?: number;
  /** Give every n-th graph (1 = all) a resolved DLQ entry (default 0 = none). */
  resolvedDlqEvery?: number;
}

export const TABLES = [
  'tasker_tasks',
  'tasker_workflow_steps',
  'tasker_workflow_step_edges',
  'tasker_task_transitions',
  'tasker_workflow_step_transitions',
  'tasker_tasks_dlq',
] as const;
export type GraphTable = (typeof TABLES)[number];

const PRIMARY_KEY: Record<GraphTable, string> = {
  tasker_tasks: 'task_uuid',
  tasker_workflow_steps: 'workflow_step_uuid',
  tasker_workflow_step_edges: 'workflow_step_edge_uuid',
  tasker_task_transitions: 'task_transition_uuid',
  tasker_workflow_step_transitions: 'workflow_step_transition_uuid',
  tasker_tasks_dlq: 'dlq_entry_uuid',
};

/** Inserts graphs; returns their task uuids, newest (graph 0) first. */
export async function insertFinishedGraphs(db: Db, o: GraphOptions): Promise<string[]> {
  const steps = o.steps ?? 5;
  await db.query(
    `INSERT INTO tasker_named_steps (name)
     SELECT 'archive_fixture_step_' || lpad(k::text, 3, '0') FROM generate_series(1, $1) k
     ON CONFLICT (name) DO NOTHING`,
    [steps],
  );
  const { rows } = await db.query<{ task_uuids: string[] }>(
    `WITH named AS (
       SELECT array_agg(named_step_uuid ORDER BY name) AS ids
         FROM tasker_named_steps WHERE name LIKE 'archive\\_fixture\\_step\\_%'
     ),
     g AS (
       SELECT i, $3::timestamptz - make_interval(secs => i * $4::double precision) AS finished_at
         FROM generate_series(0, $2 - 1) i
     ),
     tasks AS (
       INSERT INTO tasker_tasks (named_task_uuid, complete, requested_at, completed_at, initiator, source_system,
                                 reason, tags, context, identity_hash, priority, correlation_id,
                                 parent_correlation_id, created_at, updated_at)
       SELECT $1, $5 = 'complete', g.finished_at - make_interval(mins => $6), g.finished_at, 'fixture',
              'archive-tests', 'graph ' || g.i, '["fixture"]'::jsonb, jsonb_build_object('i', g.i),
              md5(g.i::text || random()::text), 1 + g.i % 5, gen_random_uuid(), gen_random_uuid(),
              g.finished_at - make_interval(mins => $6), g.finished_at
         FROM g
       RETURNING task_uuid, created_at, updated_at AS finished_at, (context ->> 'i')::integer AS i
     ),
     task_transitions AS (
       INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, metadata, sort_key, most_recent,
                                            processor_uuid, transition_metadata, created_at, updated_at)
       SELECT t.task_uuid, s.to_state, s.from_state, jsonb_build_object('k', s.k), s.k, s.k = 3,
              gen_random_uuid(), jsonb_build_object('fixture', s.k), at.at, at.at
         FROM tasks t
        CROSS JOIN (VALUES (0, 'pending', NULL), (1, 'steps_in_process', 'pending'),
                           (2, 'evaluating_results', 'steps_in_process'), (3, $5, 'evaluating_results'))
              AS s(k, to_state, from_state)
        CROSS JOIN LATERAL (SELECT CASE s.k WHEN 3 THEN t.finished_at
                                   ELSE t.created_at + (t.finished_at - t.created_at) * s.k / 4 END AS at) at
     ),
     steps AS (
       INSERT INTO tasker_workflow_steps (task_uuid, named_step_uuid, retryable, max_attempts, in_process, processed,
                                          processed_at, attempts, last_attempted_at, backoff_request_seconds, inputs,
                                          results, checkpoint, priority, created_at, updated_at)
       SELECT t.task_uuid, named.ids[k], false, 5, true, true, t.finished_at, 1, t.finished_at, 7,
              jsonb_build_object('k', k), jsonb_build_object('ok', true, 'k', k), jsonb_build_object('cursor', k), k,
              t.created_at, t.finished_at
         FROM tasks t CROSS JOIN generate_series(1, $7) k CROSS JOIN named
       RETURNING workflow_step_uuid, task_uuid, priority, created_at, updated_at
     ),
     step_transitions AS (
       INSERT INTO tasker_workflow_step_transitions (workflow_step_uuid, to_state, from_state, metadata, sort_key,
                                                     most_recent, created_at, updated_at)
       SELECT s.workflow_step_uuid, v.to_state, v.from_state, jsonb_build_object('k', v.k), v.k, v.k = 2,
              s.created_at + (s.updated_at - s.created_at) * v.k / 2, s.created_at + (s.updated_at - s.created_at) * v.k / 2
         FROM steps s
        CROSS JOIN (VALUES (0, 'pending', NULL), (1, 'in_progress', 'pending'), (2, 'complete', 'in_progress'))
              AS v(k, to_state, from_state)
     ),
     edges AS (
       INSERT INTO tasker_workflow_step_edges (from_step_uuid, to_step_uuid, name, created_at, updated_at)
       SELECT a.workflow_step_uuid, b.workflow_step_uuid, 'step ' || a.priority || ' feeds ' || b.priority,
              a.created_at, a.created_at
         FROM steps a JOIN steps b ON b.task_uuid = a.task_uuid AND b.priority = a.priority + 1
     ),
     dlq AS (
       INSERT INTO tasker_tasks_dlq (task_uuid, original_state, dlq_reason, dlq_timestamp, resolution_status,
                                     resolution_timestamp, resolution_notes, resolved_by, task_snapshot, metadata,
                                     created_at, updated_at)
       SELECT t.task_uuid, 'steps_in_process', 'staleness_timeout', t.finished_at - interval '40 minutes',
              'manually_resolved', t.finished_at - interval '10 minutes', 'fixed by hand', 'fixture',
              jsonb_build_object('task_uuid', t.task_uuid), jsonb_build_object('fixture', true),
              t.finished_at - interval '40 minutes', t.finished_at - interval '10 minutes'
         FROM tasks t
        WHERE $8 > 0 AND t.i % $8 = 0
     )
     SELECT coalesce(array_agg(task_uuid ORDER BY i), '{}') AS task_uuids FROM tasks`,
    [
      o.named_task_uuid,
      o.count ?? 1,
      o.finishedAt,
      o.spacingSeconds ?? 1,
      o.state,
      o.lifetimeMinutes ?? 60,
      steps,
      o.resolvedDlqEvery ?? 0,
    ],
  );
  return rows[0]!.task_uuids;
}

/** One graph; returns its task uuid. */
export async function insertFinishedGraph(db: Db, o: Omit<GraphOptions, 'count'>): Promise<string> {
  const [task] = await insertFinishedGraphs(db, { ...o, count: 1 });
  return task!;
}

export type TableRows = Record<GraphTable, unknown[]>;

/**
 * Every row (as JSON) of the six live tables, or of the six archive tables without archived_at,
 * ordered by primary key, optionally only the rows of some tasks' graphs.
 */
export async function graphRows(db: Db, where: 'live' | 'archive', taskUuids?: string[]): Promise<TableRows> {
  const suffix = where === 'archive' ? '_archive' : '';
  const out = {} as TableRows;
  for (const table of TABLES) {
    const filter =
      taskUuids === undefined ? 'true' : ownedBy(table, suffix, '$1::uuid[]').replace(/\n\s*/g, ' ');
    const { rows } = await db.query<{ row: unknown }>(
      `SELECT to_jsonb(x) - 'archived_at' AS row FROM ${table}${suffix} x WHERE ${filter} ORDER BY x.${PRIMARY_KEY[table]}`,
      taskUuids === undefined ? [] : [taskUuids],
    );
    out[table] = rows.map((r) => r.row);
  }
  return out;
}

function ownedBy(table: GraphTable, suffix: string, tasks: string): string {
  const steps = `(SELECT workflow_step_uuid FROM tasker_workflow_steps${suffix} WHERE task_uuid = ANY (${tasks}))`;
  switch (table) {
    case 'tasker_workflow_step_edges':
      return `x.from_step_uuid IN ${steps} OR x.to_step_uuid IN ${steps}`;
    case 'tasker_workflow_step_transitions':
      return `x.workflow_step_uuid IN ${steps}`;
    default:
      return `x.task_uuid = ANY (${tasks})`;
  }
}

export type TableCounts = Record<GraphTable, number>;

export async function tableCounts(db: Db, where: 'live' | 'archive'): Promise<TableCounts> {
  const suffix = where === 'archive' ? '_archive' : '';
  const { rows } = await db.query<TableCounts>(
    `SELECT ${TABLES.map((t) => `(SELECT count(*) FROM ${t}${suffix}) AS ${t}`).join(', ')}`,
  );
  return rows[0]!;
}

/** live + archive, table by table. */
export async function totalCounts(db: Db): Promise<TableCounts> {
  const [live, archive] = await Promise.all([tableCounts(db, 'live'), tableCounts(db, 'archive')]);
  return Object.fromEntries(TABLES.map((t) => [t, live[t] + archive[t]])) as TableCounts;
}

/** Tasks present in both the live and the archive table (must always be none). */
export async function tasksInBoth(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ task_uuid: string }>(
    'SELECT a.task_uuid FROM tasker_tasks_archive a JOIN tasker_tasks t USING (task_uuid)',
  );
  return rows.map((r) => r.task_uuid);
}

export async function archivedTaskUuids(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ task_uuid: string }>(
    'SELECT task_uuid FROM tasker_tasks_archive ORDER BY task_uuid',
  );
  return rows.map((r) => r.task_uuid);
}
