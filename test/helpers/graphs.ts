import type { Db } from '../../src/db/pool.ts';

/**
 * A chain of `length` pending steps on a task, step i -> step i+1, written set-based (a few
 * statements whatever the length). With `cycle`, the last step also points back at the first; with
 * `edges: false`, the steps are written without edges (for a test to link them its own way).
 * Returns the number of steps written.
 */
export async function insertStepChain(
  db: Db,
  task: string,
  length: number,
  options: { cycle?: boolean; edges?: boolean } = {},
): Promise<number> {
  await db.query(
    `WITH named AS (
       INSERT INTO tasker_named_steps (name) VALUES ('chain_link')
       ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
       RETURNING named_step_uuid),
     steps AS (
       INSERT INTO tasker_workflow_steps (task_uuid, named_step_uuid, attempts, max_attempts, retryable)
       SELECT $1, named_step_uuid, 0, 3, true FROM named, generate_series(1, $2)
       RETURNING workflow_step_uuid)
     INSERT INTO tasker_workflow_step_transitions (workflow_step_uuid, to_state, sort_key, most_recent)
     SELECT workflow_step_uuid, 'pending', 0, true FROM steps`,
    [task, length],
  );
  if (options.edges === false) return length;
  await db.query(
    `WITH ordered AS (
       SELECT workflow_step_uuid AS id, row_number() OVER (ORDER BY workflow_step_uuid) AS n
         FROM tasker_workflow_steps WHERE task_uuid = $1)
     INSERT INTO tasker_workflow_step_edges (from_step_uuid, to_step_uuid)
     SELECT a.id, b.id FROM ordered a JOIN ordered b ON b.n = a.n + 1
     UNION ALL
     SELECT l.id, f.id FROM ordered l JOIN ordered f ON f.n = 1
      WHERE $2 AND l.n = (SELECT max(n) FROM ordered)`,
    [task, options.cycle === true],
  );
  return length;
}
