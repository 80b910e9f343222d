/**
 * Groups of investigations (issue 27): entries whose failure fingerprint is the same. The
 * fingerprint is computed by enrichment (migrations/functions/dlq_failure_signature.sql) from the
 * template, the reason, the state when detected and the blocking steps with their errors
 * normalized (docs/grouping.md); the group's counts are kept by triggers on tasker_tasks_dlq
 * (migrations/functions/dlq_groups_follow_entries.sql). This file has the shapes and the small
 * rules the API, the console and the CLI share.
 */

import { TERMINAL_RESOLUTION_STATUSES } from './dlq.ts';

/** A fingerprint: 32 lowercase hex digits. */
export const FINGERPRINT_PATTERN = /^[0-9a-f]{32}$/;

/** What a fingerprint stands for, as enrichment recorded it (task_snapshot.failure_signature). */
export interface FailureSignature {
  version: number;
  fingerprint: string;
  template: { namespace: string | null; name: string | null; version: string | null };
  dlq_reason: string;
  original_state: string;
  /** read: blocking steps from the graph; task_missing: the task was gone; unavailable: graph not read. */
  graph: 'read' | 'task_missing' | 'unavailable';
  /** Distinct (step, normalized error) pairs, sorted; at most 20 (null unless graph is read). */
  blocking: Array<{ step: string; error: string | null }> | null;
  /** How many distinct pairs there were (null unless graph is read). */
  blocking_total: number | null;
  summary: string;
}

/** One hour of a group's trend. */
export interface TrendPoint {
  /** The hour's start (UTC). */
  hour: Date;
  /** Entries of the group opened in that hour (dlq_timestamp). */
  opened: number;
  /** Entries of the group resolved in that hour (resolution_timestamp). */
  resolved: number;
  /** Entries of the group pending at the end of that hour (for the current hour: now). */
  pending: number;
}

/** The hours a trend covers: the current hour and the 23 before it. */
export const TREND_HOURS = 24;

/** Start of the UTC hour `at` falls in. */
export function hourOf(at: Date): Date {
  return new Date(Math.floor(at.getTime() / 3_600_000) * 3_600_000);
}

/**
 * A group's pending entries at the end of each of the last TREND_HOURS hours, from its pending count
 * now and the entries opened and resolved in each hour (tasker_dlq_group_hours): going back from
 * now, each hour's pending is the next hour's, less what opened in the next hour, plus what was
 * resolved in it. Exact at the hours' ends, as the group's entries are known now (an entry enriched
 * late counts from when it was opened). Hours without a row opened and resolved nothing.
 */
export function groupTrend(
  pendingNow: number,
  hours: ReadonlyArray<{ hour: Date; opened: number; resolved: number }>,
  now: Date,
): TrendPoint[] {
  const byHour = new Map(hours.map((h) => [h.hour.getTime(), h]));
  const current = hourOf(now).getTime();
  const points: TrendPoint[] = [];
  let pending = pendingNow;
  for (let i = 0; i < TREND_HOURS; i++) {
    const at = current - i * 3_600_000;
    const h = byHour.get(at);
    const opened = Number(h?.opened ?? 0);
    const resolved = Number(h?.resolved ?? 0);
    points.push({ hour: new Date(at), opened, resolved, pending });
    // Pending at the end of the hour before: before this hour's openings and resolutions.
    pending = pending - opened + resolved;
  }
  return points.reverse();
}

/** "shop/order 1.2.0" (the parts known). */
export function templateLabel(g: {
  namespace_name: string | null;
  task_name: string | null;
  template_version?: string | null;
}): string {
  const name = `${g.namespace_name ?? '?'}/${g.task_name ?? '?'}`;
  return g.template_version ? `${name} ${g.template_version}` : name;
}

/** Which of a group's entries to list: the pending ones (the default), the resolved ones, or one status. */
export const GROUP_ENTRY_STATUSES = ['pending', 'resolved', ...TERMINAL_RESOLUTION_STATUSES] as const;
export type GroupEntryStatus = (typeof GROUP_ENTRY_STATUSES)[number];
