import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import { holdOf } from '../../db/queries/archive-holds.ts';
import { archivedGraph } from '../../db/queries/archive-lookup.ts';
import { findAudit } from '../../db/queries/audit.ts';
import { findEntry } from '../../db/queries/dlq.ts';
import { queueFilterChoices } from '../../db/queries/dlq-console.ts';
import {
  checkTemplateFilter,
  lifecycleProblems,
  templateFilterProblem,
  templateOfTask,
} from '../../db/queries/templates.ts';
import { type DlqEntry, TERMINAL_RESOLUTION_STATUSES } from '../../domain/dlq.ts';
import type { EnrichedDetails } from '../../domain/dlq-enrichment.ts';
import { NotFoundError, UsageError } from '../../errors.ts';
import { bulkResolve, resolveInvestigation } from '../../operations/investigations.ts';
import { finalResolutionStatus, investigationNotes } from '../../validation/fields.ts';
import { BULK_ENTRIES_SHOWN } from './audit-page.ts';
import {
  BULK_FILTERS,
  BULK_PREVIEW_LIMIT,
  BulkFilterQuery,
  BulkResolveForm,
  bulkFilterOf,
  bulkPage,
} from './bulk-page.ts';
import { actorOf } from './deps.ts';
import { entryPage, type ResolveDraft } from './entry-page.ts';
import { parseFilters, rawQuery } from './filters.ts';
import { groupsQueuePage } from './groups-page.ts';
import { html } from './html.ts';
import { type ConsoleKit, UUID } from './kit.ts';
import type { PageContext } from './layout.ts';
import {
  loadQueue,
  QUEUE_FILTERS,
  QueueQuerySchema,
  queuePage,
  queueRows,
  refusedQueuePage,
} from './queue-page.ts';
import { CSRF_FIELD } from './session.ts';
import { stalenessPage, stormLive } from './staleness-page.ts';

/**
 * The investigation queue, finding an investigation by entry or task uuid, the entry page and
 * resolving, bulk resolve, and staleness.
 */

/** The resolve form's draft as the entry page's query carries it after a refusal. */
const DRAFT_KEYS = { status: 'draft_status', notes: 'draft_notes' } as const;

function draftOf(
  values: Record<string, unknown>,
  keys: { status: string; notes: string },
): ResolveDraft | undefined {
  const notes = values[keys.notes];
  const status = values[keys.status];
  if (typeof notes !== 'string' || notes.trim() === '') return undefined;
  return { status: typeof status === 'string' ? status : '', notes: notes.slice(0, 10_000) };
}

/** The entry page for an entry, with the task's template, its problems and any archive hold. */
export async function renderEntry(
  kit: ConsoleKit,
  reply: FastifyReply,
  ctx: PageContext,
  entry: DlqEntry,
  status = 200,
  draft?: ResolveDraft,
): Promise<FastifyReply> {
  const db = kit.deps.db;
  const [template, hold] = await Promise.all([
    templateOfTask(db, entry.task_uuid),
    holdOf(db, entry.task_uuid, kit.deps.now()),
  ]);
  const snapshotTemplate = entry.task_snapshot.template as EnrichedDetails['template'] | undefined;
  const snapshotProblems =
    template === undefined && snapshotTemplate
      ? await lifecycleProblems(
          db,
          ((snapshotTemplate.configuration ?? {}) as Record<string, unknown>).lifecycle,
        )
      : [];
  const title = `${String(entry.task_snapshot.task_name ?? 'Entry')} investigation`;
  return kit.page(
    reply,
    status,
    title,
    await entryPage(ctx, entry, { draft, template, hold, snapshotProblems }),
    ctx,
  );
}

/**
 * After signing in again under a resolve form whose session had ended: the entry page with the
 * draft back in the form (the sign-in form carried it), or the page `next` names.
 */
export async function entryAfterSignIn(
  kit: ConsoleKit,
  reply: FastifyReply,
  ctx: PageContext,
  next: string,
  values: Record<string, unknown>,
): Promise<FastifyReply | undefined> {
  const match = /^\/dlq\/([0-9a-f-]{36})$/i.exec(next);
  const draft = draftOf(values, DRAFT_KEYS);
  if (!match || !draft) return undefined;
  const entry = await findEntry(kit.deps.db, match[1]!);
  if (!entry || entry.dlq_entry_uuid !== match[1]!.toLowerCase()) return undefined;
  if (!(TERMINAL_RESOLUTION_STATUSES as readonly string[]).includes(draft.status)) draft.status = '';
  if (entry.resolution_status === 'pending')
    ctx.flash = {
      ok: true,
      text: 'Signed in again. Your notes are back in the form: press Resolve to save them.',
    };
  return renderEntry(kit, reply, ctx, entry, 200, draft);
}

export function registerInvestigationRoutes(app: FastifyInstance, kit: ConsoleKit): void {
  const { deps } = kit;

  app.get('/', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'dlq:read');
    if (!ctx) return reply;
    const q = parseFilters(QueueQuerySchema, request.query, QUEUE_FILTERS);
    if (!q.ok)
      return kit.page(reply, 400, 'Queue', await refusedQueuePage(ctx, q.raw, q.problems, q.invalid), ctx);
    // The queue opens on groups of entries by cause; view=entries shows them one by one.
    if (q.data.view !== 'entries')
      return kit.page(reply, 200, 'Queue', await groupsQueuePage(ctx, q.data), ctx);
    return kit.page(reply, 200, 'Queue', await queuePage(ctx, q.data), ctx);
  });

  app.get('/queue/rows', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'dlq:read', { consumeFlash: false });
    if (!ctx) return reply;
    const q = parseFilters(QueueQuerySchema, request.query, QUEUE_FILTERS);
    if (!q.ok)
      return kit.send(reply, 400, html`<tr><td colspan="6">${q.problems.join('; ')}</td></tr>`.value);
    const { rows } = await loadQueue(ctx, q.data);
    return kit.send(reply, 200, queueRows(rows).value);
  });

  // The header's search box: an entry uuid or a task uuid (its most recent investigation).
  app.get('/find', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'dlq:read');
    if (!ctx) return reply;
    const q = (rawQuery(request.query).q ?? '').trim();
    if (!UUID.test(q)) {
      return kit.page(
        reply,
        400,
        'Find',
        html`<h1>Find an investigation</h1><p class="notice error" role="alert" id="find-problem">q ${JSON.stringify(q)}: expected an entry or task uuid such as 0199c2a4-5e1f-7b3a-9d2e-4f6a8b0c1d2e (the search box opens the investigation of either).</p>`,
        ctx,
      );
    }
    return reply.redirect(`/dlq/${q.toLowerCase()}`, 303);
  });

  /** The entry of an entry uuid; a task uuid redirects to its most recent entry; else a 404 saying what the uuid is. */
  async function entryOrReply(reply: FastifyReply, uuid: string, ctx: PageContext) {
    const entry = UUID.test(uuid) ? await findEntry(deps.db, uuid) : undefined;
    if (entry && entry.dlq_entry_uuid === uuid.toLowerCase()) return entry;
    if (entry) {
      void reply.redirect(`/dlq/${entry.dlq_entry_uuid}`, 303);
      return undefined;
    }
    let what = `expected the uuid of an investigation (dlq_entry_uuid) or of a task that has one, such as 0199c2a4-5e1f-7b3a-9d2e-4f6a8b0c1d2e`;
    if (UUID.test(uuid)) {
      const [live, archived] = await Promise.all([
        templateOfTask(deps.db, uuid),
        archivedGraph(deps.db, uuid).catch(() => undefined),
      ]);
      if (live) what = `task ${uuid} (${live.namespace}/${live.name}) is live and has no investigation`;
      else if (archived)
        what = `task ${uuid} is archived; its investigations went with it (look it up on the Archive page: /archive?task_uuid=${uuid})`;
      else what = `no investigation and no task, live or archived, has uuid ${uuid}`;
    }
    kit.problem(reply, 404, 'Not found', `No investigation ${uuid}: ${what}.`, ctx);
    return undefined;
  }

  app.get('/dlq/:uuid', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'dlq:read');
    if (!ctx) return reply;
    const entry = await entryOrReply(reply, (request.params as { uuid: string }).uuid, ctx);
    if (!entry) return reply;
    return renderEntry(kit, reply, ctx, entry);
  });

  const ResolveForm = z.strictObject({
    [CSRF_FIELD]: z.string(),
    status: finalResolutionStatus,
    notes: investigationNotes,
  });

  // Accepted: 303 to the entry page, which shows who resolved it. Refused (someone resolved it
  // first, or the form is incomplete): the entry page in place with the draft kept in the form and
  // why it was not saved; a reload sends the form again and is refused again (an entry is resolved
  // once), so nothing can happen twice.
  app.post('/dlq/:uuid/resolve', async (request, reply) => {
    const uuid = (request.params as { uuid: string }).uuid;
    const body = (request.body ?? {}) as Record<string, unknown>;
    const draft = draftOf(body, { status: 'status', notes: 'notes' });
    const ctx = await kit.guard(request, reply, 'dlq:update', {
      next: `/dlq/${uuid}`,
      draft: draft ? { [DRAFT_KEYS.status]: draft.status, [DRAFT_KEYS.notes]: draft.notes } : undefined,
    });
    if (!ctx) return reply;
    const entry = await entryOrReply(reply, uuid, ctx);
    if (!entry) return reply;
    const form = ResolveForm.safeParse(body);
    if (!form.success) {
      ctx.flash = { ok: false, text: `Not saved: ${kit.issuesText(form.error)}` };
      return renderEntry(kit, reply, ctx, entry, 400, draft);
    }
    try {
      const resolved = await resolveInvestigation(deps.web.pool, {
        uuid: entry.dlq_entry_uuid,
        status: form.data.status,
        notes: form.data.notes,
        actor: actorOf(ctx.principal),
        now: deps.now(),
      });
      return kit.redirect(reply, ctx, `/dlq/${entry.dlq_entry_uuid}`, {
        ok: true,
        text: `Resolved as ${resolved.resolution_status}.`,
      });
    } catch (err) {
      if (err instanceof NotFoundError) return kit.problem(reply, 404, 'Not found', err.message, ctx);
      if (!(err instanceof UsageError)) throw err;
      const current = (await findEntry(deps.db, entry.dlq_entry_uuid)) ?? entry;
      if (current.resolution_status === 'pending')
        ctx.flash = { ok: false, text: `Not saved: ${err.message}` };
      return renderEntry(kit, reply, ctx, current, 409, draft);
    }
  });

  app.get('/staleness', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'dlq:stats');
    if (!ctx) return reply;
    return kit.page(reply, 200, 'Staleness', await stalenessPage(ctx), ctx);
  });

  // The storm panel's figures, fetched again by the page while its switch is on.
  app.get('/staleness/storm', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'dlq:stats', { consumeFlash: false });
    if (!ctx) return reply;
    return kit.send(reply, 200, (await stormLive(ctx)).value);
  });

  app.get('/bulk', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'dlq:update');
    if (!ctx) return reply;
    const choices = await queueFilterChoices(deps.db, 200);
    const q = parseFilters(BulkFilterQuery, request.query, BULK_FILTERS);
    if (!q.ok) {
      return kit.page(
        reply,
        400,
        'Bulk resolve',
        bulkPage(ctx, { values: q.raw, choices, problems: q.problems, invalid: q.invalid }),
        ctx,
      );
    }
    const outcome =
      q.data.result === undefined ? undefined : await findAudit(deps.db, q.data.result, BULK_ENTRIES_SHOWN);
    if (q.data.preview !== '1') {
      return kit.page(
        reply,
        200,
        'Bulk resolve',
        bulkPage(ctx, {
          values: q.data,
          choices,
          // A bulk resolution's outcome, to the token that made it (or one that may read the log).
          outcome:
            outcome?.action === 'dlq.bulk_resolve' &&
            (outcome.actor_token_id === ctx.principal.tokenId || deps.can(ctx.principal, 'audit:read'))
              ? outcome
              : undefined,
        }),
        ctx,
      );
    }
    return previewPage(reply, ctx, q.data, 200);
  });

  /** The preview of a filter as it is now (with a notice, and the notes kept, after a refusal). */
  async function previewPage(
    reply: FastifyReply,
    ctx: PageContext,
    filter: BulkFilterQuery,
    status: number,
    draft?: ResolveDraft,
  ): Promise<FastifyReply> {
    const choices = await queueFilterChoices(deps.db, 200);
    const f = bulkFilterOf(filter);
    const problem =
      f.namespace !== undefined || f.taskName !== undefined
        ? templateFilterProblem(
            { namespace: f.namespace, taskName: f.taskName },
            await checkTemplateFilter(deps.db, { namespace: f.namespace, taskName: f.taskName }),
            { namespace: 'namespace', taskName: 'task_name' },
          )
        : undefined;
    if (problem !== undefined) {
      return kit.page(
        reply,
        400,
        'Bulk resolve',
        bulkPage(ctx, { values: filter, choices, problems: [problem] }),
        ctx,
      );
    }
    try {
      const preview = await bulkResolve(deps.web.pool, {
        filter: f,
        status: 'cancelled',
        notes: 'preview',
        dryRun: true,
        previewLimit: deps.can(ctx.principal, 'dlq:read') ? BULK_PREVIEW_LIMIT : 0,
        actor: actorOf(ctx.principal),
        now: deps.now(),
      });
      return kit.page(
        reply,
        status,
        'Bulk resolve',
        bulkPage(ctx, { values: filter, choices, filter, preview, draft }),
        ctx,
      );
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      return kit.page(
        reply,
        400,
        'Bulk resolve',
        bulkPage(ctx, { values: filter, choices, problems: [err.message] }),
        ctx,
      );
    }
  }

  // Exactly the previewed entries, or nothing: the form carries the preview's fingerprint. Accepted:
  // 303 to the outcome (read from its audit row). Refused because the matching entries changed: the
  // preview as it is now, in place, saying so (a reload is refused again).
  app.post('/bulk/resolve', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'dlq:update');
    if (!ctx) return reply;
    const form = BulkResolveForm.safeParse(request.body ?? {});
    if (!form.success) {
      const raw = rawQuery(request.body);
      const values = Object.fromEntries(BULK_FILTERS.map((k) => [k, raw[k]]));
      return kit.page(
        reply,
        400,
        'Bulk resolve',
        bulkPage(ctx, {
          values,
          choices: await queueFilterChoices(deps.db, 200),
          problems: [`Not resolved: ${kit.issuesText(form.error)}`],
        }),
        ctx,
      );
    }
    const { _csrf, status, notes, expected_fingerprint, expected_matched, ...filter } = form.data;
    try {
      const result = await bulkResolve(deps.web.pool, {
        filter: bulkFilterOf(filter),
        status,
        notes,
        dryRun: false,
        previewLimit: 0,
        expectFingerprint: expected_fingerprint,
        expectMatched: expected_matched,
        actor: actorOf(ctx.principal),
        now: deps.now(),
      });
      if (result.audit_id === null) {
        return kit.redirect(reply, ctx, `/bulk`, {
          ok: false,
          text: 'Nothing was resolved: no entry matched.',
        });
      }
      return kit.redirect(reply, ctx, `/bulk?result=${result.audit_id}`, {
        ok: true,
        text: `Resolved ${result.resolved} ${result.resolved === 1 ? 'entry' : 'entries'} as ${status}.`,
      });
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      ctx.flash = { ok: false, text: `Not resolved: ${err.message}.` };
      return previewPage(reply, ctx, { ...filter, preview: '1' }, 409, { status, notes });
    }
  });
}
