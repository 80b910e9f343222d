/**
 * DLQ snapshot enrichment: fills the small snapshot that detection wrote into a DLQ entry with what
 * an investigator needs (steps with state, attempts and last result or error; edges; step and task
 * transition history; the template's config) and a diagnosis (blocking steps, exhausted retries,
 * cycle, oldest waiting step, a one-line summary).
 *
 * Two modes, one queue, and a run may do both:
 *   - entries: `entry_uuids` given. Detection sends ONE request per batch that opened entries,
 *     carrying that batch's entry ids (at most MAX_ENTRY_UUIDS; see enrichmentRequestsFor), so a
 *     stale storm of a million new entries is a thousand-odd pg-boss jobs, not a million. Those
 *     entries are enriched whatever their resolution status, batch_size per transaction;
 *   - sweep: `entry_uuids` absent or empty (the schedule), or `sweep` set (a sweep request served
 *     together with entry requests: the listed entries first, then the sweep). Pending entries
 *     never enriched, oldest first, then entries whose failed attempt is due again, batch_size per
 *     statement, until a batch comes back short, max_batches is reached or the run is aborted
 *     (checked between batches). This catches entries whose request was lost, entries opened with
 *     `dlq add`, and retries.
 *
 * Why requests carrying ids rather than sweeps alone: each request is a unit of work any worker can
 * take, so the entries of a storm spread over all workers as detection opens them (the queue is
 * `exclusive`, keyed by the batch's first entry: a resend of the same batch is queued once, two
 * batches never share a key), each entry is found by primary key (no index range to walk past the
 * entries others hold), and the sweep, which one worker runs at a time (key "run"), is left with
 * the strays. Up to REQUESTS_PER_RUN queued requests are served by one run, so a run holds at most
 * REQUESTS_PER_RUN x MAX_ENTRY_UUIDS entries and ends long before its expiry.
 *
 * Reads: tasker_tasks_dlq (primary key; the sweep idx_dlq_pending_unenriched for new entries and
 * idx_dlq_enrichment_retries for due retries); for each entry its task, steps, step transitions,
 * edges, task transitions and template (the per-task indexes). Writes: tasker_tasks_dlq.task_snapshot,
 * enrichment_next_attempt_at and failure_fingerprint only: the detection-time keys stay, the
 * enrichment keys are added, task_snapshot.enrichment records when and how (enriched_at = ctx.now,
 * detail level, what was truncated, failed_attempts when earlier attempts failed), and
 * task_snapshot.failure_signature what the entry's failure fingerprint stands for (issue 27,
 * docs/grouping.md; the triggers on the table count it in its group). The task and its graph are
 * never changed.
 *
 * The fingerprint backfill (issue 27): a sweep that has enriched every new entry then gives a
 * fingerprint to pending entries enriched without one (before this build, or by the previous
 * build's workers) and to the pending entries of groups made by an older rule set, batch_size at a
 * time up to max_batches (idx_dlq_pending_unfingerprinted), without enriching them again.
 *
 * Options (from [dlq] and [dlq.enrichment]): entry_uuids; sweep; batch_size (entries per
 * transaction); max_batches (per sweep); include_full_task_snapshot (false: counts and diagnosis
 * only); max_list_items, max_history_rows (items per list); max_payload_bytes (per JSON value);
 * max_snapshot_bytes (whole snapshot; beyond it the detail drops to compact, then minimal);
 * batch_statement_timeout_ms (SET LOCAL statement_timeout of each batch's transaction);
 * max_attempts, retry_delay_seconds, retry_delay_max_seconds (failed attempts, below).
 *
 * Isolation and retries: a batch that fails (timeout or error) is retried one entry at a time, each
 * in its own transaction: the entry is locked, enriched under a savepoint, and if that fails the
 * savepoint is rolled back and the failure recorded in the same transaction (so no other enricher
 * can try it in between and count the attempt twice). The record says how many attempts failed
 * and when the next is due: retry_delay_seconds after the first, doubling, at most
 * retry_delay_max_seconds; the max_attempts-th failure gives the entry up (marked failed for good,
 * sweeps pass it by). Failures are counted (failed, gave_up) and logged, and the others are
 * enriched. A requested id that is not a uuid is skipped and counted (invalid) rather than failing
 * every request merged into the run. Transient errors (connection, deadlock, serialization) fail
 * the run; pg-boss retries it; nothing is recorded against the entry.
 *
 * Idempotent: an entry is written only while it is enrichable (no "enrichment" key, or a failed
 * attempt whose next is due), so a second run (or a sweep after the request's run) writes nothing
 * to an enriched entry: same row, same xmin, same updated_at.
 *
 * Safe with N workers: each statement locks the entries it takes with FOR UPDATE SKIP LOCKED and
 * re-checks "enrichable" on the locked row, so two enrichers on the same entry never both write:
 * one writes, the other reports it busy (then already_enriched). A snapshot is built and written in
 * one statement, so it is whole or absent. Every transaction commits through the run's commit
 * fence, so a run taken over by another worker commits nothing more.
 */
import { z } from 'zod';
import type { Config } from '../src/config/schema.ts';
import { type Db, withStatementTimeout } from '../src/db/pool.ts';
import {
  type BackfilledEntry,
  backfillCandidateIds,
  backfillFingerprint,
  backfillFingerprints,
  type EnrichedEntry,
  type EnrichmentLimits,
  enrichEntries,
  enrichPendingBatch,
  type FailureRecord,
  lockEnrichableEntry,
  markEnrichmentFailed,
  type RequestedEntry,
  type RetryPolicy,
  sweepCandidateIds,
} from '../src/db/queries/dlq-enrichment.ts';
import type { EnrichmentDetail } from '../src/domain/dlq-enrichment.ts';
import { cronEverySeconds } from '../src/worker/cron.ts';
import { defineJob } from '../src/worker/job.ts';

/** Most entries one request may name; detection sends one request per batch, split at this size. */
export const MAX_ENTRY_UUIDS = 1000;

/**
 * Queued requests one run serves together (pg-boss's batch size for this queue). Small, so that
 * a run holds at most REQUESTS_PER_RUN x MAX_ENTRY_UUIDS entries and the requests of a storm
 * spread over the workers instead of all going to the first one that polls.
 */
export const REQUESTS_PER_RUN = 10;

export const EnrichDlqSnapshotsOptions = z
  .strictObject({
    /**
     * Enrich exactly these entries; absent or empty: sweep pending entries not enriched yet. Each
     * value is checked by the run, not here: requests are merged into one run, and a malformed id
     * in one of them is skipped and counted (invalid) instead of failing all of them.
     */
    entry_uuids: z.array(z.string().max(200)).max(MAX_ENTRY_UUIDS).optional(),
    /**
     * Sweep after the listed entries: set when a sweep request is served together with entry
     * requests, so that neither is dropped. Without entries a run always sweeps.
     */
    sweep: z.boolean().optional(),
    batch_size: z.int().min(1).max(1000),
    max_batches: z.int().min(1).max(1000),
    include_full_task_snapshot: z.boolean(),
    max_list_items: z.int().min(1).max(10000),
    max_history_rows: z.int().min(1).max(10000),
    max_payload_bytes: z.int().min(256).max(1048576),
    max_snapshot_bytes: z.int().min(16384).max(67108864),
    batch_statement_timeout_ms: z.int().min(100).max(600000),
    max_attempts: z.int().min(1).max(100),
    retry_delay_seconds: z.int().min(1).max(86400),
    retry_delay_max_seconds: z.int().min(1).max(604800),
  })
  .refine((o) => o.retry_delay_seconds <= o.retry_delay_max_seconds, {
    error: 'retry_delay_seconds must not exceed retry_delay_max_seconds',
    path: ['retry_delay_seconds'],
  })
  .refine((o) => o.max_payload_bytes <= o.max_snapshot_bytes, {
    error: 'max_payload_bytes must not exceed max_snapshot_bytes',
    path: ['max_payload_bytes'],
  });
export type EnrichDlqSnapshotsOptions = z.infer<typeof EnrichDlqSnapshotsOptions>;

export interface EnrichDlqSnapshotsResult {
  /** entries: the listed entries; sweep: a sweep; entries_and_sweep: the listed entries, then a sweep. */
  mode: 'entries' | 'sweep' | 'entries_and_sweep';
  batches: number;
  /** Distinct entries asked for (entries mode; 0 in a sweep). */
  requested: number;
  /** Entries written by this run. */
  enriched: number;
  /** Asked for, but enriched before (nothing written). */
  already_enriched: number;
  /** Asked for, but another enricher held or had just written it (it finishes it; nothing written). */
  busy: number;
  /** Asked for, but no such entry exists (archived or deleted). */
  not_found: number;
  /** Enriched entries whose task no longer exists (snapshot says so; detail "none"). */
  task_missing: number;
  /** Enriched entries where a limit cut a list, a payload or the detail level. */
  truncated: number;
  /** Enriched entries stored below the requested detail to fit max_snapshot_bytes. */
  reduced_detail: number;
  /** Enriched entries that an earlier attempt had failed on (retries that succeeded). */
  retried: number;
  /**
   * Entries whose attempt in this run failed on its own (timeout or error): recorded with the time
   * of their next attempt, or given up (gave_up). Each entry counts once per run.
   */
  failed: number;
  /** Of the failed, those whose attempt was itself a retry (an earlier attempt had failed too). */
  failed_retries: number;
  /** Of the failed, those that used their last attempt: marked failed for good, sweeps skip them. */
  gave_up: number;
  /** Asked for, but an earlier attempt failed and the next is not due yet (or it was given up). */
  failed_before: number;
  /** Requested ids that are not uuids: skipped. */
  invalid: number;
  /**
   * Pending entries the sweep gave a failure fingerprint without enriching them again (issue 27's
   * backfill): enriched before this build or by the previous build's workers, or in a group made
   * by an older rule set.
   */
  fingerprinted: number;
  /** Of those, entries whose graph could not be read in time: their blocking steps are unknown. */
  fingerprinted_without_graph: number;
  /** Statements of the backfill (batch_size entries each at most; not counted in batches). */
  fingerprint_batches: number;
  /** Stopped because the run was aborted between batches. */
  aborted: boolean;
}

export function enrichmentOptionsFromConfig(config: Readonly<Config>): EnrichDlqSnapshotsOptions {
  const e = config.dlq.enrichment;
  return {
    entry_uuids: [],
    batch_size: e.batch_size,
    max_batches: e.max_batches_per_run,
    include_full_task_snapshot: config.dlq.include_full_task_snapshot,
    max_list_items: e.max_list_items,
    max_history_rows: e.max_history_rows,
    max_payload_bytes: e.max_payload_bytes,
    max_snapshot_bytes: e.max_snapshot_bytes,
    batch_statement_timeout_ms: e.batch_statement_timeout_ms,
    max_attempts: e.max_attempts,
    retry_delay_seconds: e.retry_delay_seconds,
    retry_delay_max_seconds: e.retry_delay_max_seconds,
  };
}

/** One send to this job's queue: its data (merged over the config-derived options) and its key. */
export interface EnrichmentRequest {
  data: { entry_uuids: string[] };
  singletonKey: string;
}

/**
 * The sends for the entries one detection batch opened (its dlq_entry_uuid values): one request
 * carrying all of them (split into requests of MAX_ENTRY_UUIDS when there are more), keyed by the
 * smallest id it carries. A batch's entries are new, so two batches never share a key, and sending
 * the same ids again while they are queued queues them once (the queue's `exclusive` policy).
 * Duplicates and empty values are dropped; ids are sorted, so the same set gives the same requests.
 */
export function enrichmentRequestsFor(entryUuids: Iterable<string | null | undefined>): EnrichmentRequest[] {
  const unique = new Set<string>();
  for (const id of entryUuids) if (id) unique.add(id.toLowerCase());
  const ids = [...unique].sort();
  const requests: EnrichmentRequest[] = [];
  for (let i = 0; i < ids.length; i += MAX_ENTRY_UUIDS) {
    const chunk = ids.slice(i, i + MAX_ENTRY_UUIDS);
    requests.push({ data: { entry_uuids: chunk }, singletonKey: `dlq-entries:${chunk[0]}` });
  }
  return requests;
}

export default defineJob<EnrichDlqSnapshotsOptions, EnrichDlqSnapshotsResult>({
  name: 'tasker.enrich-dlq-snapshots',
  description:
    'Fill DLQ entry snapshots with steps, graph, history, template config and a diagnosis (the entries of each detection batch, and a sweep for missed ones and retries).',
  optionsSchema: EnrichDlqSnapshotsOptions,
  optionsFromConfig: enrichmentOptionsFromConfig,
  workDone: (result) => result.enriched,
  // A batch that fails is followed by one entry on its own before the stop signal is seen again:
  // its attempt (up to the timeout), then, if it failed, the record of its failure (a primary-key
  // write of a row already held, which waits for nothing).
  longestBatchMs: (options) => 2 * options.batch_statement_timeout_ms,
  // The sweep; the entries of each detection batch are sent by detection (followUps in
  // detect-stale-tasks.ts).
  schedule: (config) =>
    config.dlq.enabled ? cronEverySeconds(config.dlq.enrichment.sweep_interval_seconds) : null,
  // Requests queued together are served by one run: their entries, and then a sweep if one of them
  // was a sweep (so a sweep never drops the entries merged with it, nor they the sweep).
  batch: {
    size: REQUESTS_PER_RUN,
    merge: (requests) => {
      const first = requests[0]!;
      const entry_uuids = [...new Set(requests.flatMap((r) => r.entry_uuids ?? []))];
      const sweep = requests.some((r) => r.sweep === true || !r.entry_uuids?.length);
      return { ...first, entry_uuids, ...(sweep && entry_uuids.length > 0 ? { sweep: true } : {}) };
    },
  },

  async run(ctx, options) {
    const limits: EnrichmentLimits = {
      now: ctx.now,
      includeFullTaskSnapshot: options.include_full_task_snapshot,
      maxListItems: options.max_list_items,
      maxHistoryRows: options.max_history_rows,
      maxPayloadBytes: options.max_payload_bytes,
      maxSnapshotBytes: options.max_snapshot_bytes,
    };
    const policy: RetryPolicy = {
      maxAttempts: options.max_attempts,
      retryDelaySeconds: options.retry_delay_seconds,
      retryDelayMaxSeconds: options.retry_delay_max_seconds,
    };
    const requested: EnrichmentDetail = options.include_full_task_snapshot ? 'full' : 'compact';
    const listed = (options.entry_uuids?.length ?? 0) > 0;
    const sweeping = !listed || options.sweep === true;
    const result: EnrichDlqSnapshotsResult = {
      mode: listed ? (sweeping ? 'entries_and_sweep' : 'entries') : 'sweep',
      batches: 0,
      requested: 0,
      enriched: 0,
      already_enriched: 0,
      busy: 0,
      not_found: 0,
      task_missing: 0,
      truncated: 0,
      reduced_detail: 0,
      retried: 0,
      failed: 0,
      failed_retries: 0,
      gave_up: 0,
      failed_before: 0,
      invalid: 0,
      fingerprinted: 0,
      fingerprinted_without_graph: 0,
      fingerprint_batches: 0,
      aborted: false,
    };
    const bounded = <T>(fn: (db: Db) => Promise<T>) =>
      withStatementTimeout(ctx.pool, options.batch_statement_timeout_ms, fn, ctx.commitFence);
    // One entry in its own transaction: locked, enriched under a savepoint, and if that fails, the
    // savepoint rolled back and the failure recorded while the entry is still held.
    const attemptOne = (id: string) =>
      bounded(async (db): Promise<RequestedEntry[] | { failure: Error; record: FailureRecord | null }> => {
        if (!(await lockEnrichableEntry(db, id, ctx.now))) return enrichEntries(db, [id], limits);
        await db.query('SAVEPOINT enrich_entry');
        try {
          return await enrichEntries(db, [id], limits);
        } catch (err) {
          if (isTransient(err)) throw err;
          await db.query('ROLLBACK TO SAVEPOINT enrich_entry');
          const code = (err as { code?: string }).code ?? null;
          const record = await markEnrichmentFailed(
            db,
            id,
            ctx.now,
            { code, message: (err as Error).message },
            policy,
          );
          return { failure: err as Error, record };
        }
      });
    // A batch that fails is retried one entry at a time, so one entry that cannot be enriched
    // (too big for the timeout, or raising an error) is recorded as failed and the others go on.
    const oneByOne = async (ids: readonly string[]) => {
      for (const id of ids) {
        if (ctx.signal.aborted) {
          result.aborted = true;
          return;
        }
        const outcome = await attemptOne(id);
        if (Array.isArray(outcome)) {
          countOutcomes(result, outcome, requested);
          continue;
        }
        const { failure, record } = outcome;
        result.failed += 1;
        if (record && record.failed_attempts > 1) result.failed_retries += 1;
        if (record?.gave_up) result.gave_up += 1;
        const fields = {
          dlq_entry_uuid: id,
          code: (failure as { code?: string }).code ?? null,
          error: failure.message,
          statement_timeout_ms: options.batch_statement_timeout_ms,
          failed_attempts: record?.failed_attempts ?? null,
          max_attempts: options.max_attempts,
          next_attempt_at: record?.next_attempt_at ?? null,
        };
        if (record?.gave_up)
          ctx.logger.warn(
            'DLQ entry could not be enriched; its last attempt failed: marked failed, sweeps skip it',
            fields,
          );
        else ctx.logger.warn('DLQ entry could not be enriched; it will be tried again', fields);
      }
    };

    if (listed) {
      const all = [...new Set(options.entry_uuids!.map((id) => id.toLowerCase()))];
      const ids = all.filter((id) => UUID.test(id));
      result.invalid = all.length - ids.length;
      if (result.invalid > 0) {
        ctx.logger.warn('enrichment requests with malformed entry ids were skipped', {
          invalid: all.filter((id) => !UUID.test(id)).slice(0, 10),
        });
      }
      result.requested = ids.length;
      for (let i = 0; i < ids.length; i += options.batch_size) {
        if (ctx.signal.aborted) {
          result.aborted = true;
          break;
        }
        const chunk = ids.slice(i, i + options.batch_size);
        result.batches += 1;
        try {
          countOutcomes(result, await bounded((db) => enrichEntries(db, chunk, limits)), requested);
        } catch (err) {
          if (isTransient(err)) throw err;
          await oneByOne(chunk);
        }
      }
    }
    // The fingerprint backfill (issue 27): entries enriched without a fingerprint, and those in
    // groups of an older rule set, get theirs without being enriched again. A batch that fails is
    // retried one entry at a time; an entry whose graph cannot be read in time gets a fingerprint
    // saying its blocking steps are unknown, so that no entry holds the backfill up for good.
    const backfillOne = (id: string) =>
      bounded(async (db) => {
        await db.query('SAVEPOINT backfill_entry');
        try {
          return await backfillFingerprint(db, id, ctx.now, true);
        } catch (err) {
          if (isTransient(err)) throw err;
          await db.query('ROLLBACK TO SAVEPOINT backfill_entry');
          ctx.logger.warn(
            'DLQ entry: its graph could not be read for its failure fingerprint; fingerprinted without',
            {
              dlq_entry_uuid: id,
              code: (err as { code?: string }).code ?? null,
              error: (err as Error).message,
            },
          );
          return backfillFingerprint(db, id, ctx.now, false);
        }
      });
    const backfill = async (limit: number): Promise<number> => {
      result.fingerprint_batches += 1;
      try {
        const rows = await bounded((db) => backfillFingerprints(db, limit, ctx.now));
        countFingerprinted(result, rows);
        return rows.length;
      } catch (err) {
        if (isTransient(err)) throw err;
        const ids = await backfillCandidateIds(ctx.pool, limit);
        for (const id of ids) {
          if (ctx.signal.aborted) {
            result.aborted = true;
            break;
          }
          const row = await backfillOne(id);
          if (row) countFingerprinted(result, [row]);
        }
        return ids.length;
      }
    };
    if (sweeping && !result.aborted) {
      let sweepBatches = 0;
      let drained = false;
      for (;;) {
        if (ctx.signal.aborted) {
          result.aborted = true;
          break;
        }
        result.batches += 1;
        sweepBatches += 1;
        let taken: number;
        try {
          const rows = await bounded((db) => enrichPendingBatch(db, options.batch_size, limits));
          countEnriched(result, rows, requested);
          taken = rows.length;
        } catch (err) {
          if (isTransient(err)) throw err;
          const ids = await sweepCandidateIds(ctx.pool, options.batch_size, ctx.now);
          await oneByOne(ids);
          taken = ids.length;
        }
        drained = taken < options.batch_size;
        if (drained || sweepBatches >= options.max_batches) break;
      }
      // Then the backfill, batch_size at a time up to max_batches, once nothing waits for
      // enrichment (a sweep cut off at max_batches leaves it to a later sweep: new entries first).
      if (drained) {
        for (let n = 0; n < options.max_batches; n++) {
          if (ctx.signal.aborted) {
            result.aborted = true;
            break;
          }
          if ((await backfill(options.batch_size)) < options.batch_size) break;
        }
      }
    }
    if (result.task_missing > 0) {
      ctx.logger.warn(
        'DLQ entries whose task no longer exists were enriched with the detection snapshot only',
        {
          task_missing: result.task_missing,
        },
      );
    }
    return result;
  },
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Errors that say nothing about the entry (connection lost, server shutting down, deadlock,
 * serialization, out of resources): the run fails and is retried, nothing is marked.
 */
function isTransient(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  if (code === undefined) return true; // not from the server: a lost connection, a client error
  return /^(08|40|53|57P)/.test(code);
}

function countOutcomes(
  result: EnrichDlqSnapshotsResult,
  rows: readonly RequestedEntry[],
  requested: EnrichmentDetail,
): void {
  for (const row of rows) {
    if (row.outcome === 'enriched') countEnriched(result, [row as RequestedEntry & EnrichedEntry], requested);
    else result[row.outcome] += 1;
  }
}

function countFingerprinted(result: EnrichDlqSnapshotsResult, rows: readonly BackfilledEntry[]): void {
  for (const row of rows) {
    result.fingerprinted += 1;
    if (row.graph === 'unavailable') result.fingerprinted_without_graph += 1;
  }
}

function countEnriched(
  result: EnrichDlqSnapshotsResult,
  rows: readonly EnrichedEntry[],
  requested: EnrichmentDetail,
): void {
  for (const row of rows) {
    result.enriched += 1;
    if (row.retried) result.retried += 1;
    if (!row.task_found) result.task_missing += 1;
    if (row.truncated) result.truncated += 1;
    if (row.task_found && row.detail_level !== requested) result.reduced_detail += 1;
  }
}
