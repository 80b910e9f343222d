import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import {
  investigationQueueJson,
  latestEntryOfTask,
  listEntriesJson,
  stalenessMonitoring,
  statsByReason,
} from '../../db/queries/dlq.ts';
import type { DlqEntry } from '../../domain/dlq.ts';
import { NotFoundError } from '../../errors.ts';
import { bulkResolve, openInvestigation, updateInvestigation } from '../../operations/investigations.ts';
import { can, type Principal } from '../../operations/tokens.ts';
import { readDb, tokenActor, type WebDeps } from '../context.ts';
import { sendError } from '../errors.ts';
import {
  BulkResolveBody,
  DlqListQuery,
  EntryUuidParams,
  LimitQuery,
  OpenEntryBody,
  TaskUuidParams,
  UpdateEntryBody,
} from '../schemas.ts';

/**
 * An entry as a token may see it: whole with dlq:read; without it (a dlq:update-only token that
 * opened or resolved it) its identity and status, never the task's snapshot or the metadata.
 */
function entryFor<T extends DlqEntry>(principal: Principal | null, entry: T): T | Partial<T> {
  if (principal && can(principal, 'dlq:read')) return entry;
  const { task_snapshot: _snapshot, metadata: _metadata, ...rest } = entry;
  return rest as Partial<T>;
}

/** Upstream's six /v1/dlq endpoints (same paths, parameters, defaults, orderings), and ours. */
export const dlqRoutes: FastifyPluginAsyncZod<{ deps: WebDeps }> = async (app, { deps }) => {
  const tags = ['dlq'];

  app.get(
    '/v1/dlq',
    {
      config: { permission: 'dlq:read' },
      schema: {
        tags,
        description: 'Entries, newest first (dlq_timestamp DESC). Permission dlq:read.',
        querystring: DlqListQuery,
      },
    },
    async (request, reply) => {
      const q = request.query;
      const json = await listEntriesJson(readDb(deps), {
        status: q.resolution_status,
        limit: q.limit ?? 50,
        offset: q.offset ?? 0,
        now: deps.now(),
      });
      return reply.type('application/json; charset=utf-8').send(json);
    },
  );

  app.get(
    '/v1/dlq/task/:task_uuid',
    {
      config: { permission: 'dlq:read' },
      schema: {
        tags,
        description: 'The most recent entry of a task, any status; 404 if none. Permission dlq:read.',
        params: TaskUuidParams,
      },
    },
    async (request) => {
      const entry = await latestEntryOfTask(readDb(deps), request.params.task_uuid);
      if (!entry) throw new NotFoundError(`no DLQ entry for task ${request.params.task_uuid}`);
      return entry;
    },
  );

  app.patch(
    '/v1/dlq/entry/:dlq_entry_uuid',
    {
      config: { permission: 'dlq:update' },
      schema: {
        tags,
        description:
          "Update a pending investigation (omitted fields keep their value). A resolution_status resolves it, recorded as resolved by this token; resolved_by, if given, is kept as whom it was resolved on behalf of. A resolved entry is final: any PATCH of it is 409 naming who resolved it and when. A PATCH that changes nothing writes nothing. The answer's entry is whole only with dlq:read. Audited. Permission dlq:update.",
        params: EntryUuidParams,
        body: UpdateEntryBody,
      },
    },
    async (request) => {
      const b = request.body;
      const entry = await updateInvestigation(deps.pool, {
        uuid: request.params.dlq_entry_uuid,
        status: b.resolution_status,
        notes: b.resolution_notes,
        onBehalfOf: b.resolved_by,
        metadata: b.metadata,
        actor: tokenActor(request.principal),
        now: deps.now(),
      });
      return {
        success: true,
        message: 'Investigation status updated successfully',
        dlq_entry_uuid: entry.dlq_entry_uuid,
        entry: entryFor(request.principal, entry),
      };
    },
  );

  app.get(
    '/v1/dlq/stats',
    {
      config: { permission: 'dlq:stats' },
      schema: { tags, description: 'Entries by reason (v_dlq_dashboard). Permission dlq:stats.' },
    },
    async () => statsByReason(readDb(deps)),
  );

  app.get(
    '/v1/dlq/investigation-queue',
    {
      config: { permission: 'dlq:read' },
      schema: {
        tags,
        description: 'Pending entries, most urgent first (v_dlq_investigation_queue). Permission dlq:read.',
        querystring: LimitQuery(100),
      },
    },
    async (request, reply) =>
      reply
        .type('application/json; charset=utf-8')
        .send(await investigationQueueJson(readDb(deps), request.query.limit ?? 100)),
  );

  app.get(
    '/v1/dlq/staleness',
    {
      config: { permission: 'dlq:read' },
      schema: {
        tags,
        description:
          'In-flight tasks: stale, then warning, then healthy, longest in their state first (v_task_staleness_monitoring). Permission dlq:read.',
        querystring: LimitQuery(100),
      },
    },
    async (request) => stalenessMonitoring(readDb(deps), request.query.limit ?? 100),
  );

  app.post(
    '/v1/dlq/entries',
    {
      config: { permission: 'dlq:update' },
      schema: {
        tags,
        description:
          'Open a manual_dlq investigation for a task (the task is not changed); 404 no such task, 409 it already has a pending one. Audited. Permission dlq:update.',
        body: OpenEntryBody,
      },
    },
    async (request, reply) => {
      // As `dlq add`: the configuration can switch manual investigations off.
      if (!deps.config.dlq.enabled || !deps.config.dlq.reasons.manual_dlq) {
        return sendError(
          reply,
          409,
          'CONFLICT',
          deps.config.dlq.enabled
            ? 'manual investigations are disabled (dlq.reasons.manual_dlq = false)'
            : 'the DLQ is disabled (dlq.enabled = false): no investigations can be opened',
        );
      }
      const entry = await openInvestigation(deps.pool, {
        taskUuid: request.body.task_uuid,
        notes: request.body.notes,
        actor: tokenActor(request.principal),
        now: deps.now(),
      });
      return reply.code(201).send(entryFor(request.principal, entry));
    },
  );

  app.post(
    '/v1/dlq/bulk-resolve',
    {
      config: { permission: 'dlq:update' },
      schema: {
        tags,
        description:
          'Resolve every pending entry matching the filter (filter.group: the pending entries of one group of investigations), in one transaction (one audit row naming the filter, its group, and every entry). dry_run (the default) changes nothing and returns the count, the first entries and a fingerprint of the set; pass it as expected_fingerprint to resolve exactly that set (409 when the matching entries changed, nothing resolved). The entries are listed only to a token that also has dlq:read (otherwise entries is empty and entries_withheld true). Permission dlq:update.',
        body: BulkResolveBody,
      },
    },
    async (request) => {
      const b = request.body;
      const mayRead = request.principal !== null && can(request.principal, 'dlq:read');
      const result = await bulkResolve(deps.pool, {
        filter: {
          reason: b.filter.reason,
          namespace: b.filter.namespace,
          taskName: b.filter.task_name,
          originalState: b.filter.original_state,
          olderThanMinutes: b.filter.older_than_minutes,
          group: b.filter.group,
        },
        status: b.resolution_status,
        notes: b.resolution_notes,
        dryRun: b.dry_run,
        previewLimit: mayRead ? b.preview_limit : 0,
        expectFingerprint: b.expected_fingerprint,
        actor: tokenActor(request.principal),
        now: deps.now(),
      });
      return mayRead ? result : { ...result, entries_withheld: true };
    },
  );
};
