import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  findGroup,
  type Group,
  type GroupEntry,
  groupEntries,
  listGroups,
  ungroupedPending,
} from '../../db/queries/dlq-groups.ts';
import { NotFoundError } from '../../errors.ts';
import {
  dlqReason,
  groupEntryStatus,
  groupFingerprint,
  namespaceName,
  rowOffset,
  taskTemplateName,
} from '../../validation/fields.ts';
import { oneOf, wholeNumber } from '../../validation/values.ts';
import { readDb, type WebDeps } from '../context.ts';
import { limitQuery } from '../schemas.ts';

/**
 * Investigations grouped by cause (issue 27): GET /v1/dlq/groups (the groups, most pending first,
 * with the queue's filters) and GET /v1/dlq/groups/{fingerprint} (one group with a page of its
 * entries). Resolving a group is POST /v1/dlq/bulk-resolve with `filter.group` (routes/dlq.ts).
 * Each answer is built here with its times as ISO 8601 text and described by a response schema,
 * so /openapi.json says what comes back.
 */

/** Ungrouped pending entries are counted up to this many (the answer says when there are more). */
export const UNGROUPED_COUNT_CAP = 10_000;

const trueOrFalse = oneOf(['true', 'false']).transform((v) => v === 'true');

export const GroupsQuery = z.strictObject({
  reason: dlqReason.optional().describe("only groups of this reason (part of a group's fingerprint)"),
  namespace: namespaceName.optional().describe("only groups of this template's namespace"),
  task_name: taskTemplateName.optional().describe('only groups of this template'),
  min_age_minutes: wholeNumber(0, 525_600)
    .optional()
    .describe('only groups whose oldest pending entry has waited at least this many minutes'),
  overdue: trueOrFalse
    .optional()
    .describe('true: only groups with a pending entry older than dlq.max_pending_age_hours'),
  include_resolved: trueOrFalse
    .optional()
    .describe('true: also groups with no pending entry left (default false)'),
  limit: limitQuery(50, 200),
  offset: rowOffset.optional().describe('groups to skip (default 0)'),
});

export const GroupParams = z.strictObject({ fingerprint: groupFingerprint });

export const GroupEntriesQuery = z.strictObject({
  status: groupEntryStatus
    .optional()
    .describe(
      'which entries: pending (the default; oldest first), resolved (any final status; newest first), or one final status',
    ),
  limit: limitQuery(50, 1000),
  offset: rowOffset.optional().describe('entries to skip (default 0)'),
});

const isoTime = z.string().describe('ISO 8601, UTC');

const TrendPointBody = z.object({
  hour: isoTime.describe('the hour (UTC) this point is for'),
  opened: z.number().int().describe("the group's entries opened in that hour"),
  resolved: z.number().int().describe("the group's entries resolved in that hour"),
  pending: z.number().int().describe("the group's entries pending at the end of that hour (the last: now)"),
});

export const GroupBody = z.object({
  fingerprint: z.string().describe('32 hex digits: the failure fingerprint its entries share'),
  rule_version: z.number().int().describe('the normalization rule set that made the fingerprint'),
  current_rules: z
    .boolean()
    .describe('false: made by an older rule set (its pending entries move to the current groups)'),
  template: z.object({
    namespace: z.string().nullable(),
    name: z.string().nullable(),
    version: z.string().nullable(),
  }),
  dlq_reason: z.string(),
  original_state: z.string().describe('the state its tasks were detected in'),
  diagnosis: z.string().describe('the shared diagnosis: blocking steps and their errors, normalized'),
  graph: z.string().nullable().describe('read, task_missing, or unavailable (blocking steps unknown)'),
  blocking: z
    .array(z.object({ step: z.string(), error: z.string().nullable() }))
    .nullable()
    .describe('distinct (blocking step, normalized error) pairs, sorted, at most 20'),
  blocking_total: z.number().int().nullable(),
  pending: z.number().int(),
  resolved: z.number().int(),
  first_seen_at: isoTime.describe('dlq_timestamp of its first entry'),
  last_seen_at: isoTime.describe('dlq_timestamp of its latest entry'),
  new_at: isoTime.describe('when its fingerprint first appeared'),
  oldest_pending_at: isoTime.nullable(),
  overdue: z.boolean(),
  sample_dlq_entry_uuid: z.string().nullable().describe('its newest pending entry (else a resolved one)'),
  trend: z.array(TrendPointBody).describe('the last 24 hours, oldest first'),
});

const GroupsBody = z.object({
  total: z.number().int().describe('groups matching the filter'),
  total_pending: z.number().int().describe('their pending entries'),
  ungrouped_pending: z
    .object({ count: z.number().int(), more: z.boolean() })
    .describe(
      `pending entries in no group yet (not enriched yet, or waiting for the backfill), counted up to ${UNGROUPED_COUNT_CAP}; more: there are more`,
    ),
  groups: z.array(GroupBody).describe('most pending first'),
});

const GroupEntryBody = z.object({
  dlq_entry_uuid: z.string(),
  task_uuid: z.string(),
  original_state: z.string(),
  dlq_reason: z.string(),
  dlq_timestamp: isoTime,
  resolution_status: z.string(),
  resolution_timestamp: isoTime.nullable(),
  resolved_by: z.string().nullable(),
  minutes_in_dlq: z.number().int(),
  overdue: z.boolean(),
  summary: z.string().nullable().describe("the entry's own diagnosis summary"),
});

const GroupWithEntriesBody = z.object({
  group: GroupBody,
  entries: z.object({
    status: z.string(),
    total: z.number().int().describe("the group's entries with that status"),
    items: z.array(GroupEntryBody),
  }),
});

const iso = (d: Date | null) => (d === null ? null : d.toISOString());

export function groupJson(g: Group): z.infer<typeof GroupBody> {
  return {
    ...g,
    first_seen_at: g.first_seen_at.toISOString(),
    last_seen_at: g.last_seen_at.toISOString(),
    new_at: g.new_at.toISOString(),
    oldest_pending_at: iso(g.oldest_pending_at),
    trend: g.trend.map((p) => ({ ...p, hour: p.hour.toISOString() })),
  };
}

function entryJson(e: GroupEntry): z.infer<typeof GroupEntryBody> {
  return {
    ...e,
    dlq_timestamp: e.dlq_timestamp.toISOString(),
    resolution_timestamp: iso(e.resolution_timestamp),
  };
}

export const groupRoutes: FastifyPluginAsyncZod<{ deps: WebDeps }> = async (app, { deps }) => {
  const tags = ['dlq'];

  app.get(
    '/v1/dlq/groups',
    {
      config: { permission: 'dlq:read' },
      schema: {
        tags,
        description:
          "Pending investigations grouped by cause (failure fingerprint), most pending first: each group's counts, template, reason, state, shared diagnosis, oldest pending entry, a sample entry and its last 24 hours. Filters like the queue's. Read from the groups' rows (kept as entries change), never by counting entries. Permission dlq:read.",
        querystring: GroupsQuery,
        response: { 200: GroupsBody },
      },
    },
    async (request) => {
      const q = request.query;
      const now = deps.now();
      const [page, ungrouped] = await Promise.all([
        listGroups(
          readDb(deps),
          {
            reason: q.reason,
            namespace: q.namespace,
            template: q.task_name,
            minAgeMinutes: q.min_age_minutes,
            overdueOnly: q.overdue,
            includeResolved: q.include_resolved,
          },
          { limit: q.limit ?? 50, offset: q.offset ?? 0 },
          now,
        ),
        ungroupedPending(readDb(deps), UNGROUPED_COUNT_CAP),
      ]);
      return {
        total: page.total,
        total_pending: page.total_pending,
        ungrouped_pending: ungrouped,
        groups: page.groups.map(groupJson),
      };
    },
  );

  app.get(
    '/v1/dlq/groups/:fingerprint',
    {
      config: { permission: 'dlq:read' },
      schema: {
        tags,
        description:
          'One group of investigations and a page of its entries (pending ones oldest first by default). 404 when no group has that fingerprint. Resolve them all with POST /v1/dlq/bulk-resolve and filter.group. Permission dlq:read.',
        params: GroupParams,
        querystring: GroupEntriesQuery,
        response: { 200: GroupWithEntriesBody },
      },
    },
    async (request) => {
      const now = deps.now();
      const group = await findGroup(readDb(deps), request.params.fingerprint, now);
      if (!group)
        throw new NotFoundError(`no group of investigations has fingerprint ${request.params.fingerprint}`);
      const status = request.query.status ?? 'pending';
      const page = await groupEntries(
        readDb(deps),
        group,
        { status, limit: request.query.limit ?? 50, offset: request.query.offset ?? 0 },
        now,
      );
      return {
        group: groupJson(group),
        entries: { status, total: page.total, items: page.entries.map(entryJson) },
      };
    },
  );
};
