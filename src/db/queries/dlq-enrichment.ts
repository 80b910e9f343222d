import type { EnrichmentDetail } from '../../domain/dlq-enrichment.ts';
import type { Db } from '../pool.ts';

/**
 * Snapshot enrichment writes on tasker_tasks_dlq (migrations/functions/dlq_enriched_snapshot.sql). Each call
 * is one statement: it locks the entries it takes (FOR UPDATE SKIP LOCKED, so concurrent enrichers
 * take disjoint entries), builds each snapshot with dlq_enriched_snapshot and writes it only where
 * the entry is ENRICHABLE: never enriched (task_snapshot has no "enrichment" key), or its last
 * attempt failed and the next is due (enrichment_next_attempt_at <= now, migration 0140). An
 * enriched entry has the key and no next attempt, so it is written at most once.
 */

/** The SQL condition, on `d`, for an entry that may be enriched now ($now is the run's time). */
function enrichable(now: string): string {
  return `(NOT (d.task_snapshot ? 'enrichment') OR d.enrichment_next_attempt_at <= ${now})`;
}

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
  /** An earlier attempt at it had failed (this was a retry). */
  retried: boolean;
}

/** What happened to one requested entry. */
export type EntryOutcome =
  | 'enriched'
  | 'already_enriched'
  /** Locked by another enricher at that moment (it finishes it) or enriched since this statement began. */
  | 'busy'
  /** No such entry (never existed, or archived/deleted). */
  | 'not_found'
  /** An earlier attempt failed: the next is not due yet (the sweep takes it then), or it was given up. */
  | 'failed_before';

export interface RequestedEntry extends Partial<Omit<EnrichedEntry, 'dlq_entry_uuid'>> {
  dlq_entry_uuid: string;
  outcome: EntryOutcome;
}

const SNAPSHOT_CALL =
  'dlq_enriched_snapshot(d.task_snapshot, d.task_uuid, $2, $3, $4, $5, $6, $7, d.dlq_reason, d.original_state)';

/**
 * The enriched snapshot and the failure fingerprint it holds (failure_signature.fingerprint, issue
 * 27), written together; the snapshot is built once per entry (OFFSET 0 keeps the subquery from
 * being inlined into two calls).
 */
const ENRICHED_SET = `(task_snapshot, failure_fingerprint) =
            (SELECT z.s, z.s #>> '{failure_signature,fingerprint}' FROM (SELECT ${SNAPSHOT_CALL} AS s OFFSET 0) z),
          enrichment_next_attempt_at = NULL`;

const ENRICHED_COLUMNS = `d.dlq_entry_uuid,
  (d.task_snapshot #>> '{enrichment,task_found}')::boolean AS task_found,
  d.task_snapshot #>> '{enrichment,detail_level}' AS detail_level,
  (d.task_snapshot #>> '{enrichment,truncated}')::boolean AS truncated,
  (d.task_snapshot #> '{enrichment,failed_attempts}') IS NOT NULL AS retried`;

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
 * The sweeper's candidates, in two ranges, each read in its index's order so that a batch reads
 * about as many index entries as it takes, however large the backlog:
 *   fresh  pending entries never enriched, oldest first: idx_dlq_pending_unenriched, whose predicate
 *          is this WHERE clause and whose key is this ORDER BY;
 *   due    pending entries whose last attempt failed and whose next attempt is due ($2 = now),
 *          earliest first: idx_dlq_enrichment_retries (key enrichment_next_attempt_at, dlq_entry_uuid;
 *          given-up entries wait at 'infinity' and are never due).
 * New entries come first: in a storm an investigator needs every entry's diagnosis before a second
 * attempt at one that failed. Retries fill what is left of a batch, so they wait at most until the
 * backlog of new entries is drained.
 */
const FRESH_CANDIDATES = `SELECT d.dlq_entry_uuid
   FROM tasker_tasks_dlq d
  WHERE d.resolution_status = 'pending' AND NOT (d.task_snapshot ? 'enrichment')
  ORDER BY d.dlq_timestamp, d.dlq_entry_uuid`;
const DUE_CANDIDATES = `SELECT d.dlq_entry_uuid
   FROM tasker_tasks_dlq d
  WHERE d.resolution_status = 'pending' AND d.enrichment_next_attempt_at <= $2
  ORDER BY d.enrichment_next_attempt_at, d.dlq_entry_uuid`;

/** Fresh entries, locked ($1 = batch size). */
export const SWEEP_CANDIDATES_SQL = `${FRESH_CANDIDATES}
  LIMIT $1
  FOR UPDATE SKIP LOCKED`;

/** Due retries, locked ($1 = how many, $2 = now). */
export const RETRY_CANDIDATES_SQL = `${DUE_CANDIDATES}
  LIMIT $1
  FOR UPDATE SKIP LOCKED`;

/**
 * Enriches the given entries (any resolution status) that are enrichable (never enriched, or a
 * retry is due), and says for each requested uuid what happened. Primary-key lookups; at most
 * entryUuids.length rows.
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
        WHERE d.dlq_entry_uuid IN (SELECT id FROM requested) AND ${enrichable('$2')}
        FOR UPDATE SKIP LOCKED
     ),
     enriched AS (
       UPDATE tasker_tasks_dlq d
          SET ${ENRICHED_SET}
         FROM picked p
        WHERE d.dlq_entry_uuid = p.dlq_entry_uuid AND ${enrichable('$2')}
       RETURNING ${ENRICHED_COLUMNS}
     )
     SELECT r.id AS dlq_entry_uuid,
            CASE WHEN e.dlq_entry_uuid IS NOT NULL THEN 'enriched'
                 WHEN d.dlq_entry_uuid IS NULL THEN 'not_found'
                 WHEN d.enrichment_next_attempt_at > $2 THEN 'failed_before'
                 WHEN d.task_snapshot ? 'enrichment' AND d.enrichment_next_attempt_at IS NULL THEN 'already_enriched'
                 ELSE 'busy' END AS outcome,
            e.task_found, e.detail_level, e.truncated, e.retried
       FROM requested r
       LEFT JOIN enriched e ON e.dlq_entry_uuid = r.id
       LEFT JOIN tasker_tasks_dlq d ON d.dlq_entry_uuid = r.id
      ORDER BY r.id`,
    [entryUuids, ...limitParams(limits)],
  );
  return rows;
}

/**
 * Enriches up to batchSize pending entries, new ones oldest first, then due retries
 * (SWEEP_CANDIDATES_SQL, RETRY_CANDIDATES_SQL). Returns the entries written; fewer than batchSize
 * means both ranges are empty (or the rest is being enriched by someone else right now).
 */
export async function enrichPendingBatch(
  db: Db,
  batchSize: number,
  limits: EnrichmentLimits,
): Promise<EnrichedEntry[]> {
  const { rows } = await db.query<EnrichedEntry>(
    `WITH fresh AS (${SWEEP_CANDIDATES_SQL}),
     due AS (${DUE_CANDIDATES}
       LIMIT greatest($1 - (SELECT count(*) FROM fresh), 0)
       FOR UPDATE SKIP LOCKED),
     picked AS (SELECT dlq_entry_uuid FROM fresh UNION ALL SELECT dlq_entry_uuid FROM due)
     UPDATE tasker_tasks_dlq d
        SET ${ENRICHED_SET}
       FROM picked p
      WHERE d.dlq_entry_uuid = p.dlq_entry_uuid AND ${enrichable('$2')}
     RETURNING ${ENRICHED_COLUMNS}`,
    [batchSize, ...limitParams(limits)],
  );
  return rows;
}

/** The plans of the sweeper's two candidate queries (to check which index each reads). */
export async function sweepCandidatesPlan(db: Db, batchSize: number, now = new Date()): Promise<string> {
  const plans: string[] = [];
  for (const [sql, params] of [
    [SWEEP_CANDIDATES_SQL, [batchSize]],
    [RETRY_CANDIDATES_SQL, [batchSize, now]],
  ] as const) {
    const { rows } = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, [...params]);
    plans.push(rows.map((r) => r['QUERY PLAN']).join('\n'));
  }
  return plans.join('\n');
}

/**
 * The sweep's next candidates without taking them (no lock), in the order enrichPendingBatch takes
 * them: the ids a failed sweep batch was working on, so they can be tried one at a time. Reads
 * idx_dlq_pending_unenriched, then idx_dlq_enrichment_retries for what is left of the batch.
 */
export async function sweepCandidateIds(db: Db, batchSize: number, now: Date): Promise<string[]> {
  const { rows } = await db.query<{ dlq_entry_uuid: string }>(
    `WITH fresh AS (${FRESH_CANDIDATES} LIMIT $1)
     SELECT dlq_entry_uuid FROM fresh
     UNION ALL
     (${DUE_CANDIDATES} LIMIT greatest($1 - (SELECT count(*) FROM fresh), 0))`,
    [batchSize, now],
  );
  return rows.map((r) => r.dlq_entry_uuid);
}

/**
 * Locks one entry for an attempt on its own, if it is enrichable and no other enricher holds it
 * (FOR UPDATE SKIP LOCKED; primary key). True when this transaction now holds it.
 */
export async function lockEnrichableEntry(db: Db, entryUuid: string, now: Date): Promise<boolean> {
  const { rowCount } = await db.query(
    `SELECT 1 FROM tasker_tasks_dlq d
      WHERE d.dlq_entry_uuid = $1 AND ${enrichable('$2')}
      FOR UPDATE SKIP LOCKED`,
    [entryUuid, now],
  );
  return (rowCount ?? 0) > 0;
}

/** How failed attempts are tried again (dlq.enrichment.max_attempts, retry_delay_*). */
export interface RetryPolicy {
  /** Attempts in all; when this many have failed the entry is given up. */
  maxAttempts: number;
  /** Delay after the first failed attempt; it doubles after each further one. */
  retryDelaySeconds: number;
  retryDelayMaxSeconds: number;
}

/** What markEnrichmentFailed recorded. */
export interface FailureRecord {
  /** Attempts at this entry that have failed, this one included. */
  failed_attempts: number;
  /** When the next attempt is due; null when given up. */
  next_attempt_at: Date | null;
  gave_up: boolean;
}

/**
 * Records that enriching one entry failed (it ran past the statement timeout, or raised an error),
 * so sweeps move past it until its next attempt is due instead of failing on it every time:
 * task_snapshot.enrichment becomes {version, failed: true, failed_at, error: {code, message},
 * failed_attempts, max_attempts, next_attempt_at, gave_up} (no enriched_at: readers treat it as
 * not enriched), and enrichment_next_attempt_at the same time (idx_dlq_enrichment_retries). The
 * n-th failed attempt schedules the next after retryDelaySeconds x 2^(n-1), at most
 * retryDelayMaxSeconds, counted from `at` (the run's time); the maxAttempts-th gives up
 * (next_attempt_at 'infinity' in the column, null in the record). Only while the entry is
 * enrichable, and only if no other enricher holds it (SKIP LOCKED: that one settles it). Primary
 * key; returns what was recorded, or null if nothing was written.
 */
export async function markEnrichmentFailed(
  db: Db,
  entryUuid: string,
  at: Date,
  error: { code: string | null; message: string },
  policy: RetryPolicy,
): Promise<FailureRecord | null> {
  const { rows } = await db.query<FailureRecord>(
    `WITH cur AS (
       SELECT d.dlq_entry_uuid,
              coalesce((d.task_snapshot #>> '{enrichment,failed_attempts}')::integer, 0) + 1 AS n
         FROM tasker_tasks_dlq d
        WHERE d.dlq_entry_uuid = $1 AND ${enrichable('$2')}
        FOR UPDATE SKIP LOCKED
     ),
     plan AS (
       SELECT cur.dlq_entry_uuid, cur.n, cur.n >= $5 AS gave_up,
              CASE WHEN cur.n < $5
                   THEN $2::timestamptz + make_interval(secs => least($7::double precision,
                                                                     $6::double precision * power(2, cur.n - 1)))
              END AS next_at
         FROM cur
     )
     UPDATE tasker_tasks_dlq d
        SET task_snapshot = d.task_snapshot || jsonb_build_object('enrichment', jsonb_build_object(
              'version', 1, 'failed', true, 'failed_at', $2::timestamptz,
              'error', jsonb_build_object('code', $3::text, 'message', left($4::text, 1000)),
              'failed_attempts', p.n, 'max_attempts', $5::integer,
              'next_attempt_at', p.next_at, 'gave_up', p.gave_up)),
            enrichment_next_attempt_at = CASE WHEN p.gave_up THEN 'infinity'::timestamptz ELSE p.next_at END
       FROM plan p
      WHERE d.dlq_entry_uuid = p.dlq_entry_uuid
     RETURNING p.n AS failed_attempts, p.next_at AS next_attempt_at, p.gave_up`,
    [
      entryUuid,
      at,
      error.code,
      error.message,
      policy.maxAttempts,
      policy.retryDelaySeconds,
      policy.retryDelayMaxSeconds,
    ],
  );
  return rows[0] ?? null;
}

/** The enrichment backlog, each figure read from its own index (see each field). */
export interface EnrichmentBacklog {
  /** Pending entries never enriched (idx_dlq_pending_unenriched, index only). */
  awaiting: number;
  /** Pending entries whose last attempt failed and that will be tried again (idx_dlq_enrichment_retries, before 'infinity'). */
  retrying: number;
  /** Of those, the ones whose next attempt is due now (the same range, up to now). */
  retry_due: number;
  /** Pending entries given up after max_attempts failed attempts (idx_dlq_enrichment_retries, at 'infinity'). */
  failed: number;
  /** When the oldest pending entry never enriched was opened (the first entry of idx_dlq_pending_unenriched). */
  oldest_awaiting_at: Date | null;
}

/**
 * The enrichment backlog for status and the gauges. Each count reads only its index range (no
 * snapshot is read), so it costs a few microseconds per entry counted: a million entries awaiting
 * enrichment is a read of that index's million entries, not of their snapshots.
 */
export async function enrichmentBacklog(db: Db, now: Date): Promise<EnrichmentBacklog> {
  const { rows } = await db.query<EnrichmentBacklog>(
    `SELECT (SELECT count(*) FROM tasker_tasks_dlq d
              WHERE d.resolution_status = 'pending' AND NOT (d.task_snapshot ? 'enrichment'))::integer AS awaiting,
            (SELECT count(*) FROM tasker_tasks_dlq d
              WHERE d.resolution_status = 'pending' AND d.enrichment_next_attempt_at IS NOT NULL
                AND d.enrichment_next_attempt_at < 'infinity')::integer AS retrying,
            (SELECT count(*) FROM tasker_tasks_dlq d
              WHERE d.resolution_status = 'pending' AND d.enrichment_next_attempt_at IS NOT NULL
                AND d.enrichment_next_attempt_at <= $1)::integer AS retry_due,
            (SELECT count(*) FROM tasker_tasks_dlq d
              WHERE d.resolution_status = 'pending' AND d.enrichment_next_attempt_at IS NOT NULL
                AND d.enrichment_next_attempt_at = 'infinity')::integer AS failed,
            (SELECT min(d.dlq_timestamp) FROM tasker_tasks_dlq d
              WHERE d.resolution_status = 'pending' AND NOT (d.task_snapshot ? 'enrichment')) AS oldest_awaiting_at`,
    [now],
  );
  return rows[0]!;
}

/** The plan of enrichmentBacklog (to check that every count reads its index only). */
export async function enrichmentBacklogPlan(db: Db, now: Date): Promise<string> {
  const { rows } = await db.query<{ 'QUERY PLAN': string }>(
    `EXPLAIN SELECT (SELECT count(*) FROM tasker_tasks_dlq d
              WHERE d.resolution_status = 'pending' AND NOT (d.task_snapshot ? 'enrichment')),
            (SELECT count(*) FROM tasker_tasks_dlq d
              WHERE d.resolution_status = 'pending' AND d.enrichment_next_attempt_at IS NOT NULL
                AND d.enrichment_next_attempt_at <= $1)`,
    [now],
  );
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}

// --- the fingerprint backfill (issue 27) ----------------------------------------------------------

/**
 * Pending entries to give a fingerprint (or a new one) without enriching them again, in two
 * ranges, each read in its index's order:
 *   unfingerprinted  enriched without one (before this build, or by the previous build's workers
 *                    during a rolling deploy), oldest first: idx_dlq_pending_unfingerprinted,
 *                    whose predicate is this WHERE clause and whose key is this ORDER BY;
 *   older rules      in a group made by an older rule set (tasker_dlq_groups.rule_version below
 *                    dlq_failure_rules_version()): the groups' table (a few rows), then
 *                    idx_dlq_failure_fingerprint per group, in no particular order.
 * Both are empty once the backfill is done, so a sweep that finds nothing to enrich reads two
 * empty index ranges.
 */
const UNFINGERPRINTED = `SELECT d.dlq_entry_uuid
   FROM tasker_tasks_dlq d
  WHERE d.resolution_status = 'pending' AND d.failure_fingerprint IS NULL
    AND d.enrichment_next_attempt_at IS NULL AND d.task_snapshot ? 'enrichment'
  ORDER BY d.dlq_timestamp, d.dlq_entry_uuid`;
const OLDER_RULES = `SELECT d.dlq_entry_uuid
   FROM tasker_dlq_groups g
   JOIN tasker_tasks_dlq d ON d.failure_fingerprint = g.fingerprint AND d.resolution_status = 'pending'
  WHERE g.rule_version < dlq_failure_rules_version()`;

/** The condition, on `d`, for an entry the backfill may write (re-checked on the locked row). */
const BACKFILLABLE = `d.resolution_status = 'pending'
   AND ((d.failure_fingerprint IS NULL AND d.enrichment_next_attempt_at IS NULL AND d.task_snapshot ? 'enrichment')
        OR d.failure_fingerprint IN (SELECT g.fingerprint FROM tasker_dlq_groups g
                                      WHERE g.rule_version < dlq_failure_rules_version()))`;

/** One entry the backfill wrote. */
export interface BackfilledEntry {
  dlq_entry_uuid: string;
  failure_fingerprint: string;
  /** "read", "task_missing", or "unavailable" (its graph was not read: blocking steps unknown). */
  graph: string;
}

/**
 * The write: the entry's failure signature (dlq_entry_failure_signature at $2, reading the graph
 * unless $3 is false) added to its snapshot as failure_signature, and its fingerprint set; the rest
 * of the snapshot (the enrichment as it was written) is kept.
 */
const BACKFILL_SET = `(task_snapshot, failure_fingerprint) =
          (SELECT d.task_snapshot || jsonb_build_object('failure_signature', z.s), z.s ->> 'fingerprint'
             FROM (SELECT dlq_entry_failure_signature(d.task_snapshot, d.task_uuid, d.dlq_reason, d.original_state, $2, $3) AS s
                   OFFSET 0) z)`;

/**
 * Gives up to `limit` pending entries their fingerprint (unfingerprinted first, then older rules),
 * each locked FOR UPDATE SKIP LOCKED so concurrent sweeps take disjoint entries. One statement;
 * returns the entries written (fewer than limit: both ranges are empty, or the rest is held).
 */
export async function backfillFingerprints(db: Db, limit: number, now: Date): Promise<BackfilledEntry[]> {
  const { rows } = await db.query<BackfilledEntry>(
    `WITH unfingerprinted AS (${UNFINGERPRINTED} LIMIT $1 FOR UPDATE SKIP LOCKED),
     older AS (${OLDER_RULES}
       LIMIT greatest($1 - (SELECT count(*) FROM unfingerprinted), 0)
       FOR UPDATE OF d SKIP LOCKED),
     picked AS (SELECT dlq_entry_uuid FROM unfingerprinted UNION ALL SELECT dlq_entry_uuid FROM older)
     UPDATE tasker_tasks_dlq d
        SET ${BACKFILL_SET}
       FROM picked p
      WHERE d.dlq_entry_uuid = p.dlq_entry_uuid AND ${BACKFILLABLE}
     RETURNING d.dlq_entry_uuid, d.failure_fingerprint, d.task_snapshot #>> '{failure_signature,graph}' AS graph`,
    [limit, now, true],
  );
  return rows;
}

/** The backfill's next candidates without taking them (no lock): a failed batch's, one at a time. */
export async function backfillCandidateIds(db: Db, limit: number): Promise<string[]> {
  const { rows } = await db.query<{ dlq_entry_uuid: string }>(
    `WITH unfingerprinted AS (${UNFINGERPRINTED} LIMIT $1)
     SELECT dlq_entry_uuid FROM unfingerprinted
     UNION ALL
     (${OLDER_RULES} LIMIT greatest($1 - (SELECT count(*) FROM unfingerprinted), 0))`,
    [limit],
  );
  return rows.map((r) => r.dlq_entry_uuid);
}

/**
 * One entry's fingerprint in the caller's transaction: reading its graph, or (readGraph false)
 * without, for an entry whose graph could not be read in time. Locks it (SKIP LOCKED: another
 * sweep holding it finishes it); undefined when it is held or no longer needs one. Primary key.
 */
export async function backfillFingerprint(
  db: Db,
  entryUuid: string,
  now: Date,
  readGraph: boolean,
): Promise<BackfilledEntry | undefined> {
  const { rows } = await db.query<BackfilledEntry>(
    `WITH picked AS (
       SELECT d.dlq_entry_uuid FROM tasker_tasks_dlq d
        WHERE d.dlq_entry_uuid = $1 AND ${BACKFILLABLE}
        FOR UPDATE SKIP LOCKED)
     UPDATE tasker_tasks_dlq d
        SET ${BACKFILL_SET}
       FROM picked p
      WHERE d.dlq_entry_uuid = p.dlq_entry_uuid
     RETURNING d.dlq_entry_uuid, d.failure_fingerprint, d.task_snapshot #>> '{failure_signature,graph}' AS graph`,
    [entryUuid, now, readGraph],
  );
  return rows[0];
}
