import type { DlqReason } from '../../domain/dlq.ts';
import type { Db } from '../pool.ts';

/**
 * The web console's reads of tasker_tasks_dlq: the investigation queue with its filters and a
 * page of it, and a task's earlier investigations. The queue orders pending entries as
 * v_dlq_investigation_queue does (reason score plus minutes waiting), against the clock passed in.
 * A page takes the first offset+limit entries of each reason from idx_dlq_pending_reason_timestamp
 * (migrations/0081: within a reason, older is more urgent) and merges them, so a page reads at most
 * five times offset+limit entries; the total counts every matching pending entry (its cost follows
 * the pending backlog).
 */

export interface QueueFilter {
  reason?: DlqReason | undefined;
  /** Exact namespace, as detection recorded it in the snapshot. */
  namespace?: string | undefined;
  /** Exact template (task) name. */
  template?: string | undefined;
  /** Only entries waiting at least this many minutes. */
  minAgeMinutes?: number | undefined;
  overdueOnly?: boolean | undefined;
}

export interface ConsoleQueueRow {
  dlq_entry_uuid: string;
  task_uuid: string;
  original_state: string;
  dlq_reason: DlqReason;
  dlq_timestamp: Date;
  minutes_in_dlq: number;
  namespace_name: string | null;
  task_name: string | null;
  priority_score: number;
  overdue: boolean;
  /** task_snapshot.enrichment as stored (null: never enriched); read with enrichmentState(). */
  enrichment: Record<string, unknown> | null;
  summary: string | null;
}

const FILTER_SQL = `FROM tasker_tasks_dlq d
  CROSS JOIN tasker_lifecycle_settings s
 WHERE d.resolution_status = 'pending'
   AND ($2::dlq_reason IS NULL OR d.dlq_reason = $2)
   AND ($3::text IS NULL OR d.task_snapshot ->> 'namespace' = $3)
   AND ($4::text IS NULL OR d.task_snapshot ->> 'task_name' = $4)
   AND ($5::integer IS NULL OR d.dlq_timestamp <= $1::timestamptz - make_interval(mins => $5))
   AND (NOT $6 OR d.dlq_timestamp < $1::timestamptz - make_interval(hours => s.max_pending_age_hours))`;

function filterParams(f: QueueFilter, now: Date): unknown[] {
  return [
    now,
    f.reason ?? null,
    f.namespace ?? null,
    f.template ?? null,
    f.minAgeMinutes ?? null,
    f.overdueOnly ?? false,
  ];
}

/** One page of pending entries, most urgent first, and how many match in all. */
export async function consoleQueuePage(
  db: Db,
  f: QueueFilter,
  page: { limit: number; offset: number },
  now: Date,
): Promise<{ total: number; rows: ConsoleQueueRow[] }> {
  const params = filterParams(f, now);
  const [{ rows }, { rows: count }] = await Promise.all([
    db.query<ConsoleQueueRow>(
      `WITH firsts AS (
         SELECT p.*
           FROM unnest(enum_range(NULL::dlq_reason)) AS r(reason)
          CROSS JOIN LATERAL (
                SELECT d.dlq_entry_uuid, d.task_uuid, d.original_state, d.dlq_reason, d.dlq_timestamp, d.task_snapshot,
                       s.max_pending_age_hours
                  ${FILTER_SQL}
                   AND d.dlq_reason = r.reason
                 ORDER BY d.dlq_timestamp, d.dlq_entry_uuid
                 LIMIT $7::integer + $8::integer) p
       )
       SELECT f.dlq_entry_uuid, f.task_uuid, f.original_state, f.dlq_reason::text AS dlq_reason, f.dlq_timestamp,
              w.minutes_in_dlq,
              (f.task_snapshot ->> 'namespace')::varchar AS namespace_name,
              (f.task_snapshot ->> 'task_name')::varchar AS task_name,
              CASE f.dlq_reason
                WHEN 'dependency_cycle_detected' THEN 1000
                WHEN 'max_retries_exceeded' THEN 500
                WHEN 'staleness_timeout' THEN 100
                WHEN 'worker_unavailable' THEN 50
                ELSE 10
              END + w.minutes_in_dlq AS priority_score,
              f.dlq_timestamp < $1::timestamptz - make_interval(hours => f.max_pending_age_hours) AS overdue,
              f.task_snapshot -> 'enrichment' AS enrichment,
              f.task_snapshot #>> '{diagnosis,summary}' AS summary
         FROM firsts f
        CROSS JOIN LATERAL (SELECT floor(extract(epoch FROM $1::timestamptz - f.dlq_timestamp) / 60)::integer AS minutes_in_dlq) w
        ORDER BY priority_score DESC, f.dlq_timestamp, f.dlq_entry_uuid
        LIMIT $7 OFFSET $8`,
      [...params, page.limit, page.offset],
    ),
    db.query<{ total: number }>(`SELECT count(*)::integer AS total ${FILTER_SQL}`, params),
  ]);
  return { total: count[0]!.total, rows };
}

/**
 * The namespaces and template names the engine knows, for the filter's choices (at most `limit`
 * each): tasker_task_namespaces and tasker_named_tasks are small, and their unique indexes give
 * the names in order.
 */
export async function queueFilterChoices(
  db: Db,
  limit: number,
): Promise<{ namespaces: string[]; templates: string[] }> {
  const { rows } = await db.query<{ kind: string; value: string }>(
    `(SELECT 'namespace' AS kind, n.name::text AS value FROM tasker_task_namespaces n ORDER BY n.name LIMIT $1)
     UNION ALL
     (SELECT DISTINCT 'template', t.name::text FROM tasker_named_tasks t ORDER BY 2 LIMIT $1)`,
    [limit],
  );
  return {
    namespaces: rows.filter((r) => r.kind === 'namespace').map((r) => r.value),
    templates: rows.filter((r) => r.kind === 'template').map((r) => r.value),
  };
}

export interface EarlierInvestigation {
  dlq_entry_uuid: string;
  dlq_reason: DlqReason;
  dlq_timestamp: Date;
  resolution_status: string;
  resolution_timestamp: Date | null;
  resolved_by: string | null;
  resolved_by_token_id: string | null;
  resolved_on_behalf_of: string | null;
  resolution_notes: string | null;
}

/** The task's other investigations, newest first (idx_dlq_task_lookup; at most `limit`). */
export async function otherInvestigationsOfTask(
  db: Db,
  taskUuid: string,
  exceptEntryUuid: string,
  limit: number,
): Promise<EarlierInvestigation[]> {
  const { rows } = await db.query<EarlierInvestigation>(
    `SELECT dlq_entry_uuid, dlq_reason::text AS dlq_reason, dlq_timestamp, resolution_status::text AS resolution_status,
            resolution_timestamp, resolved_by, resolved_by_token_id, resolved_on_behalf_of, resolution_notes
       FROM tasker_tasks_dlq
      WHERE task_uuid = $1 AND dlq_entry_uuid <> $2
      ORDER BY dlq_timestamp DESC, dlq_entry_uuid DESC
      LIMIT $3`,
    [taskUuid, exceptEntryUuid, limit],
  );
  return rows;
}

/**
 * The template (namespace/name, as detection recorded it in the snapshot) of each entry, live or
 * archived, for the audit page (the primary keys of tasker_tasks_dlq and tasker_tasks_dlq_archive;
 * at most as many rows as uuids given).
 */
export async function templatesOfEntries(
  db: Db,
  entryUuids: readonly string[],
): Promise<Map<string, string>> {
  if (entryUuids.length === 0) return new Map();
  const { rows } = await db.query<{ dlq_entry_uuid: string; template: string }>(
    `SELECT dlq_entry_uuid, concat_ws('/', task_snapshot ->> 'namespace', task_snapshot ->> 'task_name') AS template
       FROM tasker_tasks_dlq WHERE dlq_entry_uuid = ANY ($1::uuid[])
     UNION ALL
     SELECT dlq_entry_uuid, concat_ws('/', task_snapshot ->> 'namespace', task_snapshot ->> 'task_name')
       FROM tasker_tasks_dlq_archive WHERE dlq_entry_uuid = ANY ($1::uuid[])`,
    [entryUuids],
  );
  return new Map(rows.map((r) => [r.dlq_entry_uuid, r.template]));
}
