import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import archiveFinishedTasks from '../../../jobs/archive-finished-tasks.ts';
import { archiveStatistics, currentStateOf } from '../../db/queries/archive.ts';
import { holdOf, holdsInForce } from '../../db/queries/archive-holds.ts';
import { archivedGraph } from '../../db/queries/archive-lookup.ts';
import { archiveMonthsOverview } from '../../db/queries/archive-partitions.ts';
import { listAudit } from '../../db/queries/audit.ts';
import { templatesOfEntries } from '../../db/queries/dlq-console.ts';
import { nextCronTime } from '../../domain/cron.ts';
import { NotFoundError, UsageError } from '../../errors.ts';
import { MAX_HOLD_DAYS, restoreArchivedTask } from '../../operations/archive.ts';
import { resolveTime, uuid, wholeNumber } from '../../validation/values.ts';
import { type ArchiveLookup, archivePage } from './archive-page.ts';
import {
  AUDIT_FILTERS,
  AUDIT_PAGE_SIZE,
  AuditFilterQuery,
  auditPage,
  BULK_ENTRIES_SHOWN,
  entriesNamed,
} from './audit-page.ts';
import { actorOf } from './deps.ts';
import { optionalField, parseFilters } from './filters.ts';
import { type ConsoleKit, UUID } from './kit.ts';

/** Archive (look up, restore with or without a hold, the holds in force) and the audit log. */

const ArchiveQuery = z.strictObject({ task_uuid: optionalField(uuid) });

const RestoreForm = z.strictObject({
  _csrf: z.string(),
  hold_days: optionalField(wholeNumber(1, MAX_HOLD_DAYS)),
});

export function registerArchiveRoutes(app: FastifyInstance, kit: ConsoleKit): void {
  const { deps } = kit;

  async function nextArchivalAt(now: Date): Promise<Date | undefined> {
    const schedules = await deps.web.boss.getSchedules().catch(() => []);
    const cron = schedules.find((s) => s.name === archiveFinishedTasks.name)?.cron;
    return cron ? nextCronTime(cron, now) : undefined;
  }

  app.get('/archive', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'archive:read');
    if (!ctx) return reply;
    const now = deps.now();
    const q = parseFilters(ArchiveQuery, request.query, ['task_uuid']);
    const taskUuid = q.ok ? q.data.task_uuid : undefined;
    if (!q.ok) ctx.flash = { ok: false, text: `Not looked up: ${q.problems.join('; ')}` };
    const [months, holds, graph, live, hold, next, overview] = await Promise.all([
      archiveStatistics(deps.db, 24),
      holdsInForce(deps.db, now, 100),
      taskUuid ? archivedGraph(deps.db, taskUuid) : Promise.resolve(undefined),
      taskUuid ? currentStateOf(deps.db, taskUuid) : Promise.resolve(undefined),
      taskUuid ? holdOf(deps.db, taskUuid, now) : Promise.resolve(undefined),
      nextArchivalAt(now),
      archiveMonthsOverview(deps.db, 24),
    ]);
    const lookup: ArchiveLookup | undefined = taskUuid ? { taskUuid, graph, live, hold } : undefined;
    return kit.page(
      reply,
      q.ok ? 200 : 400,
      'Archive',
      archivePage(ctx, {
        months,
        holds,
        lookup,
        retentionDays: deps.web.config.archive.retention_days,
        nextArchivalAt: next,
        overview,
        keepMonths: deps.web.config.archive.keep_months,
        exportDir: deps.web.config.archive.export_dir,
      }),
      ctx,
    );
  });

  // 303 to the task's lookup, which shows it live, its hold and what archival will do with it.
  app.post('/archive/:task/restore', async (request, reply) => {
    const { task } = request.params as { task: string };
    const ctx = await kit.guard(request, reply, 'archive:restore', {
      next: UUID.test(task) ? `/archive?task_uuid=${task}` : '/archive',
    });
    if (!ctx) return reply;
    if (!UUID.test(task))
      return kit.redirect(reply, ctx, '/archive', {
        ok: false,
        text: `Not restored: task ${task} is not a uuid.`,
      });
    const back = `/archive?task_uuid=${task.toLowerCase()}`;
    const form = RestoreForm.safeParse(request.body ?? {});
    if (!form.success)
      return kit.redirect(reply, ctx, back, {
        ok: false,
        text: `Not restored: ${kit.issuesText(form.error)}`,
      });
    try {
      const restored = await restoreArchivedTask(deps.web.pool, {
        taskUuid: task.toLowerCase(),
        holdDays: form.data.hold_days,
        retentionDays: deps.web.config.archive.retention_days,
        actor: actorOf(ctx.principal),
        now: deps.now(),
      });
      return kit.redirect(reply, ctx, back, {
        ok: !(restored.past_retention && restored.held_until === null),
        text: `Restored task ${restored.task_uuid} to the live tables; ${restored.archival}.`,
      });
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      return kit.redirect(reply, ctx, back, {
        ok: false,
        text: `Not restored: ${err.message}${err instanceof NotFoundError ? '' : ''}.`,
      });
    }
  });

  app.get('/audit', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'audit:read');
    if (!ctx) return reply;
    const q = parseFilters(AuditFilterQuery, request.query, AUDIT_FILTERS);
    if (!q.ok)
      return kit.page(reply, 400, 'Audit log', auditPage(ctx, q.raw, [], new Map(), q.problems), ctx);
    const rows = await listAudit(deps.db, {
      since: q.data.since ? resolveTime(q.data.since, deps.now()) : undefined,
      actor: q.data.actor || undefined,
      actorTokenId: q.data.token_id || undefined,
      targetId: q.data.target_id || undefined,
      beforeId: q.data.before_id,
      limit: AUDIT_PAGE_SIZE,
      entryUuidsShown: BULK_ENTRIES_SHOWN,
    });
    const templates = await templatesOfEntries(deps.db, entriesNamed(rows));
    return kit.page(reply, 200, 'Audit log', auditPage(ctx, q.raw, rows, templates), ctx);
  });
}
