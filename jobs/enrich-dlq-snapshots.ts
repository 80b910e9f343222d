/**
 * DLQ snapshot enrichment: fills the small snapshot that detection wrote into a DLQ entry with what
 * an investigator needs (steps with state, attempts and last result or error; edges; step and task
 * transition history; the template's config) and a diagnosis (blocking steps, exhausted retries,
 * cycle, oldest waiting step, a one-line summary).
 *
 * Two modes, one queue:
 *   - entries: `entry_uuids` given (detection sends one run per new entry, see
 *     enrichmentRequestsFor); those entries are enriched whatever their resolution status;
 *   - sweep: `entry_uuids` absent or empty (the schedule); pending entries not enriched yet, oldest
 *     first, batch_size per statement, until a batch comes back short, max_batches is reached or the
 *     run is aborted (checked between batches). This catches entries whose send was lost.
 *
 * Reads: tasker_tasks_dlq (primary key, or idx_dlq_pending_unenriched for the sweep); for each entry
 * its task, steps, step transitions, edges, task transitions and template (the per-task indexes).
 * Writes: tasker_tasks_dlq.task_snapshot only: the detection-time keys stay, the enrichment keys are
 * added, and task_snapshot.enrichment records when and how (enriched_at = ctx.now, detail level,
 * what was truncated). The task and its graph are never changed.
 *
 * Options (from [dlq] and [dlq.enrichment]): entry_uuids; batch_size (entries per transaction);
 * max_batches (per sweep); include_full_task_snapshot (false: counts and diagnosis only);
 * max_list_items, max_history_rows (items per list); max_payload_bytes (per JSON value);
 * max_snapshot_bytes (whole snapshot; beyond it the detail drops to compact, then minimal);
 * batch_statement_timeout_ms (SET LOCAL statement_timeout of each batch's transaction).
 *
 * Isolation: a batch that fails (timeout or error) is retried one entry at a time; an entry that
 * fails alone is marked failed (task_snapshot.enrichment.failed, with the error), counted and
 * logged, so later sweeps pass it by and the others are enriched. A requested id that is not a
 * uuid is skipped and counted (invalid) rather than failing every request merged into the run.
 * Transient errors (connection, deadlock, serialization) fail the run; pg-boss retries it.
 *
 * Idempotent: an entry is written only while task_snapshot has no "enrichment" key, so a second run
 * (or a sweep after the per-entry run) writes nothing: same row, same xmin, same updated_at.
 *
 * Safe with N workers: each statement locks the entries it takes with FOR UPDATE SKIP LOCKED and
 * re-checks "not enriched" on the locked row, so two enrichers on the same entry never both write:
 * one writes, the other reports it busy (then already_enriched). A snapshot is built and written in
 * one statement, so it is whole or absent.
 */
import { z } from 'zod';
import type { Config } from '../src/config/schema.ts';
import { type Db, withStatementTimeout } from '../src/db/pool.ts';
import {
  type EnrichedEntry,
  type EnrichmentLimits,
  enrichEntries,
  enrichPendingBatch,
  markEnrichmentFailed,
  type RequestedEntry,
  sweepCandidateIds,
} from '../src/db/queries/dlq-enrichment.ts';
import type { EnrichmentDetail } from '../src/domain/dlq-enrichment.ts';
import { cronEverySeconds } from '../src/worker/cron.ts';
import { defineJob } from '../src/worker/job.ts';

/** Most entries one run may name; detection sends one per run. */
export const MAX_ENTRY_UUIDS = 1000;

export const EnrichDlqSnapshotsOptions = z
  .strictObject({
    /**
     * Enrich exactly these entries; absent or empty: sweep pending entries not enriched yet. Each
     * value is checked by the run, not here: requests are merged into one run, and a malformed id
     * in one of them is skipped and counted (invalid) instead of failing all of them.
     */
    entry_uuids: z.array(z.string().max(200)).max(MAX_ENTRY_UUIDS).optional(),
    batch_size: z.int().min(1).max(1000),
    max_batches: z.int().min(1).max(1000),
    include_full_task_snapshot: z.boolean(),
    max_list_items: z.int().min(1).max(10000),
    max_history_rows: z.int().min(1).max(10000),
    max_payload_bytes: z.int().min(256).max(1048576),
    max_snapshot_bytes: z.int().min(16384).max(67108864),
    batch_statement_timeout_ms: z.int().min(100).max(600000),
  })
  .refine((o) => o.max_payload_bytes <= o.max_snapshot_bytes, {
    error: 'max_payload_bytes must not exceed max_snapshot_bytes',
    path: ['max_payload_bytes'],
  });
export type EnrichDlqSnapshotsOptions = z.infer<typeof EnrichDlqSnapshotsOptions>;

export interface EnrichDlqSnapshotsResult {
  mode: 'entries' | 'sweep';
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
  /** Entries whose enrichment failed on its own (timeout or error): marked failed, skipped by sweeps. */
  failed: number;
  /** Requested ids that are not uuids: skipped. */
  invalid: number;
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
  };
}

/** One send to this job's queue: its data (merged over the config-derived options) and its key. */
export interface EnrichmentRequest {
  data: { entry_uuids: [string] };
  singletonKey: string;
}

/**
 * The per-entry sends for new DLQ entries (e.g. detection's dlq_entry_uuid values): one run per
 * entry, keyed by the entry, so sending the same entry twice queues it once (with a per-key queue
 * policy) and a slow entry never holds up the others. Duplicates and empty values are dropped.
 */
export function enrichmentRequestsFor(entryUuids: Iterable<string | null | undefined>): EnrichmentRequest[] {
  const unique = new Set<string>();
  for (const id of entryUuids) if (id) unique.add(id.toLowerCase());
  return [...unique].map((id) => ({ data: { entry_uuids: [id] }, singletonKey: `dlq-entry:${id}` }));
}

export default defineJob<EnrichDlqSnapshotsOptions, EnrichDlqSnapshotsResult>({
  name: 'tasker.enrich-dlq-snapshots',
  description:
    'Fill DLQ entry snapshots with steps, graph, history, template config and a diagnosis (per entry, and a sweep for missed ones).',
  optionsSchema: EnrichDlqSnapshotsOptions,
  optionsFromConfig: enrichmentOptionsFromConfig,
  workDone: (result) => result.enriched,
  // A batch that fails is followed by one entry on its own before the stop signal is seen again.
  longestBatchMs: (options) => 2 * options.batch_statement_timeout_ms,
  // The sweep; per-entry runs are sent by detection (followUps in detect-stale-tasks.ts).
  schedule: (config) =>
    config.dlq.enabled ? cronEverySeconds(config.dlq.enrichment.sweep_interval_seconds) : null,
  // Per-entry requests queued together are served by one run; a sweep among them makes it a sweep
  // (which takes pending unenriched entries oldest first, these among them).
  batch: {
    size: 50,
    merge: (requests) => {
      const first = requests[0]!;
      if (requests.some((r) => !r.entry_uuids?.length)) return { ...first, entry_uuids: [] };
      return { ...first, entry_uuids: [...new Set(requests.flatMap((r) => r.entry_uuids ?? []))] };
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
    const requested: EnrichmentDetail = options.include_full_task_snapshot ? 'full' : 'compact';
    const result: EnrichDlqSnapshotsResult = {
      mode: options.entry_uuids?.length ? 'entries' : 'sweep',
      batches: 0,
      requested: 0,
      enriched: 0,
      already_enriched: 0,
      busy: 0,
      not_found: 0,
      task_missing: 0,
      truncated: 0,
      reduced_detail: 0,
      failed: 0,
      invalid: 0,
      aborted: false,
    };
    const bounded = <T>(fn: (db: Db) => Promise<T>) =>
      withStatementTimeout(ctx.pool, options.batch_statement_timeout_ms, fn, ctx.commitFence);
    // A batch that fails is retried one entry at a time, so one entry that cannot be enriched
    // (too big for the timeout, or raising an error) is marked failed and the others go on.
    const oneByOne = async (ids: readonly string[]) => {
      for (const id of ids) {
        if (ctx.signal.aborted) {
          result.aborted = true;
          return;
        }
        try {
          countOutcomes(result, await bounded((db) => enrichEntries(db, [id], limits)), requested);
        } catch (err) {
          if (isTransient(err)) throw err;
          const code = (err as { code?: string }).code ?? null;
          const message = (err as Error).message;
          await markEnrichmentFailed(ctx.pool, id, ctx.now, { code, message });
          result.failed += 1;
          ctx.logger.warn('DLQ entry could not be enriched; marked failed, sweeps skip it', {
            dlq_entry_uuid: id,
            code,
            error: message,
            statement_timeout_ms: options.batch_statement_timeout_ms,
          });
        }
      }
    };

    if (result.mode === 'entries') {
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
    } else {
      for (;;) {
        if (ctx.signal.aborted) {
          result.aborted = true;
          break;
        }
        result.batches += 1;
        let taken: number;
        try {
          const rows = await bounded((db) => enrichPendingBatch(db, options.batch_size, limits));
          countEnriched(result, rows, requested);
          taken = rows.length;
        } catch (err) {
          if (isTransient(err)) throw err;
          const ids = await sweepCandidateIds(ctx.pool, options.batch_size);
          await oneByOne(ids);
          taken = ids.length;
        }
        if (taken < options.batch_size || result.batches >= options.max_batches) break;
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

function countEnriched(
  result: EnrichDlqSnapshotsResult,
  rows: readonly EnrichedEntry[],
  requested: EnrichmentDetail,
): void {
  for (const row of rows) {
    result.enriched += 1;
    if (!row.task_found) result.task_missing += 1;
    if (row.truncated) result.truncated += 1;
    if (row.task_found && row.detail_level !== requested) result.reduced_detail += 1;
  }
}
