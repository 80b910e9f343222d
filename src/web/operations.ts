import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import archiveFinishedTasks from '../../jobs/archive-finished-tasks.ts';
import detectStaleTasks from '../../jobs/detect-stale-tasks.ts';
import type { Config } from '../config/schema.ts';
import { withTransaction } from '../db/pool.ts';
import { restoreArchivedTask as restoreArchivedRows } from '../db/queries/archive.ts';
import { type Actor, insertAudit } from '../db/queries/audit.ts';
import { lockDeadLettered, markDeadLetterRetried } from '../db/queries/dead-letters.ts';
import {
  type BulkFilter,
  lockEntry,
  openManualEntry,
  pendingEntryOfTask,
  pendingMatching,
  type ResolvedEntry,
  resolveEntries,
  updateEntry,
} from '../db/queries/dlq.ts';
import { insertToken, revokeToken as revokeTokenRow, type TokenRow } from '../db/queries/tokens.ts';
import type { DlqEntry, TerminalResolutionStatus } from '../domain/dlq.ts';
import { NotFoundError, UsageError } from '../errors.ts';
import { type AnyJob, deadLetterQueue, RUN_KEY, type RunRequest } from '../worker/worker.ts';
import { generateToken, type Permission } from './auth.ts';

/**
 * The changes an operator can make, for the API, the console and the CLI alike. Each runs in one
 * transaction with its audit row (tasker_audit_log), so a change is never without its record and a
 * record never without its change. Errors are typed, for each surface to map: NotFoundError
 * (404 / exit 2), ConflictError (409 / exit 2, naming who and when where it applies), UsageError
 * (400 / exit 2).
 */

export type { Actor } from '../db/queries/audit.ts';
export { NotFoundError } from '../errors.ts';

/** The change conflicts with the current state (already resolved, already waiting, name taken). */
export class ConflictError extends UsageError {
  override name = 'ConflictError';
  /** What the client may want to show: who resolved it and when, the entry already pending, ... */
  readonly details: Record<string, unknown>;

  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.details = details;
  }
}

/** What changed on an entry, for the audit row. */
function entryValues(e: DlqEntry) {
  return {
    resolution_status: e.resolution_status,
    resolution_notes: e.resolution_notes,
    resolved_by: e.resolved_by,
    resolution_timestamp: e.resolution_timestamp,
    metadata: e.metadata,
  };
}

function notPending(e: DlqEntry): ConflictError {
  const at = e.resolution_timestamp?.toISOString() ?? 'an unknown time';
  return new ConflictError(
    `DLQ entry ${e.dlq_entry_uuid} is not pending: it was ${e.resolution_status} by ${e.resolved_by ?? 'unknown'} at ${at}; only pending entries can be resolved`,
    {
      dlq_entry_uuid: e.dlq_entry_uuid,
      resolution_status: e.resolution_status,
      resolved_by: e.resolved_by,
      resolution_timestamp: e.resolution_timestamp,
    },
  );
}

// --- investigations ------------------------------------------------------------------------------

export interface UpdateInvestigationParams {
  uuid: string;
  /** A final status: only a pending entry can be given one (else ConflictError, who and when). */
  status?: TerminalResolutionStatus | undefined;
  notes?: string | undefined;
  /** Defaults to the actor's name when a status is given. */
  resolvedBy?: string | undefined;
  metadata?: Record<string, unknown> | undefined;
  actor: Actor;
  now: Date;
}

/**
 * Upstream's PATCH /v1/dlq/entry/{uuid}: a partial update (omitted fields keep their value). With a
 * status it resolves the entry, which must be pending; without one it amends notes or metadata of
 * any entry. The entry is locked first, so of simultaneous resolutions exactly one wins and the
 * others get a ConflictError naming it.
 */
export async function updateInvestigation(
  pool: pg.Pool,
  p: UpdateInvestigationParams,
): Promise<ResolvedEntry> {
  if ([p.status, p.notes, p.resolvedBy, p.metadata].every((v) => v === undefined)) {
    throw new UsageError(
      'body: expected at least one of resolution_status, resolution_notes, resolved_by, metadata',
    );
  }
  return withTransaction(pool, async (client) => {
    const before = await lockEntry(client, p.uuid);
    if (!before) throw new NotFoundError(`no DLQ entry ${p.uuid}`);
    if (p.status !== undefined && before.resolution_status !== 'pending') throw notPending(before);
    const after = await updateEntry(client, {
      entryUuid: p.uuid,
      status: p.status,
      notes: p.notes,
      resolvedBy: p.resolvedBy ?? (p.status === undefined ? undefined : p.actor.name),
      metadata: p.metadata,
      now: p.now,
    });
    await insertAudit(client, {
      at: p.now,
      actor: p.actor,
      action: p.status === undefined ? 'dlq.update' : 'dlq.resolve',
      targetKind: 'dlq_entry',
      targetId: p.uuid,
      before: entryValues(before),
      after: entryValues(after!),
      details: { task_uuid: before.task_uuid },
    });
    return after!;
  });
}

export interface ResolveInvestigationParams {
  uuid: string;
  status: TerminalResolutionStatus;
  notes: string;
  /** Who resolved it, as recorded on the entry; defaults to the actor's name. */
  resolvedBy?: string | undefined;
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

export interface BulkResolveParams {
  filter: BulkFilter;
  status: TerminalResolutionStatus;
  notes: string;
  /** true: change nothing, report what would be resolved. */
  dryRun: boolean;
  /** How many of the matching entries to return (the first, oldest first). */
  previewLimit: number;
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
}

/**
 * Resolves every pending entry matching the filter in one transaction, one audit row per entry
 * (action dlq.bulk_resolve). The matching entries are locked first, so an entry resolved meanwhile
 * by someone else is either already resolved (not matched) or waits for this. A dry run reads the
 * same rows without locking and changes nothing. More than BULK_RESOLVE_MAX_ENTRIES matches is
 * refused (UsageError): narrow the filter.
 */
export async function bulkResolve(pool: pg.Pool, p: BulkResolveParams): Promise<BulkResolveResult> {
  const tooMany = () =>
    new UsageError(
      `filter: more than ${BULK_RESOLVE_MAX_ENTRIES} pending entries match; narrow it (reason, namespace, template, original state, older than) and resolve in parts`,
    );
  if (p.dryRun) {
    const rows = await pendingMatching(pool, p.filter, p.now, BULK_RESOLVE_MAX_ENTRIES + 1, false);
    if (rows.length > BULK_RESOLVE_MAX_ENTRIES) throw tooMany();
    return { dry_run: true, matched: rows.length, resolved: 0, entries: rows.slice(0, p.previewLimit) };
  }
  return withTransaction(pool, async (client) => {
    const rows = await pendingMatching(client, p.filter, p.now, BULK_RESOLVE_MAX_ENTRIES + 1, true);
    if (rows.length > BULK_RESOLVE_MAX_ENTRIES) throw tooMany();
    const resolved = await resolveEntries(
      client,
      rows.map((r) => r.dlq_entry_uuid),
      p.status,
      p.notes,
      p.actor.name,
      p.now,
    );
    // One action, one audit row: the filter, what every entry went from and to, and which entries
    // (their uuids; each entry also keeps resolved_by and resolution_timestamp itself).
    if (resolved.length > 0)
      await insertAudit(client, {
        at: p.now,
        actor: p.actor,
        action: 'dlq.bulk_resolve',
        targetKind: 'dlq_filter',
        targetId: JSON.stringify(p.filter),
        before: { resolution_status: 'pending' },
        after: { resolution_status: p.status, resolution_notes: p.notes, resolved_by: p.actor.name },
        details: {
          filter: p.filter,
          matched: rows.length,
          resolved: resolved.length,
          dlq_entry_uuids: resolved,
        },
      });
    return {
      dry_run: false,
      matched: rows.length,
      resolved: resolved.length,
      entries: rows.slice(0, p.previewLimit),
    };
  });
}

// --- jobs ------------------------------------------------------------------------------------------

/** The jobs an operator may queue a run of. */
export const ENQUEUEABLE_JOBS: Readonly<Record<string, AnyJob>> = {
  [detectStaleTasks.name]: detectStaleTasks,
  [archiveFinishedTasks.name]: archiveFinishedTasks,
};

/** pg-boss's send/complete inside our transaction: the same client runs its statements. */
function bossDb(client: pg.PoolClient) {
  return {
    executeSql: async (text: string, values?: unknown[]) => {
      const { rows } = await client.query(text, values as unknown[]);
      return { rows };
    },
  };
}

export interface EnqueueRunParams {
  /** detect-stale-tasks or archive-finished-tasks. */
  job: string;
  /** Only the options the operator gave: the worker fills in the rest from its configuration. */
  options: Record<string, unknown>;
  actor: Actor;
  now: Date;
}

export interface EnqueuedRun {
  job: string;
  job_id: string;
}

/**
 * Queues one ad-hoc run. The options are checked against the job's schema over this process's
 * configuration first (UsageError naming the option). ConflictError when a run is already waiting
 * (runs of a job never overlap and at most one waits).
 */
export async function enqueueRun(
  deps: { pool: pg.Pool; boss: PgBoss; config: Readonly<Config> },
  p: EnqueueRunParams,
): Promise<EnqueuedRun> {
  const job = ENQUEUEABLE_JOBS[p.job];
  if (!job)
    throw new NotFoundError(`no job ${p.job}: expected one of ${Object.keys(ENQUEUEABLE_JOBS).join(', ')}`);
  const checked = job.optionsSchema.safeParse({ ...job.optionsFromConfig(deps.config), ...p.options });
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw new UsageError(`options.${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'not allowed'}`);
  }
  return withTransaction(deps.pool, async (client) => {
    const data: RunRequest = { trigger: 'adhoc', options: p.options };
    const id = await deps.boss.send(job.name, data, { singletonKey: RUN_KEY, db: bossDb(client) });
    if (id === null) {
      throw new ConflictError(
        `a ${job.name} run is already waiting to start (runs of a job never overlap, and one waits at most); this request was not queued`,
        { job: job.name },
      );
    }
    await insertAudit(client, {
      at: p.now,
      actor: p.actor,
      action: 'job.enqueue',
      targetKind: 'job',
      targetId: id,
      before: null,
      after: { job: job.name, job_id: id, options: p.options },
    });
    return { job: job.name, job_id: id };
  });
}

export interface RetryDeadJobParams {
  /** The job whose dead-letter queue (<job>.failed) holds the run. */
  job: string;
  /** The dead-lettered copy's id in <job>.failed. */
  deadJobId: string;
  actor: Actor;
  now: Date;
}

export interface RetriedRun {
  job: string;
  dead_job_id: string;
  job_id: string;
}

/**
 * Queues a dead-lettered run again, with its original request, and marks its dead-letter copy
 * completed (output: retried_as). NotFoundError when the copy does not exist; ConflictError when it
 * was already retried, or when a run of the job is already waiting.
 */
export async function retryDeadJob(
  deps: { pool: pg.Pool; boss: PgBoss },
  p: RetryDeadJobParams,
): Promise<RetriedRun> {
  const job = Object.values(ENQUEUEABLE_JOBS).find((j) => j.name === p.job);
  if (!job)
    throw new NotFoundError(`no job ${p.job}: expected one of ${Object.keys(ENQUEUEABLE_JOBS).join(', ')}`);
  const queue = deadLetterQueue(job);
  return withTransaction(deps.pool, async (client) => {
    const dead = await lockDeadLettered(client, queue, p.deadJobId);
    if (!dead) throw new NotFoundError(`no dead-lettered run ${p.deadJobId} in ${queue}`);
    if (dead.state !== 'created') {
      throw new ConflictError(`dead-lettered run ${p.deadJobId} was already retried (it is ${dead.state})`, {
        dead_job_id: p.deadJobId,
        state: dead.state,
      });
    }
    const data = (dead.data ?? { trigger: 'adhoc' }) as RunRequest;
    const id = await deps.boss.send(job.name, data, { singletonKey: RUN_KEY, db: bossDb(client) });
    if (id === null) {
      throw new ConflictError(`a ${job.name} run is already waiting to start; retry this one after it`, {
        job: job.name,
      });
    }
    await markDeadLetterRetried(client, queue, p.deadJobId, { retried_as: id, retried_by: p.actor.name });
    await insertAudit(client, {
      at: p.now,
      actor: p.actor,
      action: 'job.retry',
      targetKind: 'job',
      targetId: p.deadJobId,
      before: { queue, state: dead.state, source_id: dead.source_id },
      after: { queue, state: 'completed', retried_as: id },
      details: { job: job.name, error: dead.error },
    });
    return { job: job.name, dead_job_id: p.deadJobId, job_id: id };
  });
}

// --- archive -------------------------------------------------------------------------------------

export interface RestoreArchivedTaskParams {
  taskUuid: string;
  actor: Actor;
  now: Date;
}

export type RestoredGraph = Awaited<ReturnType<typeof restoreArchivedRows>> & { task_uuid: string };

/** Moves one archived task graph back to the live tables (NotFoundError when it is not archived). */
export async function restoreArchivedTask(
  pool: pg.Pool,
  p: RestoreArchivedTaskParams,
): Promise<RestoredGraph> {
  return withTransaction(pool, async (client) => {
    const restored = await restoreArchivedRows(client, p.taskUuid);
    await insertAudit(client, {
      at: p.now,
      actor: p.actor,
      action: 'archive.restore',
      targetKind: 'task',
      targetId: p.taskUuid,
      before: { location: 'archive' },
      after: { location: 'live', ...restored },
    });
    return { task_uuid: p.taskUuid, ...restored };
  });
}

// --- tokens ----------------------------------------------------------------------------------------

export interface CreateTokenParams {
  name: string;
  permissions: Permission[];
  expiresInDays?: number | undefined;
  actor: Actor;
  now: Date;
}

export interface CreatedToken {
  name: string;
  /** The secret: shown once, never stored. */
  token: string;
  permissions: Permission[];
  expires_at: Date | null;
}

/** Creates a token (ConflictError when a live token has the name). The audit row has no secret. */
export async function createToken(pool: pg.Pool, p: CreateTokenParams): Promise<CreatedToken> {
  const { tokenId, secret, secretSha256 } = generateToken();
  const expiresAt =
    p.expiresInDays === undefined ? null : new Date(p.now.getTime() + p.expiresInDays * 86_400_000);
  const permissions = [...new Set(p.permissions)];
  return withTransaction(pool, async (client) => {
    const row = await insertToken(client, {
      tokenId,
      name: p.name,
      secretSha256,
      permissions,
      createdAt: p.now,
      createdBy: p.actor.name,
      expiresAt,
    });
    if (!row) {
      throw new ConflictError(
        `a token named ${p.name} already exists; revoke it first or choose another name`,
        {
          name: p.name,
        },
      );
    }
    await insertAudit(client, {
      at: p.now,
      actor: p.actor,
      action: 'token.create',
      targetKind: 'token',
      targetId: p.name,
      before: null,
      after: { name: p.name, token_id: tokenId, permissions, expires_at: expiresAt },
    });
    return { name: p.name, token: secret, permissions, expires_at: expiresAt };
  });
}

/** Revokes the live token of a name (NotFoundError when there is none). */
export async function revokeToken(
  pool: pg.Pool,
  p: { name: string; actor: Actor; now: Date },
): Promise<TokenRow> {
  return withTransaction(pool, async (client) => {
    const row = await revokeTokenRow(client, p.name, p.now, p.actor.name);
    if (!row) throw new NotFoundError(`no live token named ${p.name}`);
    await insertAudit(client, {
      at: p.now,
      actor: p.actor,
      action: 'token.revoke',
      targetKind: 'token',
      targetId: p.name,
      before: { revoked_at: null },
      after: { revoked_at: p.now, token_id: row.token_id },
    });
    return row;
  });
}
