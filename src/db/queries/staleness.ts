import pg from 'pg';
import type { Config } from '../../config/schema.ts';
import { DLQ_REASONS, type DlqReason } from '../../domain/dlq.ts';
import { parseActionTaken, type StaleTaskResult } from '../../domain/staleness.ts';
import { type Db, withTransaction } from '../pool.ts';
import type { ArchivePolicies } from './archive.ts';

/**
 * Queries for staleness detection: tasker_lifecycle_settings (detection settings and archive
 * policies, written from the configuration by applyConfiguredSettings only) and the detection
 * functions (migrations/functions/detect_stale_tasks_page.sql and the functions it calls).
 */

export interface StalenessThresholds {
  waiting_for_dependencies_minutes: number;
  waiting_for_retry_minutes: number;
  steps_in_process_minutes: number;
  task_max_lifetime_hours: number;
}

/** The row of tasker_lifecycle_settings: what views and the 6-argument function read. */
export interface LifecycleSettings extends StalenessThresholds {
  auto_transition_to_error: boolean;
  /** Whether detection may open investigations at all. */
  auto_move_to_dlq: boolean;
  enabled_reasons: DlqReason[];
  /** NOTIFY channel for detection events; null when events are off. */
  event_channel: string | null;
  max_pending_age_hours: number;
}

export interface DetectBatchParams {
  /** The run's reference time: staleness is judged against it on every page. */
  now: Date;
  dryRun: boolean;
  batchSize: number;
  settings: Omit<LifecycleSettings, 'max_pending_age_hours'>;
  /** Where the previous page ended (its `next`); null: the first page of a pass. */
  after: DetectCursor | null;
  /** statement_timeout (and lock_timeout) of the batch's transaction (SET LOCAL), in milliseconds. */
  statementTimeoutMs: number;
  /** The run's commit fence (JobContext.commitFence): last before COMMIT; throws to roll back. */
  beforeCommit?: (client: pg.PoolClient) => Promise<void>;
}

/**
 * Where a detection page ended, as detect_stale_tasks_page says it: its phase (state, lifetime)
 * and the last key it passed. Opaque here; times inside stay PostgreSQL's own text (a JavaScript
 * Date would drop the microseconds of the key).
 */
export type DetectCursor = Record<string, unknown>;

/** Index entries a page may examine per task it may take: a small multiple, whatever the backlog. */
export const EXAMINE_PER_TASK = 2;

export interface DetectBatchResult {
  tasks: StaleTaskResult[];
  /** Where the next page starts; null when this page ended the pass. */
  next: DetectCursor | null;
}

/**
 * One detection page (detect_stale_tasks_page): at most batchSize stale tasks after `after`,
 * judged from at most EXAMINE_PER_TASK x batchSize index entries, acted on in one statement (real
 * run; their rows locked FOR UPDATE SKIP LOCKED) or only reported (dry run; nothing locked,
 * nothing written). Its own transaction, under SET LOCAL statement_timeout, so a page that runs
 * too long is cancelled (57014) and rolled back whole. On a pool it takes a connection for the
 * page; on a client (tests with separate sessions) it runs on that client, which must not be
 * inside a transaction.
 */
export async function detectStaleTasksBatch(
  db: pg.Pool | pg.Client,
  p: DetectBatchParams,
): Promise<DetectBatchResult> {
  if (db instanceof pg.Pool)
    return withTransaction(db, (client) => detectPage(client, p), {
      statementTimeoutMs: p.statementTimeoutMs,
      ...(p.beforeCommit ? { beforeCommit: p.beforeCommit } : {}),
    });
  await db.query('BEGIN');
  try {
    const page = await detectPage(db, p);
    await db.query('COMMIT');
    return page;
  } catch (err) {
    await db.query('ROLLBACK').catch(() => undefined); // the batch's error is the one to report
    throw err;
  }
}

/** One page inside the caller's transaction: SET LOCAL statement_timeout and lock_timeout, then the page. */
async function detectPage(
  client: pg.PoolClient | pg.Client,
  p: DetectBatchParams,
): Promise<DetectBatchResult> {
  const s = p.settings;
  await client.query(
    `SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $1, true)`,
    [`${p.statementTimeoutMs}ms`],
  );
  const { rows } = await client.query<StaleTaskResult & { action_taken: string; next_cursor: unknown }>(
    `SELECT b.task_uuid, b.namespace_name, b.task_name, b.current_state, b.time_in_state_minutes,
            b.staleness_threshold_minutes, b.action_taken, b.moved_to_dlq, b.transition_success, b.stale_by,
            b.task_age_minutes, b.planned_action, b.dlq_entry_uuid, b.dlq_reason, b.named_task_uuid,
            b.template_problems, b.next_cursor
       FROM detect_stale_tasks_page($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::dlq_reason[], $12, $13::jsonb) b`,
    [
      p.now,
      p.dryRun,
      p.batchSize,
      EXAMINE_PER_TASK * p.batchSize,
      s.waiting_for_dependencies_minutes,
      s.waiting_for_retry_minutes,
      s.steps_in_process_minutes,
      s.task_max_lifetime_hours,
      s.auto_transition_to_error,
      s.auto_move_to_dlq,
      s.enabled_reasons,
      s.event_channel,
      p.after === null ? null : JSON.stringify(p.after),
    ],
  );
  // The last row is the page's cursor (task_uuid NULL); the others are the tasks taken.
  const cursorRow = rows.at(-1);
  return {
    tasks: rows
      .filter((r) => r.task_uuid !== null)
      .map(({ next_cursor: _cursor, ...r }) => ({ ...r, action_taken: parseActionTaken(r.action_taken) })),
    next: (cursorRow?.next_cursor as DetectCursor | null | undefined) ?? null,
  };
}

/**
 * What tasker_lifecycle_settings should hold for a configuration: the detection defaults and
 * switches (as detection applies them), dlq.max_pending_age_hours, and [archive.policies].
 */
export function settingsFromConfig(config: Readonly<Config>): ConfiguredSettings {
  const sd = config.staleness_detection;
  return {
    ...sd.thresholds,
    auto_transition_to_error: sd.actions.auto_transition_to_error,
    auto_move_to_dlq: sd.actions.auto_move_to_dlq && config.dlq.enabled && config.dlq.auto_dlq_on_staleness,
    enabled_reasons: DLQ_REASONS.filter((r) => r !== 'manual_dlq' && config.dlq.reasons[r]),
    event_channel: sd.actions.emit_events ? sd.actions.event_channel : null,
    max_pending_age_hours: config.dlq.max_pending_age_hours,
    archive_policies: { ...config.archive.policies },
  };
}

export interface ConfiguredSettings extends LifecycleSettings {
  archive_policies: ArchivePolicies;
}

/**
 * Makes tasker_lifecycle_settings equal to the configuration: the one place it is written, called
 * deliberately by `migrate` (src/install/settings.ts; never by a worker or a run, so dry runs and ad-hoc runs with
 * their own options leave it alone). Writes only when something differs; returns whether it wrote.
 * One primary-key UPDATE.
 */
export async function applyConfiguredSettings(
  db: Db,
  config: Readonly<Config>,
  updatedBy: string,
): Promise<{ changed: boolean; settings: ConfiguredSettings }> {
  const s = settingsFromConfig(config);
  const p = s.archive_policies;
  const { rowCount } = await db.query(
    `UPDATE tasker_lifecycle_settings
        SET waiting_for_dependencies_minutes = $1, waiting_for_retry_minutes = $2, steps_in_process_minutes = $3,
            task_max_lifetime_hours = $4, auto_transition_to_error = $5, auto_move_to_dlq = $6,
            enabled_reasons = $7::dlq_reason[], event_channel = $8, max_pending_age_hours = $9,
            archive_completed = $10, archive_failed = $11, archive_cancelled = $12,
            archive_resolved_manually = $13, archive_dlq_resolved = $14,
            updated_at = now(), updated_by = $15
      WHERE singleton
        AND (waiting_for_dependencies_minutes, waiting_for_retry_minutes, steps_in_process_minutes,
             task_max_lifetime_hours, auto_transition_to_error, auto_move_to_dlq, enabled_reasons,
             event_channel, max_pending_age_hours, archive_completed, archive_failed, archive_cancelled,
             archive_resolved_manually, archive_dlq_resolved)
            IS DISTINCT FROM ($1, $2, $3, $4, $5, $6, $7::dlq_reason[], $8, $9, $10, $11, $12, $13, $14)`,
    [
      s.waiting_for_dependencies_minutes,
      s.waiting_for_retry_minutes,
      s.steps_in_process_minutes,
      s.task_max_lifetime_hours,
      s.auto_transition_to_error,
      s.auto_move_to_dlq,
      [...s.enabled_reasons].sort(),
      s.event_channel,
      s.max_pending_age_hours,
      p.archive_completed,
      p.archive_failed,
      p.archive_cancelled,
      p.archive_resolved_manually,
      p.archive_dlq_resolved,
      updatedBy,
    ],
  );
  return { changed: (rowCount ?? 0) > 0, settings: s };
}

export async function readLifecycleSettings(
  db: Db,
): Promise<ConfiguredSettings & { updated_at: Date; updated_by: string | null }> {
  const { rows } = await db.query(
    `SELECT waiting_for_dependencies_minutes, waiting_for_retry_minutes, steps_in_process_minutes,
            task_max_lifetime_hours, auto_transition_to_error, auto_move_to_dlq,
            enabled_reasons::text[] AS enabled_reasons, event_channel, max_pending_age_hours,
            jsonb_build_object('archive_completed', archive_completed, 'archive_failed', archive_failed,
                               'archive_cancelled', archive_cancelled,
                               'archive_resolved_manually', archive_resolved_manually,
                               'archive_dlq_resolved', archive_dlq_resolved) AS archive_policies,
            updated_at, updated_by
       FROM tasker_lifecycle_settings WHERE singleton`,
  );
  return rows[0];
}

export interface StalenessHealth {
  healthy: number;
  warning: number;
  stale: number;
  oldest_stale_minutes: number | null;
}

/** Counts of in-flight tasks by health, from v_task_staleness_monitoring (the in-flight index). */
export async function stalenessHealth(db: Db): Promise<StalenessHealth> {
  const { rows } = await db.query<StalenessHealth>(
    `SELECT count(*) FILTER (WHERE health_status = 'healthy') AS healthy,
            count(*) FILTER (WHERE health_status = 'warning') AS warning,
            count(*) FILTER (WHERE health_status = 'stale') AS stale,
            max(time_in_state_minutes) FILTER (WHERE health_status = 'stale') AS oldest_stale_minutes
       FROM v_task_staleness_monitoring`,
  );
  return rows[0]!;
}
