import type { EnrichmentDetail } from '../../domain/dlq-enrichment.ts';
import type { Db } from '../pool.ts';

/**
 * Snapshot enrichment writes on tasker_tasks_dlq (migrations/functions/dlq_enriched_snapshot.sql). Each call
 * is one statement: it locks the entries it takes (FOR UPDATE SKIP LOCKED, so concurrent enrichers
 * take disjoint entries), builds each snapshot with dlq_enriched_snapshot and writes it only where
 * task_snapshot has no "enrichment" key yet. An entry is therefore written at most once.
 */

export interface EnrichmentLimits {
  now: Date;
  includeFullTaskSnapshot: boolean;
  maxListItems: number;
  maxHistoryRows: number;
  maxPayloadBytes: number;
  maxSnapshotBytes: number;
}

/** One entry written by this call. */
export interface EnrichedEntry {
  dlq_entry_uuid: string;
  task_found: boolean;
  detail_level: EnrichmentDetail;
  truncated: boolean;
}

/** What happened to one requested entry. */
export type EntryOutcome =
  | 'enriched'
  | 'already_enriched'
  /** Locked by another enricher at that moment (it finishes it) or enriched since this statement began. */
  | 'busy'
  /** No such entry (never existed, or archived/deleted). */
  | 'not_found';

export interface RequestedEntry extends Partial<Omit<EnrichedEntry, 'dlq_entry_uuid'>> {
  dlq_entry_uuid: string;
  outcome: EntryOutcome;
}

const SNAPSHOT_CALL = 'dlq_enriched_snapshot(d.task_snapshot, d.task_uuid, $2, $3, $4, $5, $6, $7)';

const ENRICHED_COLUMNS = `d.dlq_entry_uuid,
  (d.task_snapshot #>> '{enrichment,task_found}')::boolean AS task_found,
  d.task_snapshot #>> '{enrichment,detail_level}' AS detail_level,
  (d.task_snapshot #>> '{enrichment,truncated}')::boolean AS truncated`;

function limitParams(l: EnrichmentLimits): unknown[] {
  return [
    l.now,
    l.includeFullTaskSnapshot,
    l.maxListItems,
    l.maxHistoryRows,
    l.maxPayloadBytes,
    l.maxSnapshotBytes,
  ];
}

/**
 * The sweeper's candidates: pending entries without enrichment, oldest first. Reads
 * idx_dlq_pending_unenriched, whose predicate is this WHERE clause and whose key is this ORDER BY.
 */
export const SWEEP_CANDIDATES_SQL = `SELECT d.dlq_entry_uuid
   FROM tasker_tasks_dlq d
  WHERE d.resolution_status = 'pending' AND NOT (d.task_snapshot ? 'enrichment')
  ORDER BY d.dlq_timestamp, d.dlq_entry_uuid
  LIMIT $1
  FOR UPDATE SKIP LOCKED`;

/**
 * Enriches the given entries (any resolution status) that are not enriched yet, and says for each
 * requested uuid what happened. Primary-key lookups; at most entryUuids.length rows.
 */
export async function enrichEntries(
  db: Db,
  entryUuids: readonly string[],
  limits: EnrichmentLimits,
): Promise<RequestedEntry[]> {
  const { rows } = await db.query<RequestedEntry>(
    `WITH requested AS (
       SELECT DISTINCT r.id FROM unnest($1::uuid[]) AS r(id)
     ),
     picked AS (
       SELECT d.dlq_entry_uuid
         FROM tasker_tasks_dlq d
        WHERE d.dlq_entry_uuid IN (SELECT id FROM requested) AND NOT (d.task_snapshot ? 'enrichment')
        FOR UPDATE SKIP LOCKED
     ),
     enriched AS (
       UPDATE tasker_tasks_dlq d
          SET task_snapshot = ${SNAPSHOT_CALL}
         FROM picked p
        WHERE d.dlq_entry_uuid = p.dlq_entry_uuid AND NOT (d.task_snapshot ? 'enrichment')
       RETURNING ${ENRICHED_COLUMNS}
     )
     SELECT r.id AS dlq_entry_uuid,
            CASE WHEN e.dlq_entry_uuid IS NOT NULL THEN 'enriched'
                 WHEN d.dlq_entry_uuid IS NULL THEN 'not_found'
                 WHEN d.task_snapshot ? 'enrichment' THEN 'already_enriched'
                 ELSE 'busy' END AS outcome,
            e.task_found, e.detail_level, e.truncated
       FROM requested r
       LEFT JOIN enriched e ON e.dlq_entry_uuid = r.id
       LEFT JOIN tasker_tasks_dlq d ON d.dlq_entry_uuid = r.id
      ORDER BY r.id`,
    [entryUuids, ...limitParams(limits)],
  );
  return rows;
}

/**
 * Enriches up to batchSize pending entries that are not enriched yet, oldest first
 * (SWEEP_CANDIDATES_SQL). Returns the entries written; fewer than batchSize means the backlog is
 * empty (or the rest is being enriched by someone else right now).
 */
export async function enrichPendingBatch(
  db: Db,
  batchSize: number,
  limits: EnrichmentLimits,
): Promise<EnrichedEntry[]> {
  const { rows } = await db.query<EnrichedEntry>(
    `WITH picked AS (${SWEEP_CANDIDATES_SQL})
     UPDATE tasker_tasks_dlq d
        SET task_snapshot = ${SNAPSHOT_CALL}
       FROM picked p
      WHERE d.dlq_entry_uuid = p.dlq_entry_uuid AND NOT (d.task_snapshot ? 'enrichment')
     RETURNING ${ENRICHED_COLUMNS}`,
    [batchSize, ...limitParams(limits)],
  );
  return rows;
}

/** The plan of the sweeper's candidate query (to check it reads idx_dlq_pending_unenriched). */
export async function sweepCandidatesPlan(db: Db, batchSize: number): Promise<string> {
  const { rows } = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${SWEEP_CANDIDATES_SQL}`, [batchSize]);
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}

/**
 * The sweep's next candidates without taking them (no lock): the ids a failed sweep batch was
 * working on, so they can be retried one at a time. Reads idx_dlq_pending_unenriched.
 */
export async function sweepCandidateIds(db: Db, batchSize: number): Promise<string[]> {
  const { rows } = await db.query<{ dlq_entry_uuid: string }>(
    `SELECT d.dlq_entry_uuid
       FROM tasker_tasks_dlq d
      WHERE d.resolution_status = 'pending' AND NOT (d.task_snapshot ? 'enrichment')
      ORDER BY d.dlq_timestamp, d.dlq_entry_uuid
      LIMIT $1`,
    [batchSize],
  );
  return rows.map((r) => r.dlq_entry_uuid);
}

/**
 * Records that enriching one entry failed (it ran past the statement timeout, or raised an error),
 * so sweeps move past it instead of failing on it every time: task_snapshot.enrichment becomes
 * {version, failed: true, failed_at, error: {code, message}} (no enriched_at: readers treat it as
 * not enriched). Only while the entry has no enrichment yet. Primary-key UPDATE; returns whether it
 * wrote.
 */
export async function markEnrichmentFailed(
  db: Db,
  entryUuid: string,
  at: Date,
  error: { code: string | null; message: string },
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE tasker_tasks_dlq
        SET task_snapshot = task_snapshot || jsonb_build_object('enrichment', jsonb_build_object(
              'version', 1, 'failed', true, 'failed_at', $2::timestamptz,
              'error', jsonb_build_object('code', $3::text, 'message', left($4::text, 1000))))
      WHERE dlq_entry_uuid = $1 AND NOT (task_snapshot ? 'enrichment')`,
    [entryUuid, at, error.code, error.message],
  );
  return (rowCount ?? 0) > 0;
}
