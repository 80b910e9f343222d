import type { FastifyInstance, FastifyReply } from 'fastify';
import { findGroup, groupEntries } from '../../db/queries/dlq-groups.ts';
import { FINGERPRINT_PATTERN } from '../../domain/dlq-groups.ts';
import { UsageError } from '../../errors.ts';
import { BULK_RESOLVE_MAX_GROUP_ENTRIES, bulkResolve } from '../../operations/investigations.ts';
import { actorOf } from './deps.ts';
import { parseFilters, rawQuery } from './filters.ts';
import { GROUP_ENTRIES_PAGE_SIZE, GroupPageQuery, GroupResolveForm, groupPage } from './group-page.ts';
import { groupRows, loadGroups } from './groups-page.ts';
import { html } from './html.ts';
import type { ConsoleKit } from './kit.ts';
import type { PageContext } from './layout.ts';
import { QUEUE_FILTERS, QueueQuerySchema } from './queue-page.ts';

/**
 * The console's group pages (issue 27): the rows of the groups queue refreshed in place, a group's
 * page, and "Resolve all in this group". The queue of groups itself is `/` (investigation-routes.ts,
 * which shows it unless the single entries are asked for).
 */

const GROUP_PAGE_FIELDS = Object.keys(GroupPageQuery.shape);

export function registerGroupRoutes(app: FastifyInstance, kit: ConsoleKit): void {
  const { deps } = kit;

  // The groups queue's rows, fetched again by the page while its switch is on.
  app.get('/groups/rows', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'dlq:read', { consumeFlash: false });
    if (!ctx) return reply;
    const q = parseFilters(QueueQuerySchema, request.query, QUEUE_FILTERS);
    if (!q.ok)
      return kit.send(reply, 400, html`<tr><td colspan="6">${q.problems.join('; ')}</td></tr>`.value);
    const { groups } = await loadGroups(ctx, q.data);
    return kit.send(reply, 200, groupRows(groups).value);
  });

  /** The group page, with the resolve-all preview as it is now. */
  async function renderGroup(
    reply: FastifyReply,
    ctx: PageContext,
    fingerprint: string,
    q: GroupPageQuery,
    status = 200,
    draft?: { status: string; notes: string },
  ): Promise<FastifyReply> {
    const now = deps.now();
    const group = FINGERPRINT_PATTERN.test(fingerprint)
      ? await findGroup(deps.db, fingerprint, now)
      : undefined;
    if (!group) {
      return kit.problem(
        reply,
        404,
        'Not found',
        FINGERPRINT_PATTERN.test(fingerprint)
          ? `No group of investigations has fingerprint ${fingerprint}.`
          : `No group ${fingerprint}: expected a group's fingerprint, 32 hex digits (the queue's groups link to theirs).`,
        ctx,
      );
    }
    const page = q.page ?? 1;
    const entryStatus = q.status ?? 'pending';
    let preview: Awaited<ReturnType<typeof bulkResolve>> | undefined;
    let previewProblem: string | undefined;
    const asked = q.resolve === '1' || draft !== undefined;
    if (asked && group.pending > BULK_RESOLVE_MAX_GROUP_ENTRIES) {
      previewProblem = `This group has ${group.pending} pending entries, more than the ${BULK_RESOLVE_MAX_GROUP_ENTRIES} one resolution may take: resolve it in parts, oldest first, with the API's bulk resolve (POST /v1/dlq/bulk-resolve with filter.group and older_than_minutes).`;
    } else if (asked && deps.can(ctx.principal, 'dlq:update') && group.pending > 0) {
      try {
        preview = await bulkResolve(deps.web.pool, {
          filter: { group: fingerprint },
          status: 'cancelled',
          notes: 'preview',
          dryRun: true,
          previewLimit: 0,
          actor: actorOf(ctx.principal),
          now,
        });
      } catch (err) {
        if (!(err instanceof UsageError)) throw err;
        previewProblem = `${err.message} (The API's bulk resolve takes filter.group with older_than_minutes, to resolve it in parts.)`;
      }
    }
    const entries = await groupEntries(
      deps.db,
      group,
      { status: entryStatus, limit: GROUP_ENTRIES_PAGE_SIZE, offset: (page - 1) * GROUP_ENTRIES_PAGE_SIZE },
      now,
    );
    const title = `Group: ${group.diagnosis}`.slice(0, 120);
    return kit.page(
      reply,
      status,
      title,
      groupPage(ctx, { group, status: entryStatus, page, entries, preview, previewProblem, draft }),
      ctx,
    );
  }

  app.get('/groups/:fingerprint', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'dlq:read');
    if (!ctx) return reply;
    const fingerprint = (request.params as { fingerprint: string }).fingerprint.toLowerCase();
    const q = parseFilters(GroupPageQuery, request.query, GROUP_PAGE_FIELDS);
    if (!q.ok) return kit.problem(reply, 400, 'Group', `Not shown: ${q.problems.join('; ')}.`, ctx);
    return renderGroup(reply, ctx, fingerprint, q.data);
  });

  // Exactly the previewed entries, or nothing. Accepted: 303 to the queue, saying what was
  // resolved. Refused because the group changed: its page as it is now, in place, with the notes
  // kept (a reload is refused again).
  app.post('/groups/:fingerprint/resolve', async (request, reply) => {
    const fingerprint = (request.params as { fingerprint: string }).fingerprint.toLowerCase();
    const ctx = await kit.guard(request, reply, 'dlq:update');
    if (!ctx) return reply;
    const body = rawQuery(request.body);
    const draft =
      typeof body.notes === 'string' && body.notes.trim() !== ''
        ? { status: body.status ?? '', notes: body.notes.slice(0, 10_000) }
        : undefined;
    if (!FINGERPRINT_PATTERN.test(fingerprint)) return renderGroup(reply, ctx, fingerprint, {});
    const form = GroupResolveForm.safeParse(request.body ?? {});
    if (!form.success) {
      ctx.flash = { ok: false, text: `Not resolved: ${kit.issuesText(form.error)}` };
      return renderGroup(reply, ctx, fingerprint, {}, 400, draft);
    }
    try {
      const result = await bulkResolve(deps.web.pool, {
        filter: { group: fingerprint },
        status: form.data.status,
        notes: form.data.notes,
        dryRun: false,
        previewLimit: 0,
        expectFingerprint: form.data.expected_fingerprint,
        expectMatched: form.data.expected_matched,
        actor: actorOf(ctx.principal),
        now: deps.now(),
      });
      if (result.audit_id === null) {
        return kit.redirect(reply, ctx, `/groups/${fingerprint}`, {
          ok: false,
          text: 'Nothing was resolved: no entry of the group was pending.',
        });
      }
      const group = await findGroup(deps.db, fingerprint, deps.now());
      return kit.redirect(reply, ctx, '/', {
        ok: true,
        text: `Resolved all ${result.resolved} pending ${result.resolved === 1 ? 'entry' : 'entries'} of “${group?.diagnosis ?? fingerprint}” as ${form.data.status} (audit row ${result.audit_id}).`,
      });
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      ctx.flash = { ok: false, text: `Not resolved: ${err.message}.` };
      return renderGroup(reply, ctx, fingerprint, {}, 409, draft);
    }
  });
}
