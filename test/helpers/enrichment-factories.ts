import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { ConfigSchema } from '../../src/config/schema.ts';
import type { Db } from '../../src/db/pool.ts';
import type { EnrichmentLimits } from '../../src/db/queries/dlq-enrichment.ts';
import { detectStaleTasksBatch } from '../../src/db/queries/staleness.ts';
import { insertEdge, insertTask, insertTemplate, minutesBefore, NOW } from './factories.ts';

/**
 * Fixtures for snapshot enrichment: steps with a transition history and attempt times, extra task
 * transitions, and readers that show whether an enrichment run wrote anything (row JSON, xmin,
 * updated_at) or touched the task graph. Time is explicit, relative to NOW.
 */

export interface HistoryStepOptions {
  task: string;
  name: string;
  /** The step's states in order, each with when it was entered; the last is the current one. */
  history: ReadonlyArray<{ state: string; at: Date; metadata?: unknown }>;
  attempts?: number;
  maxAttempts?: number | null;
  retryable?: boolean;
  results?: unknown;
  lastAttemptedAt?: Date | null;
}

/** A workflow step with a named step, its whole transition history (sort_key 0..n-1), attempts and results. */
export async function insertHistoryStep(db: Db, o: HistoryStepOptions): Promise<string> {
  const first = o.history[0];
  if (!first) throw new Error('insertHistoryStep: history needs at least one state');
  const { rows } = await db.query<{ workflow_step_uuid: string }>(
    `WITH named AS (
       INSERT INTO tasker_named_steps (name) VALUES ($1)
       ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
       RETURNING named_step_uuid)
     INSERT INTO tasker_workflow_steps (task_uuid, named_step_uuid, attempts, max_attempts, retryable, results,
                                        last_attempted_at, created_at, updated_at)
     SELECT $2, named_step_uuid, $3, $4, $5, $6::jsonb, $7, $8, $8 FROM named
     RETURNING workflow_step_uuid`,
    [
      o.name,
      o.task,
      o.attempts ?? 0,
      o.maxAttempts === undefined ? 3 : o.maxAttempts,
      o.retryable ?? true,
      o.results === undefined ? null : JSON.stringify(o.results),
      o.lastAttemptedAt ?? null,
      first.at,
    ],
  );
  const step = rows[0]!.workflow_step_uuid;
  await db.query(
    `INSERT INTO tasker_workflow_step_transitions (workflow_step_uuid, to_state, from_state, sort_key, most_recent,
                                                   metadata, created_at, updated_at)
     SELECT $1, h.state, lag(h.state) OVER (ORDER BY h.ord), h.ord - 1, h.ord = $5, h.metadata, h.at, h.at
       FROM unnest($2::text[], $3::timestamptz[], $4::jsonb[]) WITH ORDINALITY AS h(state, at, metadata, ord)`,
    [
      step,
      o.history.map((h) => h.state),
      o.history.map((h) => h.at),
      o.history.map((h) => JSON.stringify(h.metadata ?? {})),
      o.history.length,
    ],
  );
  return step;
}

/** Appends task transitions (each becomes the current one in turn), as the engine records them. */
export async function appendTaskTransitions(
  db: Db,
  task: string,
  transitions: ReadonlyArray<{ state: string; at: Date; metadata?: unknown }>,
): Promise<void> {
  for (const t of transitions) {
    await db.query(
      `WITH cur AS (
         UPDATE tasker_task_transitions SET most_recent = false
          WHERE task_uuid = $1 AND most_recent RETURNING to_state, sort_key)
       INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, transition_metadata,
                                            created_at, updated_at)
       SELECT $1, $2, cur.to_state, cur.sort_key + 1, true, $4::jsonb, $3, $3 FROM cur`,
      [task, t.state, t.at, JSON.stringify(t.metadata ?? {})],
    );
  }
}

/** `count` step transitions on one step, one minute apart, ending at NOW (pending/enqueued alternating). */
export async function insertLongHistoryStep(
  db: Db,
  task: string,
  name: string,
  count: number,
): Promise<string> {
  return insertHistoryStep(db, {
    task,
    name,
    history: Array.from({ length: count }, (_, i) => ({
      state: i % 2 === 0 ? 'pending' : 'enqueued',
      at: minutesBefore(NOW, count - i),
      metadata: { n: i },
    })),
  });
}

export interface EntryRow {
  task_snapshot: Record<string, unknown>;
  metadata: Record<string, unknown> | null;
  resolution_status: string;
  xmin: string;
  updated_at: Date;
}

/** The entry as stored, with its row version (xmin) to show whether it was written. */
export async function readEntry(db: Db, entryUuid: string): Promise<EntryRow> {
  const { rows } = await db.query<EntryRow>(
    `SELECT task_snapshot, metadata, resolution_status::text AS resolution_status, xmin::text AS xmin, updated_at
       FROM tasker_tasks_dlq WHERE dlq_entry_uuid = $1`,
    [entryUuid],
  );
  if (!rows[0]) throw new Error(`no DLQ entry ${entryUuid}`);
  return rows[0];
}

/** Every row of a task's graph with its row version: equal before and after means nothing was written. */
export async function taskGraphFingerprint(db: Db, task: string): Promise<string> {
  const { rows } = await db.query<{ fp: string }>(
    `SELECT jsonb_build_object(
       'task', (SELECT jsonb_agg(jsonb_build_object('x', t.xmin::text, 'r', to_jsonb(t))) FROM tasker_tasks t WHERE t.task_uuid = $1),
       'steps', (SELECT jsonb_agg(jsonb_build_object('x', s.xmin::text, 'r', to_jsonb(s)) ORDER BY s.workflow_step_uuid)
                   FROM tasker_workflow_steps s WHERE s.task_uuid = $1),
       'step_transitions', (SELECT jsonb_agg(jsonb_build_object('x', st.xmin::text, 'r', to_jsonb(st)) ORDER BY st.workflow_step_transition_uuid)
                   FROM tasker_workflow_step_transitions st
                   JOIN tasker_workflow_steps s ON s.workflow_step_uuid = st.workflow_step_uuid WHERE s.task_uuid = $1),
       'edges', (SELECT jsonb_agg(jsonb_build_object('x', e.xmin::text, 'r', to_jsonb(e)) ORDER BY e.workflow_step_edge_uuid)
                   FROM tasker_workflow_step_edges e
                   JOIN tasker_workflow_steps s ON s.workflow_step_uuid = e.from_step_uuid WHERE s.task_uuid = $1),
       'task_transitions', (SELECT jsonb_agg(jsonb_build_object('x', tt.xmin::text, 'r', to_jsonb(tt)) ORDER BY tt.sort_key)
                   FROM tasker_task_transitions tt WHERE tt.task_uuid = $1))::text AS fp`,
    [task],
  );
  return rows[0]!.fp;
}

/** The limits the job passes by default (config/base.toml), at NOW. */
export function defaultLimits(overrides: Partial<EnrichmentLimits> = {}): EnrichmentLimits {
  return {
    now: NOW,
    includeFullTaskSnapshot: true,
    maxListItems: 500,
    maxHistoryRows: 200,
    maxPayloadBytes: 16384,
    maxSnapshotBytes: 1048576,
    ...overrides,
  };
}

/** A payload of about `bytes` bytes of JSON text. */
export function bigPayload(bytes: number): { blob: string; id: string } {
  return { blob: 'x'.repeat(bytes), id: randomUUID() };
}

export const TEMPLATE_CONFIG = {
  lifecycle: { max_steps_in_process_minutes: 45 },
  steps: [{ name: 'fetch' }, { name: 'charge', retry: { limit: 3 } }],
};
export const CARD_DECLINED = {
  success: false,
  error: { message: 'card declined', error_type: 'PaymentError' },
};

/**
 * A task stuck in steps_in_process for 2 hours with this graph (done: fetch, validate):
 *   fetch -> validate -> charge (error, 3/3 attempts) -> ship -> notify
 *   fetch -> reserve (enqueued for 3 hours: the oldest waiting step)
 *   validate -> audit_a <-> audit_b (a cycle)
 *   refund (error, not retryable, standalone)
 */
export async function insertStuckOrder(db: Db) {
  const template = await insertTemplate(db, {
    namespace: 'shop',
    name: 'order',
    configuration: TEMPLATE_CONFIG,
  });
  const task = await insertTask(db, {
    template,
    state: 'initializing',
    enteredAt: minutesBefore(NOW, 230),
    createdAt: minutesBefore(NOW, 240),
  });
  await appendTaskTransitions(db, task, [{ state: 'steps_in_process', at: minutesBefore(NOW, 120) }]);
  const at = (m: number) => minutesBefore(NOW, m);
  const s = {
    fetch: await insertHistoryStep(db, {
      task,
      name: 'fetch',
      attempts: 1,
      results: { rows: 3 },
      lastAttemptedAt: at(200),
      history: [
        { state: 'pending', at: at(230) },
        { state: 'in_progress', at: at(200) },
        { state: 'complete', at: at(199) },
      ],
    }),
    validate: await insertHistoryStep(db, {
      task,
      name: 'validate',
      attempts: 1,
      history: [
        { state: 'pending', at: at(230) },
        { state: 'complete', at: at(190) },
      ],
    }),
    charge: await insertHistoryStep(db, {
      task,
      name: 'charge',
      attempts: 3,
      maxAttempts: 3,
      results: CARD_DECLINED,
      lastAttemptedAt: at(100),
      history: [
        { state: 'pending', at: at(230) },
        { state: 'in_progress', at: at(150) },
        { state: 'waiting_for_retry', at: at(140), metadata: { attempt: 1 } },
        { state: 'in_progress', at: at(120) },
        { state: 'error', at: at(100), metadata: { attempt: 3 } },
      ],
    }),
    ship: await insertHistoryStep(db, {
      task,
      name: 'ship',
      history: [{ state: 'pending', at: at(60) }],
    }),
    notify: await insertHistoryStep(db, {
      task,
      name: 'notify',
      history: [{ state: 'pending', at: at(50) }],
    }),
    reserve: await insertHistoryStep(db, {
      task,
      name: 'reserve',
      attempts: 0,
      history: [
        { state: 'pending', at: at(230) },
        { state: 'enqueued', at: at(180) },
      ],
    }),
    audit_a: await insertHistoryStep(db, {
      task,
      name: 'audit_a',
      history: [{ state: 'pending', at: at(40) }],
    }),
    audit_b: await insertHistoryStep(db, {
      task,
      name: 'audit_b',
      history: [{ state: 'pending', at: at(39) }],
    }),
    refund: await insertHistoryStep(db, {
      task,
      name: 'refund',
      attempts: 1,
      retryable: false,
      results: { error: 'refund endpoint returned 410' },
      history: [{ state: 'error', at: at(90) }],
    }),
  };
  for (const [from, to] of [
    ['fetch', 'validate'],
    ['validate', 'charge'],
    ['charge', 'ship'],
    ['ship', 'notify'],
    ['fetch', 'reserve'],
    ['validate', 'audit_a'],
    ['audit_a', 'audit_b'],
    ['audit_b', 'audit_a'],
  ] as const) {
    await insertEdge(db, s[from], s[to]);
  }
  return { template, task, steps: s };
}

/** The real detection function at NOW with the default configuration; returns the new entries. */
export async function detectAtNow(db: pg.Pool): Promise<string[]> {
  const d = ConfigSchema.parse({}).staleness_detection;
  const { tasks } = await detectStaleTasksBatch(db, {
    now: NOW,
    dryRun: false,
    batchSize: 100,
    after: null,
    statementTimeoutMs: 60_000,
    settings: {
      ...d.thresholds,
      auto_transition_to_error: true,
      auto_move_to_dlq: true,
      enabled_reasons: [
        'staleness_timeout',
        'max_retries_exceeded',
        'dependency_cycle_detected',
        'worker_unavailable',
      ],
      event_channel: null,
    },
  });
  // Detection stamps what it writes with the database's clock; these fixtures live at the fixed
  // NOW, so its writes are moved back to NOW, as if the database's clock had read NOW then.
  const ids = tasks.map((r) => r.task_uuid);
  await db.query(
    `UPDATE tasker_task_transitions SET created_at = $2, updated_at = $2
      WHERE task_uuid = ANY ($1::uuid[]) AND most_recent AND to_state = 'error'`,
    [ids, NOW],
  );
  await db.query(
    `UPDATE tasker_tasks_dlq
        SET dlq_timestamp = $2, created_at = $2, updated_at = $2,
            task_snapshot = jsonb_set(task_snapshot, '{snapshot_timestamp}', to_jsonb($2::timestamptz))
      WHERE task_uuid = ANY ($1::uuid[]) AND resolution_status = 'pending'`,
    [ids, NOW],
  );
  return tasks.map((r) => r.dlq_entry_uuid).filter((id): id is string => id !== null);
}
