/**
 * The DLQ's domain: its enums (snake_case on every surface, unlike upstream's JSON casing quirk),
 * the entry, and the small rules about urgency and age that the CLI and views share.
 */

export const DLQ_RESOLUTION_STATUSES = [
  'pending',
  'manually_resolved',
  'permanently_failed',
  'cancelled',
] as const;
export type DlqResolutionStatus = (typeof DLQ_RESOLUTION_STATUSES)[number];

/** The statuses an investigation can end in; resolving needs one of these. */
export const TERMINAL_RESOLUTION_STATUSES = ['manually_resolved', 'permanently_failed', 'cancelled'] as const;
export type TerminalResolutionStatus = (typeof TERMINAL_RESOLUTION_STATUSES)[number];

export const DLQ_REASONS = [
  'staleness_timeout',
  'max_retries_exceeded',
  'dependency_cycle_detected',
  'worker_unavailable',
  'manual_dlq',
] as const;
export type DlqReason = (typeof DLQ_REASONS)[number];

export interface DlqEntry {
  dlq_entry_uuid: string;
  task_uuid: string;
  original_state: string;
  dlq_reason: DlqReason;
  dlq_timestamp: Date;
  resolution_status: DlqResolutionStatus;
  resolution_timestamp: Date | null;
  resolution_notes: string | null;
  /** Who resolved it: the identity that made the change (a token's name, the CLI's --by or OS user). */
  resolved_by: string | null;
  /** The token that resolved it (API and console); null for the CLI and entries resolved before 0181. */
  resolved_by_token_id: string | null;
  /** What the caller said it resolved it for (the API's resolved_by), shown as "on behalf of". */
  resolved_on_behalf_of: string | null;
  task_snapshot: Record<string, unknown>;
  metadata: Record<string, unknown> | null;
  created_at: Date;
  updated_at: Date;
}

/**
 * Base urgency of a reason, as v_dlq_investigation_queue scores it (plus one point per minute
 * waiting): a dependency cycle can never finish, exhausted retries will not fix themselves, a plain
 * timeout may, and a missing worker usually recovers on its own.
 */
export const REASON_PRIORITY_SCORE: Readonly<Record<DlqReason, number>> = {
  dependency_cycle_detected: 1000,
  max_retries_exceeded: 500,
  staleness_timeout: 100,
  worker_unavailable: 50,
  manual_dlq: 10,
};

/** Rank 1 (most urgent) to 5, in the order of REASON_PRIORITY_SCORE. */
export function reasonRank(reason: DlqReason): number {
  const order = [...DLQ_REASONS].sort((a, b) => REASON_PRIORITY_SCORE[b] - REASON_PRIORITY_SCORE[a]);
  return order.indexOf(reason) + 1;
}

/** Reasons that point at the system (graph, retries, workers) rather than at one slow task. */
export function isSystemicReason(reason: DlqReason): boolean {
  return (
    reason === 'dependency_cycle_detected' ||
    reason === 'max_retries_exceeded' ||
    reason === 'worker_unavailable'
  );
}

export function isDlqReason(value: string): value is DlqReason {
  return (DLQ_REASONS as readonly string[]).includes(value);
}

export function isResolutionStatus(value: string): value is DlqResolutionStatus {
  return (DLQ_RESOLUTION_STATUSES as readonly string[]).includes(value);
}

/** Whole minutes the entry has been (or was, until resolved) in the DLQ. */
export function minutesInDlq(
  entry: Pick<DlqEntry, 'dlq_timestamp' | 'resolution_timestamp'>,
  now: Date,
): number {
  const end = entry.resolution_timestamp ?? now;
  return Math.floor((end.getTime() - entry.dlq_timestamp.getTime()) / 60_000);
}

/** A pending entry older than maxPendingAgeHours (strictly); resolved entries are never overdue. */
export function isOverdue(
  entry: Pick<DlqEntry, 'dlq_timestamp' | 'resolution_status'>,
  maxPendingAgeHours: number,
  now: Date,
): boolean {
  if (entry.resolution_status !== 'pending') return false;
  return now.getTime() - entry.dlq_timestamp.getTime() > maxPendingAgeHours * 3_600_000;
}

/**
 * Who resolved an entry, in the same words on every surface: the identity that made the change,
 * with its token when it was one (a token's name may be given again after a revocation; its id is
 * never), then whom the caller said it was for. "ops (token 1a2b3c4d5e6f7a8b) on behalf of alice";
 * "alice" for the CLI; "unknown" when nothing was recorded.
 */
export function resolverText(
  entry: Pick<DlqEntry, 'resolved_by' | 'resolved_by_token_id' | 'resolved_on_behalf_of'>,
): string {
  const who = entry.resolved_by ?? 'unknown';
  const token = entry.resolved_by_token_id ? ` (token ${entry.resolved_by_token_id})` : '';
  const behalf = entry.resolved_on_behalf_of ? ` on behalf of ${entry.resolved_on_behalf_of}` : '';
  return `${who}${token}${behalf}`;
}
