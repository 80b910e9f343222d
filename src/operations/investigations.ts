import { createHash } from 'node:crypto';
import type pg from 'pg';
import { withTransaction } from '../db/pool.ts';
import { type Actor, insertAudit } from '../db/queries/audit.ts';
import {
  type BulkFilter,
  entriesByIds,
  lockEntry,
  openManualEntry,
  pendingEntryOfTask,
  pendingMatchingIds,
  type ResolvedEntry,
  resolveEntries,
  updateEntry,
} from '../db/queries/dlq.ts';
import { type DlqEntry, minutesInDlq, resolverText, type TerminalResolutionStatus } from '../domain/dlq.ts';
import { NotFoundError, UsageError } from '../errors.ts';
import { ConflictError } from './errors.ts';

/**
 * The changes an operator makes to investigations (DLQ entries), for the API, the console and the
 * CLI alike: update or resolve one, open one by hand, resolve many by a filter. Each runs in one
 * transaction with its audit row (tasker_audit_log), so a change is never without its record and a
 * record never without its change. Errors are typed (src/operations/errors.ts), for each surface to
 * map.
 */

/** What changed on an entry, for the audit row. */
function entryValues(e: DlqEntry) {
  return {
    resolution_status: e.resolution_status,
    resolution_notes: e.resolution_notes,
    resolved_by: e.resolved_by,
    resolved_by_token_id: e.resolved_by_token_id,
    resolved_on_behalf_of: e.resolved_on_behalf_of,
    resolution_timestamp: e.resolution_timestamp,
    metadata: e.metadata,
  };
}

/** A resolved entry is final: the refusal says who resolved it (with the token) and when. */
function alreadyResolved(e: DlqEntry): ConflictError {
  const at = e.resolution_timestamp?.toISOString() ?? 'an unknown time';
  return new ConflictError(
    `DLQ entry ${e.dlq_entry_uuid} is not pending: it was ${e.resolution_status} by ${resolverText(e)} at ${at}; a resolved entry is final (its status, notes and who resolved it cannot be changed)`,
    {
      dlq_entry_uuid: e.dlq_entry_uuid,
      resolution_status: e.resolution_status,
      resolved_by: e.resolved_by,
      resolved_by_token_id: e.resolved_by_token_id,
      resolved_on_behalf_of: e.resolved_on_behalf_of,
      resolution_timestamp: e.resolution_timestamp,
    },
  );
}

export interface UpdateInvestigationParams {
  uuid: string;
  /** A final status: resolves the entry, recorded as resolved by the actor. */
  status?: TerminalResolutionStatus | undefined;
  notes?: string | undefined;
  /**
   * Whom the caller says the resolution is for (the API's resolved_by): kept beside the actor,
   * never instead of it. Only with a status.
   */
  onBehalfOf?: string | undefined;
  metadata?: Record<string, unknown> | undefined;
  actor: Actor;
  now: Date;
}

/**
 * Upstream's PATCH /v1/dlq/entry/{uuid}: a partial update (omitted fields keep their value) of a
 * pending entry. With a status it resolves the entry, recorded as resolved by the actor (the
 * authenticated identity; what the caller says goes to "on behalf of"); without one it amends notes
 * or metadata. A resolved entry is final: any change to it is a ConflictError naming who resolved
 * it and when. The entry is locked first, so of simultaneous resolutions exactly one wins and the
 * others get that ConflictError. A change that changes nothing writes nothing, not even an audit
 * row, and returns the entry as it is.
 */
export async function updateInvestigation(
  pool: pg.Pool,
  p: UpdateInvestigationParams,
): Promise<ResolvedEntry> {
  if ([p.status, p.notes, p.metadata].every((v) => v === undefined)) {
    throw new UsageError('body: expected at least one of resolution_status, resolution_notes, metadata');
  }
  if (p.onBehalfOf !== undefined && p.status === undefined) {
    throw new UsageError(
      'resolved_by: says on whose behalf an entry is resolved, so it needs resolution_status (who made a change is always the token that made it)',
    );
  }
  return withTransaction(pool, async (client) => {
    const before = await lockEntry(client, p.uuid);
    if (!before) throw new NotFoundError(`no DLQ entry ${p.uuid}`);
    if (before.resolution_status !== 'pending') throw alreadyResolved(before);
    const after = await updateEntry(client, {
      entryUuid: p.uuid,
      status: p.status,
      notes: p.notes,
      resolvedBy: p.actor.name,
      resolvedByTokenId: p.actor.tokenId,
      onBehalfOf: p.onBehalfOf,
      metadata: p.metadata,
      now: p.now,
    });
    if (!after) return { ...before, minutes_in_dlq: minutesInDlq(before, p.now) };
    await insertAudit(client, {
      at: p.now,
      actor: p.actor,
      action: p.status === undefined ? 'dlq.update' : 'dlq.resolve',
      targetKind: 'dlq_entry',
      targetId: p.uuid,
      before: entryValues(before),
      after: entryValues(after),
      details: { task_uuid: before.task_uuid },
    });
    return after;
  });
}

export interface ResolveInvestigationParams {
  uuid: string;
  status: TerminalResolutionStatus;
  notes: string;
  actor: Actor;
  now: Date;
}

/** Ends a pending investigation with a final status and notes (ConflictError if not pending). */
export function resolveInvestigation(pool: pg.Pool, p: ResolveInvestigationParams): Promise<ResolvedEntry> {
  return updateInvestigation(pool, p);
}

export interface OpenInvestigationParams {
  taskUuid: string;
  notes: string;
  actor: Actor;
  now: Date;
}

/**
 * Opens a manual_dlq investigation for a task (the task is not changed). NotFoundError when there is
 * no such task; ConflictError when it already has a pending entry.
 */
export async function openInvestigation(pool: pg.Pool, p: OpenInvestigationParams): Promise<DlqEntry> {
  return withTransaction(pool, async (client) => {
    let entry: DlqEntry;
    try {
      entry = await openManualEntry(client, {
        taskUuid: p.taskUuid,
        notes: p.notes,
        openedBy: p.actor.name,
        openedByTokenId: p.actor.tokenId,
        now: p.now,
      });
    } catch (err) {
      if (err instanceof NotFoundError || !(err instanceof UsageError)) throw err;
      const pending = await pendingEntryOfTask(client, p.taskUuid);
      throw new ConflictError(err.message, {
        task_uuid: p.taskUuid,
        pending_dlq_entry_uuid: pending ?? null,
      });
    }
    await insertAudit(client, {
      at: p.now,
      actor: p.actor,
      action: 'dlq.add',
      targetKind: 'dlq_entry',
      targetId: entry.dlq_entry_uuid,
      before: null,
      after: { ...entryValues(entry), dlq_reason: entry.dlq_reason, original_state: entry.original_state },
      details: { task_uuid: entry.task_uuid, notes: p.notes },
    });
    return entry;
  });
}

/** The most entries one bulk resolution may change; a filter matching more is refused. */
export const BULK_RESOLVE_MAX_ENTRIES = 10_000;

/**
 * The most entries one bulk resolution of a group may change (a filter with `group`). A group is
 * one cause, exactly named, and the storm it comes from can be tens of thousands of entries: they
 * are resolved in one transaction, up to this many (docs/benchmarks.md measures 100,000).
 */
export const BULK_RESOLVE_MAX_GROUP_ENTRIES = 100_000;

/** The most entries a bulk resolution with this filter may change. */
export function bulkResolveLimit(filter: BulkFilter): number {
  return filter.group === undefined ? BULK_RESOLVE_MAX_ENTRIES : BULK_RESOLVE_MAX_GROUP_ENTRIES;
}

export interface BulkResolveParams {
  filter: BulkFilter;
  status: TerminalResolutionStatus;
  notes: string;
  /** true: change nothing, report what would be resolved. */
  dryRun: boolean;
  /** How many of the matching entries to return (the first, oldest first). */
  previewLimit: number;
  /**
   * The fingerprint a preview (dry run) returned: resolve only if exactly the entries it matched
   * still match (ConflictError otherwise, nothing changed). Undefined: whatever matches now.
   */
  expectFingerprint?: string | undefined;
  /** How many the preview matched, for the refusal's message. */
  expectMatched?: number | undefined;
  actor: Actor;
  now: Date;
}

export interface BulkResolveResult {
  dry_run: boolean;
  /** Pending entries matching the filter. */
  matched: number;
  /** Entries resolved (0 in a dry run). */
  resolved: number;
  /** The first matching entries, oldest first (at most previewLimit). */
  entries: DlqEntry[];
  /** SHA-256 (hex) of the matching entries' uuids, sorted: pass it back to resolve exactly these. */
  fingerprint: string;
  /** The audit row of the change (null in a dry run, or when nothing was resolved). */
  audit_id: number | null;
}

/** The fingerprint of a set of entries: SHA-256 of their sorted uuids, comma-joined, in hex. */
export function entriesFingerprint(uuids: readonly string[]): string {
  return createHash('sha256')
    .update([...uuids].sort().join(','))
    .digest('hex');
}

/**
 * Resolves every pending entry matching the filter in one transaction, with one audit row naming
 * every entry (action dlq.bulk_resolve, target the filter; a group's fingerprint is in it and in
 * details.group). The matching entries are locked first, so an entry resolved meanwhile by someone
 * else is either already resolved (not matched) or waits for this. A dry run reads the same rows
 * without locking, changes nothing, and returns the set's fingerprint; given back as
 * expectFingerprint, the real run resolves only that exact set (a detection run that opened more
 * entries meanwhile makes it refuse, ConflictError). More than bulkResolveLimit matches (10,000;
 * 100,000 for a group) is refused (UsageError): narrow the filter. Only the entries' ids are read
 * to match and resolve; the first previewLimit entries are read whole for the answer.
 */
export async function bulkResolve(pool: pg.Pool, p: BulkResolveParams): Promise<BulkResolveResult> {
  const max = bulkResolveLimit(p.filter);
  const tooMany = () =>
    new UsageError(
      `filter: more than ${max} pending entries match; narrow it (reason, namespace, template, original state, older than) and resolve in parts`,
    );
  if (p.dryRun) {
    const ids = await pendingMatchingIds(pool, p.filter, p.now, max + 1, false);
    if (ids.length > max) throw tooMany();
    return {
      dry_run: true,
      matched: ids.length,
      resolved: 0,
      entries: await entriesByIds(pool, ids.slice(0, p.previewLimit)),
      fingerprint: entriesFingerprint(ids),
      audit_id: null,
    };
  }
  return withTransaction(pool, async (client) => {
    const ids = await pendingMatchingIds(client, p.filter, p.now, max + 1, true);
    if (ids.length > max) throw tooMany();
    const fingerprint = entriesFingerprint(ids);
    if (p.expectFingerprint !== undefined && p.expectFingerprint !== fingerprint) {
      const was =
        p.expectMatched === undefined ? 'the entries previewed' : `the ${p.expectMatched} previewed`;
      throw new ConflictError(
        `the pending entries matching this filter changed since the preview: ${ids.length} match now, not ${was}; nothing was resolved (preview again)`,
        { matched: ids.length, expected_matched: p.expectMatched ?? null, fingerprint },
      );
    }
    const entries = await entriesByIds(client, ids.slice(0, p.previewLimit));
    const resolved = await resolveEntries(
      client,
      ids,
      p.status,
      p.notes,
      { name: p.actor.name, tokenId: p.actor.tokenId },
      p.now,
    );
    // One action, one audit row: the filter, what every entry went from and to, and which entries
    // (their uuids; each entry also keeps resolved_by and resolution_timestamp itself).
    const auditId =
      resolved.length === 0
        ? null
        : await insertAudit(client, {
            at: p.now,
            actor: p.actor,
            action: 'dlq.bulk_resolve',
            targetKind: 'dlq_filter',
            targetId: JSON.stringify(p.filter),
            before: { resolution_status: 'pending' },
            after: {
              resolution_status: p.status,
              resolution_notes: p.notes,
              resolved_by: p.actor.name,
              ...(p.actor.tokenId ? { resolved_by_token_id: p.actor.tokenId } : {}),
            },
            details: {
              filter: p.filter,
              ...(p.filter.group === undefined ? {} : { group: p.filter.group }),
              matched: ids.length,
              resolved: resolved.length,
              dlq_entry_uuids: resolved,
            },
          });
    return {
      dry_run: false,
      matched: ids.length,
      resolved: resolved.length,
      entries,
      fingerprint,
      audit_id: auditId,
    };
  });
}
