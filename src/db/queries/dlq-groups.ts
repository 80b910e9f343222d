import { type DlqReason, TERMINAL_RESOLUTION_STATUSES } from '../../domain/dlq.ts';
import {
  type FailureSignature,
  type GroupEntryStatus,
  groupTrend,
  TREND_HOURS,
  type TrendPoint,
} from '../../domain/dlq-groups.ts';
import type { Db } from '../pool.ts';

/**
 * Reads of investigation groups (issue 27; migrations/0200_dlq_failure_groups.sql): tasker_dlq_groups
 * (one row per fingerprint, with its pending and resolved counts, kept by the triggers of
 * migrations/functions/dlq_groups_follow_entries.sql), tasker_dlq_group_hours (entries opened and
 * resolved per group and hour), and a group's entries through idx_dlq_failure_fingerprint
 * (failure_fingerprint, resolution_status, dlq_timestamp, dlq_entry_uuid).
 *
 * A page of groups reads the groups' rows (one per cause: a few dozen on a bad day), one index
 * probe per group shown (its oldest and newest pending entry) and its hours of the last day: never
 * the entries themselves, so it costs the same with a thousand pending entries or a million.
 */

export interface GroupFilter {
  reason?: DlqReason | undefined;
  /** Exact namespace of the group's template. */
  namespace?: string | undefined;
  /** Exact name of the group's template. */
  template?: string | undefined;
  /** Only groups whose oldest pending entry waits at least this many minutes. */
  minAgeMinutes?: number | undefined;
  /** Only groups with an overdue pending entry (older than dlq.max_pending_age_hours). */
  overdueOnly?: boolean | undefined;
  /** Also groups with no pending entry left (default: only groups with pending entries). */
  includeResolved?: boolean | undefined;
}

export interface Group {
  fingerprint: string;
  /** The rule set that made it; current_rules is false for a group of an older one. */
  rule_version: number;
  current_rules: boolean;
  template: { namespace: string | null; name: string | null; version: string | null };
  dlq_reason: DlqReason;
  original_state: string;
  /** The shared diagnosis: the blocking steps and their errors, normalized, in one line. */
  diagnosis: string;
  graph: FailureSignature['graph'] | null;
  /** Distinct (blocking step, normalized error) pairs (at most 20), null when not read. */
  blocking: FailureSignature['blocking'];
  blocking_total: number | null;
  pending: number;
  resolved: number;
  /** dlq_timestamp of its first and latest entries. */
  first_seen_at: Date;
  last_seen_at: Date;
  /** When its fingerprint first appeared (a new failure signature). */
  new_at: Date;
  oldest_pending_at: Date | null;
  /** Its oldest pending entry is older than dlq.max_pending_age_hours. */
  overdue: boolean;
  /** The newest pending entry (else one of its resolved ones), to look at. */
  sample_dlq_entry_uuid: string | null;
  /** Pending at the end of each of the last 24 hours, with what opened and was resolved in each. */
  trend: TrendPoint[];
}

interface GroupDbRow {
  fingerprint: string;
  rule_version: number;
  current_rules: boolean;
  namespace_name: string | null;
  task_name: string | null;
  template_version: string | null;
  dlq_reason: DlqReason;
  original_state: string;
  diagnosis: string;
  signature: Partial<FailureSignature>;
  pending: number;
  resolved: number;
  first_seen_at: Date;
  last_seen_at: Date;
  created_at: Date;
  oldest_pending_at: Date | null;
  overdue: boolean;
  sample_dlq_entry_uuid: string | null;
}

/** The oldest pending entry of group `g` (idx_dlq_failure_fingerprint: its first entry). */
const OLDEST_PENDING = `SELECT d.dlq_timestamp FROM tasker_tasks_dlq d
   WHERE d.failure_fingerprint = g.fingerprint AND d.resolution_status = 'pending'
   ORDER BY d.dlq_timestamp, d.dlq_entry_uuid LIMIT 1`;

/**
 * The columns of a group row `g` shown ($1 = now, s = the settings): its oldest pending entry, and
 * a sample, the newest pending entry, else the newest of its last resolution status (each one
 * probe of idx_dlq_failure_fingerprint, forwards or backwards).
 */
const GROUP_COLUMNS = `g.fingerprint, g.rule_version, g.rule_version = dlq_failure_rules_version() AS current_rules,
       g.namespace_name, g.task_name, g.template_version, g.dlq_reason::text AS dlq_reason, g.original_state,
       g.diagnosis, g.signature, g.pending, g.resolved, g.first_seen_at, g.last_seen_at, g.created_at,
       o.oldest_pending_at,
       coalesce(o.oldest_pending_at < $1::timestamptz - make_interval(hours => s.max_pending_age_hours), false) AS overdue,
       coalesce((SELECT d.dlq_entry_uuid FROM tasker_tasks_dlq d
                  WHERE d.failure_fingerprint = g.fingerprint AND d.resolution_status = 'pending'
                  ORDER BY d.dlq_timestamp DESC, d.dlq_entry_uuid DESC LIMIT 1),
                (SELECT d.dlq_entry_uuid FROM tasker_tasks_dlq d
                  WHERE d.failure_fingerprint = g.fingerprint
                  ORDER BY d.resolution_status DESC, d.dlq_timestamp DESC, d.dlq_entry_uuid DESC LIMIT 1))
         AS sample_dlq_entry_uuid`;

/**
 * Groups matching the filter ($1 now, $2 reason, $3 namespace, $4 template, $5 include resolved,
 * $6 min age, $7 overdue only), with how many and their pending entries in all, and a page of them
 * ($8 limit, $9 offset), most pending first. The age filters probe each candidate group's oldest
 * pending entry; without them only the page's groups are probed.
 */
const LIST_GROUPS_SQL = `WITH matched AS (
       SELECT g.*
         FROM tasker_dlq_groups g
        CROSS JOIN tasker_lifecycle_settings s
        WHERE ($2::dlq_reason IS NULL OR g.dlq_reason = $2)
          AND ($3::text IS NULL OR g.namespace_name = $3)
          AND ($4::text IS NULL OR g.task_name = $4)
          AND ($5::boolean OR g.pending > 0)
          AND (($6::integer IS NULL AND NOT $7::boolean)
               OR EXISTS (SELECT 1 FROM (${OLDEST_PENDING}) o
                           WHERE ($6::integer IS NULL OR o.dlq_timestamp <= $1::timestamptz - make_interval(mins => $6))
                             AND (NOT $7::boolean
                                  OR o.dlq_timestamp < $1::timestamptz - make_interval(hours => s.max_pending_age_hours))))
     ),
     totals AS (SELECT count(*)::integer AS groups, coalesce(sum(pending), 0)::bigint AS pending FROM matched),
     page AS (
       SELECT * FROM matched ORDER BY pending DESC, last_seen_at DESC, fingerprint LIMIT $8 OFFSET $9
     )
     SELECT ${GROUP_COLUMNS}, t.groups AS total_groups, t.pending AS total_pending
       FROM totals t
       LEFT JOIN page g ON true
       CROSS JOIN tasker_lifecycle_settings s
       LEFT JOIN LATERAL (SELECT (${OLDEST_PENDING}) AS oldest_pending_at) o ON g.fingerprint IS NOT NULL
      ORDER BY g.pending DESC, g.last_seen_at DESC, g.fingerprint`;

/** Hours of the last day of the given groups (tasker_dlq_group_hours' primary key, a range per group). */
async function hoursOf(
  db: Db,
  fingerprints: readonly string[],
  now: Date,
): Promise<Map<string, Array<{ hour: Date; opened: number; resolved: number }>>> {
  const byGroup = new Map<string, Array<{ hour: Date; opened: number; resolved: number }>>();
  if (fingerprints.length === 0) return byGroup;
  const { rows } = await db.query<{ fingerprint: string; hour: Date; opened: number; resolved: number }>(
    `SELECT h.fingerprint, h.hour, h.opened, h.resolved
       FROM unnest($1::text[]) AS f(fingerprint)
       JOIN tasker_dlq_group_hours h
         ON h.fingerprint = f.fingerprint
        AND h.hour > date_trunc('hour', $2::timestamptz, 'UTC') - make_interval(hours => $3)
        AND h.hour <= $2::timestamptz`,
    [fingerprints, now, TREND_HOURS],
  );
  for (const r of rows) {
    const list = byGroup.get(r.fingerprint) ?? [];
    list.push(r);
    byGroup.set(r.fingerprint, list);
  }
  return byGroup;
}

function toGroup(
  r: GroupDbRow,
  hours: ReadonlyArray<{ hour: Date; opened: number; resolved: number }>,
  now: Date,
): Group {
  const sig = r.signature ?? {};
  return {
    fingerprint: r.fingerprint,
    rule_version: r.rule_version,
    current_rules: r.current_rules,
    template: { namespace: r.namespace_name, name: r.task_name, version: r.template_version },
    dlq_reason: r.dlq_reason,
    original_state: r.original_state,
    diagnosis: r.diagnosis,
    graph: sig.graph ?? null,
    blocking: sig.blocking ?? null,
    blocking_total: sig.blocking_total ?? null,
    pending: r.pending,
    resolved: r.resolved,
    first_seen_at: r.first_seen_at,
    last_seen_at: r.last_seen_at,
    new_at: r.created_at,
    oldest_pending_at: r.oldest_pending_at,
    overdue: r.overdue,
    sample_dlq_entry_uuid: r.sample_dlq_entry_uuid,
    trend: groupTrend(r.pending, hours, now),
  };
}

export interface GroupPage {
  /** Groups matching the filter. */
  total: number;
  /** Their pending entries in all. */
  total_pending: number;
  groups: Group[];
}

/** A page of groups matching the filter, most pending first, each with its trend. */
export async function listGroups(
  db: Db,
  f: GroupFilter,
  page: { limit: number; offset: number },
  now: Date,
): Promise<GroupPage> {
  const { rows } = await db.query<GroupDbRow & { total_groups: number; total_pending: string }>(
    LIST_GROUPS_SQL,
    [
      now,
      f.reason ?? null,
      f.namespace ?? null,
      f.template ?? null,
      f.includeResolved ?? false,
      f.minAgeMinutes ?? null,
      f.overdueOnly ?? false,
      page.limit,
      page.offset,
    ],
  );
  const shown = rows.filter((r) => r.fingerprint !== null);
  const hours = await hoursOf(
    db,
    shown.map((r) => r.fingerprint),
    now,
  );
  return {
    total: rows[0]?.total_groups ?? 0,
    total_pending: Number(rows[0]?.total_pending ?? 0),
    groups: shown.map((r) => toGroup(r, hours.get(r.fingerprint) ?? [], now)),
  };
}

/** One group by its fingerprint (primary key), with its trend; undefined when no such group. */
export async function findGroup(db: Db, fingerprint: string, now: Date): Promise<Group | undefined> {
  const { rows } = await db.query<GroupDbRow>(
    `SELECT ${GROUP_COLUMNS}
       FROM tasker_dlq_groups g
       CROSS JOIN tasker_lifecycle_settings s
       CROSS JOIN LATERAL (SELECT (${OLDEST_PENDING}) AS oldest_pending_at) o
      WHERE g.fingerprint = $2`,
    [now, fingerprint],
  );
  if (!rows[0]) return undefined;
  const hours = await hoursOf(db, [fingerprint], now);
  return toGroup(rows[0], hours.get(fingerprint) ?? [], now);
}

export interface GroupEntry {
  dlq_entry_uuid: string;
  task_uuid: string;
  original_state: string;
  dlq_reason: DlqReason;
  dlq_timestamp: Date;
  resolution_status: string;
  resolution_timestamp: Date | null;
  resolved_by: string | null;
  minutes_in_dlq: number;
  overdue: boolean;
  /** The entry's own diagnosis summary (its snapshot). */
  summary: string | null;
}

/**
 * A page of a group's entries ($1 now, $2 fingerprint, $3 statuses, $4 newest first, $5 limit, $6
 * offset): for each status asked for, the first offset+limit entries in idx_dlq_failure_fingerprint
 * order (forwards: oldest first; backwards: newest first), merged. So a page reads at most
 * (statuses x (offset + limit)) index entries, however large the group.
 */
const GROUP_ENTRIES_SQL = `WITH firsts AS (
       SELECT e.*
         FROM unnest($3::dlq_resolution_status[]) AS st(status)
        CROSS JOIN LATERAL (
              (SELECT d.dlq_entry_uuid, d.task_uuid, d.original_state, d.dlq_reason, d.dlq_timestamp,
                      d.resolution_status, d.resolution_timestamp, d.resolved_by, d.task_snapshot
                 FROM tasker_tasks_dlq d
                WHERE NOT $4 AND d.failure_fingerprint = $2 AND d.resolution_status = st.status
                ORDER BY d.dlq_timestamp, d.dlq_entry_uuid
                LIMIT $5::integer + $6::integer)
              UNION ALL
              (SELECT d.dlq_entry_uuid, d.task_uuid, d.original_state, d.dlq_reason, d.dlq_timestamp,
                      d.resolution_status, d.resolution_timestamp, d.resolved_by, d.task_snapshot
                 FROM tasker_tasks_dlq d
                WHERE $4 AND d.failure_fingerprint = $2 AND d.resolution_status = st.status
                ORDER BY d.dlq_timestamp DESC, d.dlq_entry_uuid DESC
                LIMIT $5::integer + $6::integer)) e
     ),
     page AS (
       SELECT * FROM firsts
        ORDER BY CASE WHEN $4 THEN dlq_timestamp END DESC, CASE WHEN NOT $4 THEN dlq_timestamp END,
                 CASE WHEN $4 THEN dlq_entry_uuid END DESC, CASE WHEN NOT $4 THEN dlq_entry_uuid END
        LIMIT $5 OFFSET $6
     )
     SELECT p.dlq_entry_uuid, p.task_uuid, p.original_state, p.dlq_reason::text AS dlq_reason, p.dlq_timestamp,
            p.resolution_status::text AS resolution_status, p.resolution_timestamp, p.resolved_by,
            floor(extract(epoch FROM coalesce(p.resolution_timestamp, $1::timestamptz) - p.dlq_timestamp) / 60)::integer
              AS minutes_in_dlq,
            (p.resolution_status = 'pending'
             AND p.dlq_timestamp < $1::timestamptz - make_interval(hours => s.max_pending_age_hours)) AS overdue,
            p.task_snapshot #>> '{diagnosis,summary}' AS summary
       FROM page p
      CROSS JOIN tasker_lifecycle_settings s
      ORDER BY CASE WHEN $4 THEN p.dlq_timestamp END DESC, CASE WHEN NOT $4 THEN p.dlq_timestamp END,
               CASE WHEN $4 THEN p.dlq_entry_uuid END DESC, CASE WHEN NOT $4 THEN p.dlq_entry_uuid END`;

/**
 * A page of a group's entries: pending ones oldest first (the longest waiting on top), resolved ones
 * newest first. The total is the group's count for that status (its row; one status of the
 * resolved: counted in the index).
 */
export async function groupEntries(
  db: Db,
  group: Pick<Group, 'fingerprint' | 'pending' | 'resolved'>,
  o: { status: GroupEntryStatus; limit: number; offset: number },
  now: Date,
): Promise<{ total: number; entries: GroupEntry[] }> {
  const statuses = o.status === 'resolved' ? [...TERMINAL_RESOLUTION_STATUSES] : [o.status];
  const newestFirst = o.status !== 'pending';
  const { rows } = await db.query<GroupEntry>(GROUP_ENTRIES_SQL, [
    now,
    group.fingerprint,
    statuses,
    newestFirst,
    o.limit,
    o.offset,
  ]);
  let total: number;
  if (o.status === 'pending') total = group.pending;
  else if (o.status === 'resolved') total = group.resolved;
  else {
    const { rows: c } = await db.query<{ n: number }>(
      `SELECT count(*)::integer AS n FROM tasker_tasks_dlq d
        WHERE d.failure_fingerprint = $1 AND d.resolution_status = $2::dlq_resolution_status`,
      [group.fingerprint, o.status],
    );
    total = c[0]!.n;
  }
  return { total, entries: rows };
}

/**
 * Pending entries in no group yet (not enriched yet, enrichment failing, or enriched before this
 * build and waiting for the backfill): counted up to `cap` + 1 in idx_dlq_failure_fingerprint's
 * NULL range, so the answer is bounded however large a storm's backlog.
 */
export async function ungroupedPending(db: Db, cap: number): Promise<{ count: number; more: boolean }> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::integer AS n FROM (
       SELECT 1 FROM tasker_tasks_dlq d
        WHERE d.failure_fingerprint IS NULL AND d.resolution_status = 'pending'
        LIMIT $1) x`,
    [cap + 1],
  );
  const n = rows[0]!.n;
  return { count: Math.min(n, cap), more: n > cap };
}

/** The group of an entry, if it has one (primary key, then the group's). */
export async function groupOfEntry(
  db: Db,
  entryUuid: string,
): Promise<{ fingerprint: string; diagnosis: string; pending: number; resolved: number } | undefined> {
  const { rows } = await db.query<{
    fingerprint: string;
    diagnosis: string;
    pending: number;
    resolved: number;
  }>(
    `SELECT g.fingerprint, g.diagnosis, g.pending, g.resolved
       FROM tasker_tasks_dlq d JOIN tasker_dlq_groups g ON g.fingerprint = d.failure_fingerprint
      WHERE d.dlq_entry_uuid = $1`,
    [entryUuid],
  );
  return rows[0];
}

/** For the gauges: groups with pending entries, and fingerprints ever seen by reason (the groups' table). */
export async function groupGauges(
  db: Db,
): Promise<{ pending_groups: number; fingerprints: Array<{ dlq_reason: DlqReason; seen: number }> }> {
  const { rows } = await db.query<{ dlq_reason: DlqReason; seen: number; pending_groups: number }>(
    `SELECT g.dlq_reason::text AS dlq_reason, count(*)::integer AS seen,
            count(*) FILTER (WHERE g.pending > 0)::integer AS pending_groups
       FROM tasker_dlq_groups g GROUP BY g.dlq_reason`,
  );
  return {
    pending_groups: rows.reduce((n, r) => n + r.pending_groups, 0),
    fingerprints: rows.map((r) => ({ dlq_reason: r.dlq_reason, seen: r.seen })),
  };
}

/** A difference between the groups' counts and a count of the entries. */
export interface GroupDrift {
  kind: 'group' | 'hour';
  fingerprint: string;
  hour: Date | null;
  /** What the rollup says: pending or opened, resolved. */
  kept: [number, number];
  /** What a full count of the entries says. */
  counted: [number, number];
}

/**
 * Where the rollup (tasker_dlq_groups, tasker_dlq_group_hours) differs from a full count of the
 * entries: nothing when the triggers did their work. Reads every entry with a fingerprint (a check
 * for tests and for operators, not for pages).
 */
export async function groupCountsDrift(db: Db): Promise<GroupDrift[]> {
  const { rows } = await db.query<GroupDrift>(
    `WITH counted AS (
       SELECT d.failure_fingerprint AS fp,
              count(*) FILTER (WHERE d.resolution_status = 'pending')::integer AS pending,
              count(*) FILTER (WHERE d.resolution_status <> 'pending')::integer AS resolved
         FROM tasker_tasks_dlq d WHERE d.failure_fingerprint IS NOT NULL GROUP BY 1
     ),
     counted_hours AS (
       SELECT fp, hour, sum(opened)::integer AS opened, sum(resolved)::integer AS resolved
         FROM (SELECT d.failure_fingerprint AS fp, date_trunc('hour', d.dlq_timestamp, 'UTC') AS hour, 1 AS opened, 0 AS resolved
                 FROM tasker_tasks_dlq d WHERE d.failure_fingerprint IS NOT NULL
               UNION ALL
               SELECT d.failure_fingerprint, date_trunc('hour', d.resolution_timestamp, 'UTC'), 0, 1
                 FROM tasker_tasks_dlq d
                WHERE d.failure_fingerprint IS NOT NULL AND d.resolution_status <> 'pending'
                  AND d.resolution_timestamp IS NOT NULL) x
        GROUP BY fp, hour
     )
     SELECT 'group' AS kind, coalesce(g.fingerprint, c.fp) AS fingerprint, NULL::timestamptz AS hour,
            ARRAY[coalesce(g.pending, 0), coalesce(g.resolved, 0)] AS kept,
            ARRAY[coalesce(c.pending, 0), coalesce(c.resolved, 0)] AS counted
       FROM tasker_dlq_groups g FULL JOIN counted c ON c.fp = g.fingerprint
      WHERE coalesce(g.pending, 0) <> coalesce(c.pending, 0) OR coalesce(g.resolved, 0) <> coalesce(c.resolved, 0)
         OR g.fingerprint IS NULL
     UNION ALL
     SELECT 'hour', coalesce(h.fingerprint, c.fp), coalesce(h.hour, c.hour),
            ARRAY[coalesce(h.opened, 0), coalesce(h.resolved, 0)], ARRAY[coalesce(c.opened, 0), coalesce(c.resolved, 0)]
       FROM tasker_dlq_group_hours h FULL JOIN counted_hours c ON c.fp = h.fingerprint AND c.hour = h.hour
      WHERE coalesce(h.opened, 0) <> coalesce(c.opened, 0) OR coalesce(h.resolved, 0) <> coalesce(c.resolved, 0)
         OR (h.opened = 0 AND h.resolved = 0)
      ORDER BY 1, 2, 3`,
  );
  return rows;
}
