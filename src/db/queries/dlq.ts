import type { DlqEntry, DlqReason, DlqResolutionStatus, TerminalResolutionStatus } from '../../domain/dlq.ts';
import { NotFoundError, UsageError } from '../../errors.ts';
import type { Db } from '../pool.ts';

/** Queries on tasker_tasks_dlq and its views (migrations/0002_dlq.sql, 0004_dlq_views.sql). */

const ENTRY_COLUMNS = `d.dlq_entry_uuid, d.task_uuid, d.original_state, d.dlq_reason::text AS dlq_reason, d.dlq_timestamp,
  d.resolution_status::text AS resolution_status, d.resolution_timestamp, d.resolution_notes, d.resolved_by,
  d.resolved_by_token_id, d.resolved_on_behalf_of, d.task_snapshot, d.metadata, d.created_at, d.updated_at`;

export interface ListedEntry extends DlqEntry {
  minutes_in_dlq: number;
  overdue: boolean;
}

export interface ListEntriesParams {
  status?: DlqResolutionStatus | undefined;
  reason?: DlqReason | undefined;
  overdueOnly?: boolean | undefined;
  limit: number;
  offset: number;
  now: Date;
}

/**
 * Entries, newest first. With a status: idx_dlq_resolution_status; without: idx_dlq_timestamp.
 * Always bounded by limit.
 */
const LIST_ENTRIES_SQL = `SELECT ${ENTRY_COLUMNS},
            floor(extract(epoch FROM coalesce(d.resolution_timestamp, $6::timestamptz) - d.dlq_timestamp) / 60)::integer AS minutes_in_dlq,
            (d.resolution_status = 'pending'
             AND d.dlq_timestamp < $6::timestamptz - make_interval(hours => s.max_pending_age_hours)) AS overdue
       FROM tasker_tasks_dlq d
      CROSS JOIN tasker_lifecycle_settings s
      WHERE ($1::dlq_resolution_status IS NULL OR d.resolution_status = $1)
        AND ($2::dlq_reason IS NULL OR d.dlq_reason = $2)
        AND (NOT $3 OR (d.resolution_status = 'pending'
                        AND d.dlq_timestamp < $6::timestamptz - make_interval(hours => s.max_pending_age_hours)))
      ORDER BY d.dlq_timestamp DESC, d.dlq_entry_uuid DESC
      LIMIT $4 OFFSET $5`;

const listValues = (p: ListEntriesParams) => [
  p.status ?? null,
  p.reason ?? null,
  p.overdueOnly ?? false,
  p.limit,
  p.offset,
  p.now,
];

export async function listEntries(db: Db, p: ListEntriesParams): Promise<ListedEntry[]> {
  const { rows } = await db.query<ListedEntry>({
    text: LIST_ENTRIES_SQL,
    values: listValues(p),
  });
  return rows;
}

/**
 * The rows of a query as one JSON array text, built by PostgreSQL: the API sends it as it is,
 * instead of parsing every row into objects and serializing them again (most of a request's CPU).
 * Timestamps are written as JavaScript writes them (UTC, milliseconds, "Z"), so the text equals
 * JSON.stringify of the object rows; a test checks that.
 */
function jsonArraySql(
  sql: string,
  columns: readonly string[],
  timestamps: readonly string[],
  order: string,
): string {
  const fields = columns
    .map((c) =>
      timestamps.includes(c)
        ? `'${c}', to_char(q.${c} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`
        : `'${c}', q.${c}`,
    )
    .join(', ');
  return `SELECT coalesce(json_agg(json_build_object(${fields}) ORDER BY ${order}), '[]')::text AS json FROM (${sql}) q`;
}

const ENTRY_FIELDS = [
  'dlq_entry_uuid',
  'task_uuid',
  'original_state',
  'dlq_reason',
  'dlq_timestamp',
  'resolution_status',
  'resolution_timestamp',
  'resolution_notes',
  'resolved_by',
  'resolved_by_token_id',
  'resolved_on_behalf_of',
  'task_snapshot',
  'metadata',
  'created_at',
  'updated_at',
];
const ENTRY_TIMESTAMPS = ['dlq_timestamp', 'resolution_timestamp', 'created_at', 'updated_at'];

const LIST_ENTRIES_JSON_SQL = jsonArraySql(
  LIST_ENTRIES_SQL,
  [...ENTRY_FIELDS, 'minutes_in_dlq', 'overdue'],
  ENTRY_TIMESTAMPS,
  'q.dlq_timestamp DESC, q.dlq_entry_uuid DESC',
);

/** listEntries as a JSON array text (for the API). */
export async function listEntriesJson(db: Db, p: ListEntriesParams): Promise<string> {
  const { rows } = await db.query<{ json: string }>({
    text: LIST_ENTRIES_JSON_SQL,
    values: listValues(p),
  });
  return rows[0]!.json;
}

/**
 * One entry by its uuid, or else the most recent entry of the task with that uuid (upstream's
 * GET /v1/dlq/task/{task_uuid}). Primary key, then idx_dlq_task_lookup.
 */
export async function findEntry(db: Db, uuid: string): Promise<DlqEntry | undefined> {
  const { rows } = await db.query<DlqEntry>(
    `(SELECT ${ENTRY_COLUMNS}, 0 AS pick FROM tasker_tasks_dlq d WHERE d.dlq_entry_uuid = $1)
     UNION ALL
     (SELECT ${ENTRY_COLUMNS}, 1 AS pick FROM tasker_tasks_dlq d WHERE d.task_uuid = $1
       ORDER BY d.created_at DESC, d.dlq_entry_uuid DESC LIMIT 1)
     ORDER BY pick LIMIT 1`,
    [uuid],
  );
  if (rows.length === 0) return undefined;
  const { pick: _pick, ...entry } = rows[0] as DlqEntry & { pick: number };
  return entry;
}

export interface ResolvedEntry extends DlqEntry {
  minutes_in_dlq: number;
}

export interface ManualEntryParams {
  taskUuid: string;
  notes: string;
  openedBy: string;
  /** The token that opened it (API and console), recorded in the metadata beside opened_by. */
  openedByTokenId?: string | undefined;
  now: Date;
}

/**
 * Opens a manual_dlq investigation for a task (any state; the task is not changed). Refused when
 * the task does not exist or already has a pending entry.
 */
export async function openManualEntry(db: Db, p: ManualEntryParams): Promise<DlqEntry> {
  const { rows } = await db.query<DlqEntry>(
    `WITH task AS (
       SELECT t.task_uuid, ns.name AS namespace_name, nt.name AS task_name, tr.to_state,
              tr.created_at AS state_entered_at
         FROM tasker_tasks t
         JOIN tasker_named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
         JOIN tasker_task_namespaces ns ON ns.task_namespace_uuid = nt.task_namespace_uuid
         LEFT JOIN tasker_task_transitions tr ON tr.task_uuid = t.task_uuid AND tr.most_recent
        WHERE t.task_uuid = $1
     )
     INSERT INTO tasker_tasks_dlq AS d (task_uuid, original_state, dlq_reason, dlq_timestamp, task_snapshot, metadata,
                                        created_at, updated_at)
     SELECT task.task_uuid, coalesce(task.to_state, 'pending'), 'manual_dlq', $4,
            dlq_detection_snapshot(task.task_uuid, task.namespace_name, task.task_name, coalesce(task.to_state, 'pending'),
                                   floor(extract(epoch FROM $4 - task.state_entered_at) / 60)::integer, NULL, $4),
            jsonb_build_object('detection_method', 'manual', 'opened_by', $3::text, 'notes', $2::text,
                               'time_in_state_minutes', floor(extract(epoch FROM $4 - task.state_entered_at) / 60)::integer)
              || CASE WHEN $5::text IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('opened_by_token_id', $5::text) END,
            $4, $4
       FROM task
     ON CONFLICT (task_uuid) WHERE resolution_status = 'pending' DO NOTHING
     RETURNING ${ENTRY_COLUMNS}`,
    [p.taskUuid, p.notes, p.openedBy, p.now, p.openedByTokenId ?? null],
  );
  if (rows[0]) return rows[0];
  const { rows: task } = await db.query('SELECT 1 FROM tasker_tasks WHERE task_uuid = $1', [p.taskUuid]);
  if (task.length === 0) throw new NotFoundError(`no task ${p.taskUuid}`);
  const { rows: pending } = await db.query<{ dlq_entry_uuid: string }>(
    `SELECT dlq_entry_uuid FROM tasker_tasks_dlq WHERE task_uuid = $1 AND resolution_status = 'pending'`,
    [p.taskUuid],
  );
  throw new UsageError(
    `task ${p.taskUuid} already has a pending investigation (${pending[0]?.dlq_entry_uuid ?? '?'}); add to that one or resolve it first`,
  );
}

export interface ReasonStats {
  dlq_reason: DlqReason;
  total_entries: number;
  pending: number;
  manually_resolved: number;
  permanent_failures: number;
  cancelled: number;
  oldest_entry: Date;
  newest_entry: Date;
  avg_resolution_time_minutes: number | null;
}

/** v_dlq_dashboard: entries by reason (at most five rows). */
export async function statsByReason(db: Db): Promise<ReasonStats[]> {
  const { rows } = await db.query<ReasonStats>(
    'SELECT dlq_reason::text AS dlq_reason, total_entries, pending, manually_resolved, permanent_failures, cancelled, oldest_entry, newest_entry, avg_resolution_time_minutes FROM v_dlq_dashboard ORDER BY total_entries DESC, dlq_reason',
  );
  return rows;
}

export interface QueueItem {
  dlq_entry_uuid: string;
  task_uuid: string;
  original_state: string;
  dlq_reason: DlqReason;
  dlq_timestamp: Date;
  minutes_in_dlq: number;
  namespace_name: string | null;
  task_name: string | null;
  current_state: string | null;
  time_in_state_minutes: number | null;
  priority_score: number;
  overdue: boolean;
}

/**
 * v_dlq_investigation_queue's rows (the same columns and scores), most urgent first, without
 * sorting every pending entry: within a reason the score only grows with age, so the first `limit`
 * overall are among the `limit` oldest pending entries of each reason. Five scans of
 * idx_dlq_pending_reason_timestamp (at most `limit` rows each), then a sort of at most 5 x limit
 * rows. A test checks it against the view.
 */
const INVESTIGATION_QUEUE_SQL = `SELECT d.dlq_entry_uuid, d.task_uuid, d.original_state, d.dlq_reason::text AS dlq_reason, d.dlq_timestamp,
                  w.minutes_in_dlq,
                  (d.task_snapshot ->> 'namespace')::varchar AS namespace_name,
                  (d.task_snapshot ->> 'task_name')::varchar AS task_name,
                  (d.task_snapshot ->> 'current_state')::varchar AS current_state,
                  (d.metadata ->> 'time_in_state_minutes')::integer AS time_in_state_minutes,
                  CASE d.dlq_reason
                    WHEN 'dependency_cycle_detected' THEN 1000
                    WHEN 'max_retries_exceeded' THEN 500
                    WHEN 'staleness_timeout' THEN 100
                    WHEN 'worker_unavailable' THEN 50
                    ELSE 10
                  END + w.minutes_in_dlq AS priority_score,
                  d.dlq_timestamp < now() - make_interval(hours => s.max_pending_age_hours) AS overdue
             FROM unnest(enum_range(NULL::dlq_reason)) AS r (reason)
            CROSS JOIN LATERAL (
              SELECT x.* FROM tasker_tasks_dlq x
               WHERE x.resolution_status = 'pending' AND x.dlq_reason = r.reason
               ORDER BY x.dlq_timestamp LIMIT $1) d
            CROSS JOIN tasker_lifecycle_settings s
            CROSS JOIN LATERAL (SELECT floor(extract(epoch FROM now() - d.dlq_timestamp) / 60)::integer AS minutes_in_dlq) w
            ORDER BY priority_score DESC, d.dlq_timestamp
            LIMIT $1`;

export async function investigationQueue(db: Db, limit: number): Promise<QueueItem[]> {
  const { rows } = await db.query<QueueItem>({
    text: INVESTIGATION_QUEUE_SQL,
    values: [limit],
  });
  return rows;
}

const INVESTIGATION_QUEUE_JSON_SQL = jsonArraySql(
  INVESTIGATION_QUEUE_SQL,
  [
    'dlq_entry_uuid',
    'task_uuid',
    'original_state',
    'dlq_reason',
    'dlq_timestamp',
    'minutes_in_dlq',
    'namespace_name',
    'task_name',
    'current_state',
    'time_in_state_minutes',
    'priority_score',
    'overdue',
  ],
  ['dlq_timestamp'],
  'q.priority_score DESC, q.dlq_timestamp',
);

/** investigationQueue as a JSON array text (for the API). */
export async function investigationQueueJson(db: Db, limit: number): Promise<string> {
  const { rows } = await db.query<{ json: string }>({
    text: INVESTIGATION_QUEUE_JSON_SQL,
    values: [limit],
  });
  return rows[0]!.json;
}

export interface PendingSummary {
  pending: number;
  overdue: number;
  oldest_pending_at: Date | null;
}

/**
 * Pending investigations: how many, how many overdue, and the oldest (the enrichment backlog is
 * enrichmentBacklog's, in dlq-enrichment.ts). Each figure reads only an index, no row and no
 * snapshot (it used to read every pending row, and `task_snapshot ? 'enrichment'` detoasted every
 * enriched snapshot: in a stale storm, a million of them on every metrics scrape): pending from a
 * pending-only index (idx_dlq_pending_reason_timestamp, the smallest), the oldest and overdue from
 * idx_dlq_resolution_status (resolution_status, dlq_timestamp: its first entry, and its range
 * before the cutoff).
 */
export async function pendingSummary(db: Db, now: Date): Promise<PendingSummary> {
  const { rows } = await db.query<PendingSummary>(
    `SELECT (SELECT count(*) FROM tasker_tasks_dlq d WHERE d.resolution_status = 'pending') AS pending,
            (SELECT count(*) FROM tasker_tasks_dlq d
              WHERE d.resolution_status = 'pending'
                AND d.dlq_timestamp < (SELECT $1::timestamptz - make_interval(hours => s.max_pending_age_hours)
                                         FROM tasker_lifecycle_settings s WHERE s.singleton)) AS overdue,
            (SELECT min(d.dlq_timestamp) FROM tasker_tasks_dlq d WHERE d.resolution_status = 'pending')
              AS oldest_pending_at`,
    [now],
  );
  return rows[0]!;
}

// --- changes made by the API, the console and the CLI (src/operations/investigations.ts wraps
// each in a transaction with its audit row) ------------------------------------------------------

/** One entry, locked FOR UPDATE for the caller's transaction (primary key). */
export async function lockEntry(db: Db, entryUuid: string): Promise<DlqEntry | undefined> {
  const { rows } = await db.query<DlqEntry>(
    `SELECT ${ENTRY_COLUMNS} FROM tasker_tasks_dlq d WHERE d.dlq_entry_uuid = $1 FOR UPDATE`,
    [entryUuid],
  );
  return rows[0];
}

export interface UpdateEntryParams {
  entryUuid: string;
  /** A final status: resolves the entry (resolution_timestamp becomes now, with who resolved it). */
  status?: TerminalResolutionStatus | undefined;
  notes?: string | undefined;
  /** Who resolves it (with a status): the name of the identity making the change. */
  resolvedBy?: string | undefined;
  /** The token resolving it, if it is a token (with a status). */
  resolvedByTokenId?: string | undefined;
  /** What the caller gave as resolved_by (with a status): kept apart, shown as "on behalf of". */
  onBehalfOf?: string | undefined;
  /** Replaces the metadata (upstream's PATCH semantics: omitted fields keep their value). */
  metadata?: Record<string, unknown> | undefined;
  now: Date;
}

/**
 * Upstream's PATCH on a pending entry: a partial update, omitted fields kept (primary key). With a
 * status it resolves the entry and records who did; without one it changes notes or metadata. A
 * change that would leave every value as it is writes nothing and returns undefined, as does an
 * entry that is not pending (a resolved entry is final).
 */
export async function updateEntry(db: Db, p: UpdateEntryParams): Promise<ResolvedEntry | undefined> {
  const { rows } = await db.query<ResolvedEntry>(
    `UPDATE tasker_tasks_dlq d
        SET resolution_status = coalesce($2::dlq_resolution_status, d.resolution_status),
            resolution_timestamp = CASE WHEN $2::dlq_resolution_status IS NULL THEN d.resolution_timestamp ELSE $6 END,
            resolution_notes = coalesce($3, d.resolution_notes),
            resolved_by = CASE WHEN $2::dlq_resolution_status IS NULL THEN d.resolved_by ELSE $4 END,
            resolved_by_token_id = CASE WHEN $2::dlq_resolution_status IS NULL THEN d.resolved_by_token_id ELSE $7 END,
            resolved_on_behalf_of = CASE WHEN $2::dlq_resolution_status IS NULL THEN d.resolved_on_behalf_of ELSE $8 END,
            metadata = coalesce($5::jsonb, d.metadata),
            updated_at = $6
      WHERE d.dlq_entry_uuid = $1
        AND d.resolution_status = 'pending'
        AND ($2::dlq_resolution_status IS NOT NULL
             OR d.resolution_notes IS DISTINCT FROM coalesce($3, d.resolution_notes)
             OR d.metadata IS DISTINCT FROM coalesce($5::jsonb, d.metadata))
      RETURNING ${ENTRY_COLUMNS},
                floor(extract(epoch FROM coalesce(d.resolution_timestamp, $6) - d.dlq_timestamp) / 60)::integer AS minutes_in_dlq`,
    [
      p.entryUuid,
      p.status ?? null,
      p.notes ?? null,
      p.resolvedBy ?? null,
      p.metadata === undefined ? null : JSON.stringify(p.metadata),
      p.now,
      p.resolvedByTokenId ?? null,
      p.onBehalfOf ?? null,
    ],
  );
  return rows[0];
}

/** The pending entry of a task, if any (idx_dlq_unique_pending_task). */
export async function pendingEntryOfTask(db: Db, taskUuid: string): Promise<string | undefined> {
  const { rows } = await db.query<{ dlq_entry_uuid: string }>(
    `SELECT dlq_entry_uuid FROM tasker_tasks_dlq WHERE task_uuid = $1 AND resolution_status = 'pending'`,
    [taskUuid],
  );
  return rows[0]?.dlq_entry_uuid;
}

export interface BulkFilter {
  reason?: DlqReason | undefined;
  /** The template's namespace, as the entry's snapshot records it. */
  namespace?: string | undefined;
  /** The template's name, as the entry's snapshot records it. */
  taskName?: string | undefined;
  originalState?: string | undefined;
  /** Only entries that entered the DLQ more than this many minutes before now. */
  olderThanMinutes?: number | undefined;
  /** Only entries of this group (their failure fingerprint, issue 27). */
  group?: string | undefined;
}

const BULK_WHERE = `d.resolution_status = 'pending'
        AND ($1::dlq_reason IS NULL OR d.dlq_reason = $1)
        AND ($2::text IS NULL OR d.task_snapshot->>'namespace' = $2)
        AND ($3::text IS NULL OR d.task_snapshot->>'task_name' = $3)
        AND ($4::text IS NULL OR d.original_state = $4)
        AND ($5::integer IS NULL OR d.dlq_timestamp < $6::timestamptz - make_interval(mins => $5))
        AND ($7::text IS NULL OR d.failure_fingerprint = $7)`;

function bulkParams(f: BulkFilter, now: Date): unknown[] {
  return [
    f.reason ?? null,
    f.namespace ?? null,
    f.taskName ?? null,
    f.originalState ?? null,
    f.olderThanMinutes ?? null,
    now,
    f.group ?? null,
  ];
}

/**
 * The ids of the pending entries matching a filter, oldest first, at most limit, locked FOR UPDATE
 * when asked. With a group: idx_dlq_failure_fingerprint (the group's pending entries, in this
 * order); else idx_dlq_resolution_status (pending, by dlq_timestamp; the other conditions filter
 * those rows). Only the ids are returned: a preview of thousands reads no snapshot.
 */
export async function pendingMatchingIds(
  db: Db,
  filter: BulkFilter,
  now: Date,
  limit: number,
  lock: boolean,
): Promise<string[]> {
  const { rows } = await db.query<{ dlq_entry_uuid: string }>(
    `SELECT d.dlq_entry_uuid FROM tasker_tasks_dlq d
      WHERE ${BULK_WHERE}
      ORDER BY d.dlq_timestamp, d.dlq_entry_uuid
      LIMIT $8 ${lock ? 'FOR UPDATE' : ''}`,
    [...bulkParams(filter, now), limit],
  );
  return rows.map((r) => r.dlq_entry_uuid);
}

/** The given entries, oldest first (primary key). */
export async function entriesByIds(db: Db, entryUuids: readonly string[]): Promise<DlqEntry[]> {
  if (entryUuids.length === 0) return [];
  const { rows } = await db.query<DlqEntry>(
    `SELECT ${ENTRY_COLUMNS} FROM tasker_tasks_dlq d
      WHERE d.dlq_entry_uuid = ANY ($1::uuid[])
      ORDER BY d.dlq_timestamp, d.dlq_entry_uuid`,
    [entryUuids],
  );
  return rows;
}

/** Resolves the given pending entries (primary key); returns the uuids resolved. */
export async function resolveEntries(
  db: Db,
  entryUuids: readonly string[],
  status: TerminalResolutionStatus,
  notes: string,
  resolvedBy: { name: string; tokenId?: string | undefined },
  now: Date,
): Promise<string[]> {
  const { rows } = await db.query<{ dlq_entry_uuid: string }>(
    `UPDATE tasker_tasks_dlq d
        SET resolution_status = $2::dlq_resolution_status, resolution_notes = $3, resolved_by = $4,
            resolved_by_token_id = $6, resolved_on_behalf_of = NULL, resolution_timestamp = $5, updated_at = $5
      WHERE d.dlq_entry_uuid = ANY ($1::uuid[]) AND d.resolution_status = 'pending'
      RETURNING d.dlq_entry_uuid`,
    [entryUuids, status, notes, resolvedBy.name, now, resolvedBy.tokenId ?? null],
  );
  return rows.map((r) => r.dlq_entry_uuid);
}

/** The most recent entry of a task, any status (upstream's GET /v1/dlq/task/{uuid}; idx_dlq_task_lookup). */
export async function latestEntryOfTask(db: Db, taskUuid: string): Promise<DlqEntry | undefined> {
  const { rows } = await db.query<DlqEntry>(
    `SELECT ${ENTRY_COLUMNS} FROM tasker_tasks_dlq d WHERE d.task_uuid = $1
      ORDER BY d.created_at DESC, d.dlq_entry_uuid DESC LIMIT 1`,
    [taskUuid],
  );
  return rows[0];
}

export interface StalenessRow {
  task_uuid: string;
  namespace_name: string;
  task_name: string;
  current_state: string;
  time_in_state_minutes: number;
  task_age_minutes: number;
  staleness_threshold_minutes: number;
  health_status: 'healthy' | 'warning' | 'stale';
  priority: number;
}

/**
 * v_task_staleness_monitoring (upstream's GET /v1/dlq/staleness): in-flight tasks, stale first, then
 * warning, then healthy, longest in their state first (idx_task_transitions_in_flight).
 */
export async function stalenessMonitoring(db: Db, limit: number): Promise<StalenessRow[]> {
  const { rows } = await db.query<StalenessRow>(
    `SELECT task_uuid, namespace_name, task_name, current_state, time_in_state_minutes, task_age_minutes,
            staleness_threshold_minutes, health_status, priority
       FROM v_task_staleness_monitoring LIMIT $1`,
    [limit],
  );
  return rows;
}
