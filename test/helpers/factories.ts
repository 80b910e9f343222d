import { randomUUID } from 'node:crypto';
import type { Db } from '../../src/db/pool.ts';

/**
 * Fixture rows for the engine's tables. Time is explicit: callers place rows relative to a fixed
 * reference time (either side of a threshold) instead of sleeping.
 */

export const NOW = new Date('2026-06-01T12:00:00.000Z');

export function minutesBefore(reference: Date, minutes: number): Date {
  return new Date(reference.getTime() - minutes * 60_000);
}

export function hoursBefore(reference: Date, hours: number): Date {
  return minutesBefore(reference, hours * 60);
}

export interface Template {
  named_task_uuid: string;
  namespace: string;
  name: string;
}

/** A namespace (created if missing) and a task template with the given configuration. */
export async function insertTemplate(
  db: Db,
  options: { namespace?: string; name?: string; configuration?: unknown; lifecycle?: unknown } = {},
): Promise<Template> {
  const namespace = options.namespace ?? 'default';
  const name = options.name ?? `template_${randomUUID().slice(0, 8)}`;
  const configuration =
    options.configuration !== undefined
      ? options.configuration
      : options.lifecycle !== undefined
        ? { lifecycle: options.lifecycle }
        : {};
  const { rows } = await db.query<{ named_task_uuid: string }>(
    `WITH ns AS (
       INSERT INTO tasker_task_namespaces (name) VALUES ($1)
       ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
       RETURNING task_namespace_uuid)
     INSERT INTO tasker_named_tasks (task_namespace_uuid, name, configuration)
     SELECT task_namespace_uuid, $2, $3::jsonb FROM ns
     RETURNING named_task_uuid`,
    [namespace, name, JSON.stringify(configuration)],
  );
  return { named_task_uuid: rows[0]!.named_task_uuid, namespace, name };
}

export interface TaskOptions {
  template: Template;
  state: string;
  /** When the task entered its current state. */
  enteredAt: Date;
  /** When the task was created (default: 60 minutes before enteredAt, as upstream's fixtures). */
  createdAt?: Date;
  priority?: number;
}

/**
 * A task with two transitions: pending at creation, then the current state at enteredAt (one
 * transition when the state is pending).
 */
export async function insertTask(db: Db, o: TaskOptions): Promise<string> {
  const createdAt = o.createdAt ?? minutesBefore(o.enteredAt, 60);
  const { rows } = await db.query<{ task_uuid: string }>(
    `INSERT INTO tasker_tasks (named_task_uuid, identity_hash, priority, requested_at, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $4, $4) RETURNING task_uuid`,
    [o.template.named_task_uuid, randomUUID(), o.priority ?? 0, createdAt],
  );
  const taskUuid = rows[0]!.task_uuid;
  if (o.state === 'pending') {
    await db.query(
      `INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
       VALUES ($1, 'pending', NULL, 0, true, $2, $2)`,
      [taskUuid, o.enteredAt],
    );
  } else {
    await db.query(
      `INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
       VALUES ($1, 'pending', NULL, 0, false, $2, $2), ($1, $3, 'pending', 1, true, $4, $4)`,
      [taskUuid, createdAt, o.state, o.enteredAt],
    );
  }
  return taskUuid;
}

export interface StepOptions {
  task: string;
  state?: string;
  name?: string;
  attempts?: number;
  maxAttempts?: number;
  retryable?: boolean;
  results?: unknown;
  at?: Date;
}

/** A workflow step whose current state is `state` (default pending). */
export async function insertStep(db: Db, o: StepOptions): Promise<string> {
  const at = o.at ?? NOW;
  const { rows } = await db.query<{ workflow_step_uuid: string }>(
    `WITH named AS (
       INSERT INTO tasker_named_steps (name) VALUES ($1)
       ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
       RETURNING named_step_uuid)
     INSERT INTO tasker_workflow_steps (task_uuid, named_step_uuid, attempts, max_attempts, retryable, results,
                                        created_at, updated_at)
     SELECT $2, named_step_uuid, $3, $4, $5, $6::jsonb, $7, $7 FROM named
     RETURNING workflow_step_uuid`,
    [
      o.name ?? `step_${randomUUID().slice(0, 8)}`,
      o.task,
      o.attempts ?? 0,
      o.maxAttempts ?? 3,
      o.retryable ?? true,
      o.results === undefined ? null : JSON.stringify(o.results),
      at,
    ],
  );
  const stepUuid = rows[0]!.workflow_step_uuid;
  await db.query(
    `INSERT INTO tasker_workflow_step_transitions (workflow_step_uuid, to_state, from_state, sort_key, most_recent,
                                                   created_at, updated_at)
     VALUES ($1, $2, NULL, 0, true, $3, $3)`,
    [stepUuid, o.state ?? 'pending', at],
  );
  return stepUuid;
}

export async function insertEdge(db: Db, from: string, to: string): Promise<void> {
  await db.query('INSERT INTO tasker_workflow_step_edges (from_step_uuid, to_step_uuid) VALUES ($1, $2)', [
    from,
    to,
  ]);
}

export async function currentState(db: Db, taskUuid: string): Promise<string> {
  const { rows } = await db.query<{ to_state: string }>(
    'SELECT to_state FROM tasker_task_transitions WHERE task_uuid = $1 AND most_recent',
    [taskUuid],
  );
  return rows[0]!.to_state;
}

export async function pendingEntries(
  db: Db,
  taskUuid?: string,
): Promise<Array<{ dlq_entry_uuid: string; task_uuid: string; dlq_reason: string; original_state: string }>> {
  const { rows } = await db.query(
    `SELECT dlq_entry_uuid, task_uuid, dlq_reason::text AS dlq_reason, original_state
       FROM tasker_tasks_dlq WHERE resolution_status = 'pending' AND ($1::uuid IS NULL OR task_uuid = $1)
      ORDER BY task_uuid`,
    [taskUuid ?? null],
  );
  return rows;
}

/** Inserts a DLQ entry directly (for view and CLI tests). */
export async function insertDlqEntry(
  db: Db,
  o: {
    task: string;
    reason: string;
    status?: string;
    at: Date;
    namespace?: string;
    taskName?: string;
    state?: string;
    timeInStateMinutes?: number;
  },
): Promise<string> {
  const status = o.status ?? 'pending';
  const { rows } = await db.query<{ dlq_entry_uuid: string }>(
    `INSERT INTO tasker_tasks_dlq (task_uuid, original_state, dlq_reason, dlq_timestamp, resolution_status,
                                   resolution_timestamp, resolved_by, task_snapshot, metadata, created_at, updated_at)
     VALUES ($1, $2::varchar, $3::dlq_reason, $4, $5::dlq_resolution_status,
             CASE WHEN $9 THEN NULL ELSE $4::timestamptz + interval '30 minutes' END,
             CASE WHEN $9 THEN NULL ELSE 'fixture' END,
             jsonb_build_object('namespace', $6::text, 'task_name', $7::text, 'current_state', $2::varchar),
             jsonb_build_object('time_in_state_minutes', $8::integer), $4, $4)
     RETURNING dlq_entry_uuid`,
    [
      o.task,
      o.state ?? 'waiting_for_dependencies',
      o.reason,
      o.at,
      status,
      o.namespace ?? 'default',
      o.taskName ?? 'task',
      o.timeInStateMinutes ?? null,
      status === 'pending',
    ],
  );
  return rows[0]!.dlq_entry_uuid;
}
