import type { Db } from '../pool.ts';

/** Queries on tasker_audit_log (migrations/0080_api_tokens_and_audit.sql). */

export type ActorKind = 'token' | 'cli' | 'console';

/**
 * Who made a change: through the API and the console, the token (its name and its id, which is
 * never reused); through the CLI, the --by name (or the OS user) and the OS user who ran it.
 */
export interface Actor {
  kind: ActorKind;
  name: string;
  /** The token's id (API and console). */
  tokenId?: string | undefined;
  /** The operating-system user who ran the CLI. */
  osUser?: string | undefined;
}

/** dlq_filter: a bulk resolution, one row for every entry it resolved (target_id: the filter as JSON). */
export type AuditTargetKind = 'dlq_entry' | 'dlq_filter' | 'task' | 'job' | 'token';

export interface AuditRecord {
  at: Date;
  actor: Actor;
  /** e.g. dlq.resolve, dlq.add, dlq.bulk_resolve, job.enqueue, job.retry, archive.restore, token.create. */
  action: string;
  targetKind: AuditTargetKind;
  targetId: string;
  before?: unknown;
  after?: unknown;
  details?: unknown;
}

export interface AuditRow {
  audit_id: number;
  at: Date;
  actor: string;
  actor_kind: ActorKind;
  /** The token that made the change (API, console); null for the CLI and some rows before 0180. */
  actor_token_id: string | null;
  /** The OS user who ran the CLI; null otherwise. */
  actor_os_user: string | null;
  action: string;
  target_kind: AuditTargetKind;
  target_id: string;
  before: unknown;
  after: unknown;
  details: unknown;
}

const json = (v: unknown) => (v === undefined || v === null ? null : JSON.stringify(v));

/** Writes one audit row; call it with the client of the transaction that makes the change. */
export async function insertAudit(db: Db, r: AuditRecord): Promise<number> {
  const { rows } = await db.query<{ audit_id: number }>(
    `INSERT INTO tasker_audit_log (at, actor, actor_kind, actor_token_id, actor_os_user, action, target_kind,
                                   target_id, before, after, details)
     VALUES ($1, $2, $3, $10, $11, $4, $5, $6, $7::jsonb, $8::jsonb, $9::jsonb) RETURNING audit_id`,
    [
      r.at,
      r.actor.name,
      r.actor.kind,
      r.action,
      r.targetKind,
      r.targetId,
      json(r.before),
      json(r.after),
      json(r.details),
      r.actor.tokenId ?? null,
      r.actor.osUser ?? null,
    ],
  );
  return rows[0]!.audit_id;
}

export interface ListAuditParams {
  since?: Date | undefined;
  actor?: string | undefined;
  /** Only rows by this token (its id): a name given again after a revocation is another token. */
  actorTokenId?: string | undefined;
  /** Only rows about this entry or task (target_id). */
  targetId?: string | undefined;
  /** Rows older than this audit_id (paging: the last audit_id of the previous page). */
  beforeId?: number | undefined;
  limit: number;
  /** For a page: a bulk resolution names only its first this-many entries (see auditColumns). */
  entryUuidsShown?: number | undefined;
}

/**
 * The columns of an audit row. A bulk resolution of a whole group names up to 100,000 entries in
 * details.dlq_entry_uuids (3.7 MB); given the parameter `shown` (its $n), the list is cut to its
 * first `shown` uuids in the database, and details.resolved still says how many there were.
 */
function auditColumns(shown: string): string {
  return `audit_id, at, actor, actor_kind, actor_token_id, actor_os_user, action, target_kind, target_id,
          before, after,
          CASE WHEN ${shown}::integer IS NOT NULL
                AND jsonb_typeof(details -> 'dlq_entry_uuids') = 'array'
                AND jsonb_array_length(details -> 'dlq_entry_uuids') > ${shown}::integer
               THEN jsonb_set(details, '{dlq_entry_uuids}',
                              jsonb_path_query_array(details -> 'dlq_entry_uuids', '$[0 to $last]',
                                                     jsonb_build_object('last', ${shown}::integer - 1)))
               ELSE details END AS details`;
}

/**
 * Audit rows, newest first, bounded by limit: idx_audit_log_token_at with a token id,
 * idx_audit_log_actor_at with an actor, idx_audit_log_at otherwise (a target filter is applied on
 * top of those).
 */
export async function listAudit(db: Db, p: ListAuditParams): Promise<AuditRow[]> {
  const { rows } = await db.query<AuditRow>(
    `SELECT ${auditColumns('$7')}
       FROM tasker_audit_log
      WHERE ($1::timestamptz IS NULL OR at >= $1)
        AND ($2::text IS NULL OR actor = $2)
        AND ($3::text IS NULL OR target_id = $3)
        AND ($4::bigint IS NULL OR audit_id < $4)
        AND ($6::text IS NULL OR actor_token_id = $6)
      ORDER BY at DESC, audit_id DESC
      LIMIT $5`,
    [
      p.since ?? null,
      p.actor ?? null,
      p.targetId ?? null,
      p.beforeId ?? null,
      p.limit,
      p.actorTokenId ?? null,
      p.entryUuidsShown ?? null,
    ],
  );
  return rows;
}

/** One audit row by its id (primary key); entryUuidsShown as in listAudit. */
export async function findAudit(
  db: Db,
  auditId: number,
  entryUuidsShown?: number,
): Promise<AuditRow | undefined> {
  const { rows } = await db.query<AuditRow>(
    `SELECT ${auditColumns('$2')} FROM tasker_audit_log WHERE audit_id = $1`,
    [auditId, entryUuidsShown ?? null],
  );
  return rows[0];
}
