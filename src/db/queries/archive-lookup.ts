import type { Db } from '../pool.ts';

/**
 * Reads one archived task graph (migrations/0005_archive.sql tables), each by its task or step
 * index. The tables are partitioned by month of archived_at (0210): the task is found in any
 * partition (one probe of tasker_tasks_archive_pkey per partition), its newest copy taken, and every
 * other table read in that copy's partition only (archived_at = the task's). The rows are returned as the archive holds them (to_jsonb), so columns the engine adds
 * later come along.
 */

export interface ArchivedGraph {
  task: Record<string, unknown>;
  transitions: Record<string, unknown>[];
  steps: Record<string, unknown>[];
  edges: Record<string, unknown>[];
  step_transitions: Record<string, unknown>[];
  dlq_entries: Record<string, unknown>[];
}

/** The most rows of each kind returned for one graph. */
export const GRAPH_ROWS_LIMIT = 1000;

export async function archivedGraph(db: Db, taskUuid: string): Promise<ArchivedGraph | undefined> {
  // tasker_tasks_archive_pkey, in every partition: the newest copy
  const { rows: task } = await db.query<{ row: Record<string, unknown>; archived_at: Date }>(
    `SELECT to_jsonb(t) AS row, t.archived_at FROM tasker_tasks_archive t WHERE t.task_uuid = $1
      ORDER BY t.archived_at DESC LIMIT 1`,
    [taskUuid],
  );
  if (!task[0]) return undefined;
  const archivedAt = task[0].archived_at;
  const many = async (sql: string) =>
    (
      await db.query<{ row: Record<string, unknown> }>(sql, [taskUuid, GRAPH_ROWS_LIMIT, archivedAt])
    ).rows.map((r) => r.row);
  return {
    task: task[0].row,
    // idx_task_transitions_archive_task_uuid
    transitions: await many(
      'SELECT to_jsonb(x) AS row FROM tasker_task_transitions_archive x WHERE x.task_uuid = $1 AND x.archived_at = $3 ORDER BY x.created_at, x.task_transition_uuid LIMIT $2',
    ),
    // idx_steps_archive_task_uuid
    steps: await many(
      'SELECT to_jsonb(x) AS row FROM tasker_workflow_steps_archive x WHERE x.task_uuid = $1 AND x.archived_at = $3 ORDER BY x.created_at, x.workflow_step_uuid LIMIT $2',
    ),
    // idx_step_edges_archive_from_step, through the steps (idx_steps_archive_task_uuid)
    edges: await many(
      `SELECT to_jsonb(x) AS row FROM tasker_workflow_step_edges_archive x
        WHERE x.from_step_uuid IN (SELECT s.workflow_step_uuid FROM tasker_workflow_steps_archive s
                                    WHERE s.task_uuid = $1 AND s.archived_at = $3)
          AND x.archived_at = $3
        ORDER BY x.workflow_step_edge_uuid LIMIT $2`,
    ),
    // idx_step_transitions_archive_step_uuid, through the steps
    step_transitions: await many(
      `SELECT to_jsonb(x) AS row FROM tasker_workflow_step_transitions_archive x
        WHERE x.workflow_step_uuid IN (SELECT s.workflow_step_uuid FROM tasker_workflow_steps_archive s
                                        WHERE s.task_uuid = $1 AND s.archived_at = $3)
          AND x.archived_at = $3
        ORDER BY x.created_at, x.workflow_step_transition_uuid LIMIT $2`,
    ),
    // idx_dlq_archive_task_uuid
    dlq_entries: await many(
      'SELECT to_jsonb(x) AS row FROM tasker_tasks_dlq_archive x WHERE x.task_uuid = $1 AND x.archived_at = $3 ORDER BY x.created_at LIMIT $2',
    ),
  };
}
