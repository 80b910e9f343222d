import { randomBytes, timingSafeEqual } from 'node:crypto';
import fastifyCookie from '@fastify/cookie';
import fastifyFormbody from '@fastify/formbody';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { archiveStatistics } from '../../db/queries/archive.ts';
import { archivedGraph } from '../../db/queries/archive-lookup.ts';
import { listAudit } from '../../db/queries/audit.ts';
import { findEntry } from '../../db/queries/dlq.ts';
import { TERMINAL_RESOLUTION_STATUSES } from '../../domain/dlq.ts';
import { NotFoundError, UsageError } from '../../errors.ts';
import { restoreArchivedTask } from '../../operations/archive.ts';
import { bulkResolve, resolveInvestigation } from '../../operations/investigations.ts';
import { ENQUEUEABLE_JOBS, enqueueRun, retryDeadJob } from '../../operations/runs.ts';
import { jobStates } from '../job-states.ts';
import { RUN_OPTION_SCHEMAS } from '../schemas.ts';
import { archivePage } from './archive-page.ts';
import { CONSOLE_CSS, CONSOLE_JS } from './assets.ts';
import { AUDIT_PAGE_SIZE, AuditFilterQuery, auditPage } from './audit-page.ts';
import { BULK_PREVIEW_LIMIT, BulkFilterQuery, BulkResolveForm, bulkFilterOf, bulkPage } from './bulk-page.ts';
import { actorOf, type ConsoleDeps, type ConsolePermission, type ConsolePrincipal } from './deps.ts';
import { entryPage } from './entry-page.ts';
import { html, type SafeHtml } from './html.ts';
import { jobsPage } from './jobs-page.ts';
import { type PageContext, page } from './layout.ts';
import { loadQueue, QueueQuerySchema, queuePage, queueRows } from './queue-page.ts';
import { CSRF_FIELD, csrfFor, csrfMatches, SESSION_COOKIE, sessionCookieOptions } from './session.ts';
import { signInPage } from './sign-in-page.ts';
import { stalenessPage } from './staleness-page.ts';

/**
 * The console's routes under `/`: sign-in and sign-out, the queue (with a rows fragment for live
 * updates), entry pages and resolving. Every page but sign-in needs a session whose token still
 * authenticates; each page and action needs its permission (the API's), and every POST a CSRF value
 * that matches the session.
 */

const SIGNIN_CSRF_COOKIE = 'tasker_signin_csrf';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface Session {
  secret: string;
  principal: ConsolePrincipal;
}

function send(reply: FastifyReply, status: number, body: string): FastifyReply {
  return reply
    .code(status)
    .header('content-type', 'text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'same-origin')
    .header(
      'content-security-policy',
      "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    )
    .send(body);
}

function problemPage(reply: FastifyReply, status: number, title: string, message: string, ctx?: PageContext) {
  return send(
    reply,
    status,
    page(title, html`<h1>${title}</h1><p class="notice error" role="alert">${message}</p>`, ctx),
  );
}

export function registerConsoleRoutes(app: FastifyInstance, deps: ConsoleDeps): void {
  if (!app.hasRequestDecorator('cookies')) app.register(fastifyCookie);
  if (!app.hasContentTypeParser('application/x-www-form-urlencoded')) app.register(fastifyFormbody);
  const secure = deps.secureCookies ?? false;

  async function sessionOf(request: FastifyRequest): Promise<Session | undefined> {
    const secret = request.cookies[SESSION_COOKIE];
    if (!secret) return undefined;
    const principal = await deps.authenticate(secret, deps.now());
    return principal ? { secret, principal } : undefined;
  }

  /** The page context for a permitted request, or undefined after replying (redirect, 401, 403). */
  async function guard(
    request: FastifyRequest,
    reply: FastifyReply,
    permission: ConsolePermission,
  ): Promise<PageContext | undefined> {
    const session = await sessionOf(request);
    if (!session) {
      if (request.method === 'GET') {
        void reply.redirect(`/sign-in?next=${encodeURIComponent(request.url)}`, 303);
      } else {
        problemPage(
          reply,
          401,
          'Not signed in',
          'Your session has ended or the token is no longer valid. Sign in again.',
        );
      }
      return undefined;
    }
    const ctx: PageContext = {
      principal: session.principal,
      csrf: csrfFor(session.secret),
      deps,
      currentPath: request.url.split('?')[0] ?? '/',
    };
    if (request.method === 'POST') {
      const body = (request.body ?? {}) as Record<string, unknown>;
      if (!csrfMatches(session.secret, body[CSRF_FIELD])) {
        problemPage(
          reply,
          403,
          'Refused',
          'The form was not sent from this console (missing or wrong CSRF value); nothing changed.',
          ctx,
        );
        return undefined;
      }
    }
    if (!deps.can(session.principal, permission)) {
      problemPage(
        reply,
        403,
        'Not permitted',
        `Your token (${session.principal.tokenName}) lacks the permission ${permission}; nothing changed.`,
        ctx,
      );
      return undefined;
    }
    return ctx;
  }

  app.get('/assets/console.css', async (_req, reply) =>
    reply
      .header('content-type', 'text/css; charset=utf-8')
      .header('cache-control', 'max-age=300')
      .send(CONSOLE_CSS),
  );
  app.get('/assets/console.js', async (_req, reply) =>
    reply
      .header('content-type', 'text/javascript; charset=utf-8')
      .header('cache-control', 'max-age=300')
      .send(CONSOLE_JS),
  );

  const nextOf = (value: unknown): string =>
    typeof value === 'string' && value.startsWith('/') && !value.startsWith('//') ? value : '/';

  app.get('/sign-in', async (request, reply) => {
    const nonce = randomBytes(24).toString('base64url');
    void reply.setCookie(SIGNIN_CSRF_COOKIE, nonce, { ...sessionCookieOptions(secure), maxAge: 1800 });
    const next = nextOf((request.query as Record<string, unknown>).next);
    return send(reply, 200, page('Sign in', signInPage(nonce, next)));
  });

  app.post('/sign-in', async (request, reply) => {
    const body = (request.body ?? {}) as Record<string, unknown>;
    const nonce = request.cookies[SIGNIN_CSRF_COOKIE];
    const given = typeof body[CSRF_FIELD] === 'string' ? (body[CSRF_FIELD] as string) : '';
    const next = nextOf(body.next);
    const fresh = randomBytes(24).toString('base64url');
    void reply.setCookie(SIGNIN_CSRF_COOKIE, fresh, { ...sessionCookieOptions(secure), maxAge: 1800 });
    if (!nonce || given.length !== nonce.length || !timingSafeEqual(Buffer.from(given), Buffer.from(nonce))) {
      return send(
        reply,
        403,
        page(
          'Sign in',
          signInPage(fresh, next, 'The sign-in form expired or came from elsewhere; try again.'),
        ),
      );
    }
    const token = typeof body.token === 'string' ? body.token.trim() : '';
    const principal = token ? await deps.authenticate(token, deps.now()) : undefined;
    if (!principal) {
      return send(
        reply,
        401,
        page('Sign in', signInPage(fresh, next, 'That token is unknown, expired or revoked.')),
      );
    }
    void reply.clearCookie(SIGNIN_CSRF_COOKIE, { path: '/' });
    void reply.setCookie(SESSION_COOKIE, token, sessionCookieOptions(secure));
    return reply.redirect(next, 303);
  });

  app.post('/sign-out', async (request, reply) => {
    const session = await sessionOf(request);
    const body = (request.body ?? {}) as Record<string, unknown>;
    if (session && !csrfMatches(session.secret, body[CSRF_FIELD])) {
      return problemPage(
        reply,
        403,
        'Refused',
        'The form was not sent from this console; you are still signed in.',
      );
    }
    void reply.clearCookie(SESSION_COOKIE, { path: '/' });
    return reply.redirect('/sign-in', 303);
  });

  const parseQueue = (request: FastifyRequest) => QueueQuerySchema.safeParse(request.query ?? {});
  const badQuery = (reply: FastifyReply, error: z.ZodError, ctx: PageContext) =>
    problemPage(
      reply,
      400,
      'Bad filter',
      error.issues
        .map(
          (i) =>
            `${i.path.join('.') || i.code}: ${i.message}${'keys' in i ? ` (${(i as { keys: string[] }).keys.join(', ')})` : ''}`,
        )
        .join('; '),
      ctx,
    );

  app.get('/', async (request, reply) => {
    const ctx = await guard(request, reply, 'dlq:read');
    if (!ctx) return reply;
    const q = parseQueue(request);
    if (!q.success) return badQuery(reply, q.error, ctx);
    return send(reply, 200, page('Queue', await queuePage(ctx, q.data), ctx));
  });

  app.get('/queue/rows', async (request, reply) => {
    const ctx = await guard(request, reply, 'dlq:read');
    if (!ctx) return reply;
    const q = parseQueue(request);
    if (!q.success) return badQuery(reply, q.error, ctx);
    const { rows } = await loadQueue(ctx, q.data);
    return send(reply, 200, queueRows(rows).value);
  });

  app.get('/staleness', async (request, reply) => {
    const ctx = await guard(request, reply, 'dlq:stats');
    if (!ctx) return reply;
    return send(reply, 200, page('Staleness', await stalenessPage(ctx), ctx));
  });

  const issuesText = (error: z.ZodError) =>
    error.issues
      .map(
        (i) =>
          `${i.path.join('.') || 'form'}: ${i.message}${'keys' in i ? ` (${(i as { keys: string[] }).keys.join(', ')})` : ''}`,
      )
      .join('; ');

  app.get('/bulk', async (request, reply) => {
    const ctx = await guard(request, reply, 'dlq:update');
    if (!ctx) return reply;
    const q = BulkFilterQuery.safeParse(request.query ?? {});
    if (!q.success) return problemPage(reply, 400, 'Bad filter', issuesText(q.error), ctx);
    let preview: Awaited<ReturnType<typeof bulkResolve>> | undefined;
    if (q.data.preview === '1') {
      try {
        preview = await bulkResolve(deps.web.pool, {
          filter: bulkFilterOf(q.data),
          status: 'cancelled',
          notes: 'preview',
          dryRun: true,
          previewLimit: BULK_PREVIEW_LIMIT,
          actor: actorOf(ctx.principal),
          now: deps.now(),
        });
      } catch (err) {
        if (!(err instanceof UsageError)) throw err;
        return send(
          reply,
          400,
          page('Bulk resolve', bulkPage(ctx, q.data, undefined, { problem: err.message }), ctx),
        );
      }
    }
    return send(reply, 200, page('Bulk resolve', bulkPage(ctx, q.data, preview), ctx));
  });

  app.post('/bulk/resolve', async (request, reply) => {
    const ctx = await guard(request, reply, 'dlq:update');
    if (!ctx) return reply;
    const form = BulkResolveForm.safeParse(request.body ?? {});
    if (!form.success) return problemPage(reply, 400, 'Bad form', issuesText(form.error), ctx);
    const { _csrf, status, notes, ...filter } = form.data;
    try {
      const result = await bulkResolve(deps.web.pool, {
        filter: bulkFilterOf(filter),
        status,
        notes,
        dryRun: false,
        previewLimit: 0,
        actor: actorOf(ctx.principal),
        now: deps.now(),
      });
      return send(reply, 200, page('Bulk resolve', bulkPage(ctx, filter, undefined, result), ctx));
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      return send(
        reply,
        400,
        page('Bulk resolve', bulkPage(ctx, filter, undefined, { problem: err.message }), ctx),
      );
    }
  });

  const renderJobs = async (
    ctx: PageContext,
    reply: FastifyReply,
    status: number,
    notice?: { ok: boolean; text: string },
  ) => send(reply, status, page('Jobs', jobsPage(ctx, await jobStates(deps.web), notice), ctx));

  app.get('/jobs', async (request, reply) => {
    const ctx = await guard(request, reply, 'jobs:read');
    if (!ctx) return reply;
    return renderJobs(ctx, reply, 200);
  });

  app.post('/jobs/:job/dead-letters/:id/retry', async (request, reply) => {
    const ctx = await guard(request, reply, 'jobs:run');
    if (!ctx) return reply;
    const { job, id } = request.params as { job: string; id: string };
    if (!UUID.test(id)) return renderJobs(ctx, reply, 400, { ok: false, text: `id: ${id} is not a uuid` });
    try {
      const run = await retryDeadJob(deps.web, {
        job,
        deadJobId: id,
        actor: actorOf(ctx.principal),
        now: deps.now(),
      });
      return renderJobs(ctx, reply, 200, {
        ok: true,
        text: `Retried dead-lettered run ${id} of ${job} as run ${run.job_id}.`,
      });
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      return renderJobs(ctx, reply, err instanceof NotFoundError ? 404 : 409, {
        ok: false,
        text: err.message,
      });
    }
  });

  app.post('/jobs/:job/runs', async (request, reply) => {
    const ctx = await guard(request, reply, 'jobs:run');
    if (!ctx) return reply;
    const { job } = request.params as { job: string };
    const schema = RUN_OPTION_SCHEMAS[job as keyof typeof RUN_OPTION_SCHEMAS];
    if (!schema || !ENQUEUEABLE_JOBS[job])
      return renderJobs(ctx, reply, 404, { ok: false, text: `no job ${job}` });
    // Form values are text: empty fields are left out, numbers and the dry-run box converted.
    const raw: Record<string, unknown> = {};
    for (const [k, v] of Object.entries((request.body ?? {}) as Record<string, unknown>)) {
      if (k === CSRF_FIELD || v === '' || typeof v !== 'string') continue;
      raw[k] =
        k === 'dry_run'
          ? v === 'true'
          : /^-?\d+$/.test(v) && k !== 'namespace' && k !== 'task_name'
            ? Number(v)
            : v;
    }
    const parsed = schema.safeParse(raw);
    if (!parsed.success) return renderJobs(ctx, reply, 400, { ok: false, text: issuesText(parsed.error) });
    try {
      const run = await enqueueRun(deps.web, {
        job,
        options: parsed.data,
        actor: actorOf(ctx.principal),
        now: deps.now(),
      });
      return renderJobs(ctx, reply, 202, { ok: true, text: `Queued a ${job} run: ${run.job_id}.` });
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      return renderJobs(ctx, reply, err instanceof NotFoundError ? 404 : 409, {
        ok: false,
        text: err.message,
      });
    }
  });

  const ArchiveQuery = z.strictObject({
    task_uuid: z.string().trim().regex(UUID, 'expected a task uuid').or(z.literal('')).optional(),
  });

  app.get('/archive', async (request, reply) => {
    const ctx = await guard(request, reply, 'archive:read');
    if (!ctx) return reply;
    const q = ArchiveQuery.safeParse(request.query ?? {});
    if (!q.success) return problemPage(reply, 400, 'Bad task uuid', issuesText(q.error), ctx);
    const taskUuid = q.data.task_uuid || undefined;
    const [months, graph] = await Promise.all([
      archiveStatistics(deps.db, 24),
      taskUuid ? archivedGraph(deps.db, taskUuid) : Promise.resolve(undefined),
    ]);
    return send(
      reply,
      200,
      page('Archive', archivePage(ctx, months, taskUuid ? { taskUuid, graph } : undefined), ctx),
    );
  });

  app.post('/archive/:task/restore', async (request, reply) => {
    const ctx = await guard(request, reply, 'archive:restore');
    if (!ctx) return reply;
    const { task } = request.params as { task: string };
    let notice: { ok: boolean; text: string };
    let status = 200;
    if (!UUID.test(task)) {
      notice = { ok: false, text: `task: ${task} is not a uuid` };
      status = 400;
    } else {
      try {
        const restored = await restoreArchivedTask(deps.web.pool, {
          taskUuid: task,
          actor: actorOf(ctx.principal),
          now: deps.now(),
        });
        notice = { ok: true, text: `Restored task ${restored.task_uuid} to the live tables.` };
      } catch (err) {
        if (!(err instanceof UsageError)) throw err;
        notice = { ok: false, text: err.message };
        status = err instanceof NotFoundError ? 404 : 409;
      }
    }
    const months = await archiveStatistics(deps.db, 24);
    return send(reply, status, page('Archive', archivePage(ctx, months, undefined, notice), ctx));
  });

  app.get('/audit', async (request, reply) => {
    const ctx = await guard(request, reply, 'audit:read');
    if (!ctx) return reply;
    const q = AuditFilterQuery.safeParse(request.query ?? {});
    if (!q.success) return problemPage(reply, 400, 'Bad filter', issuesText(q.error), ctx);
    const rows = await listAudit(deps.db, {
      since: q.data.since ? new Date(q.data.since) : undefined,
      actor: q.data.actor || undefined,
      targetId: q.data.target_id || undefined,
      beforeId: q.data.before_id,
      limit: AUDIT_PAGE_SIZE,
    });
    return send(reply, 200, page('Audit log', auditPage(ctx, q.data, rows), ctx));
  });

  async function entryOr404(reply: FastifyReply, uuid: string, ctx: PageContext) {
    const entry = UUID.test(uuid) ? await findEntry(deps.db, uuid) : undefined;
    if (!entry || entry.dlq_entry_uuid !== uuid.toLowerCase()) {
      problemPage(reply, 404, 'Not found', `No DLQ entry ${uuid} (expected a dlq_entry_uuid).`, ctx);
      return undefined;
    }
    return entry;
  }

  app.get('/dlq/:uuid', async (request, reply) => {
    const ctx = await guard(request, reply, 'dlq:read');
    if (!ctx) return reply;
    const entry = await entryOr404(reply, (request.params as { uuid: string }).uuid, ctx);
    if (!entry) return reply;
    const title = `${String(entry.task_snapshot.task_name ?? 'Entry')} investigation`;
    return send(reply, 200, page(title, await entryPage(ctx, entry), ctx));
  });

  const ResolveForm = z.strictObject({
    [CSRF_FIELD]: z.string(),
    status: z.enum(TERMINAL_RESOLUTION_STATUSES),
    notes: z.string().trim().min(1, 'notes are required').max(10_000),
  });

  app.post('/dlq/:uuid/resolve', async (request, reply) => {
    const ctx = await guard(request, reply, 'dlq:update');
    if (!ctx) return reply;
    const uuid = (request.params as { uuid: string }).uuid;
    const entry = await entryOr404(reply, uuid, ctx);
    if (!entry) return reply;
    const form = ResolveForm.safeParse(request.body ?? {});
    if (!form.success) {
      const notice = form.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
      return send(reply, 400, page('Resolve', await entryPage(ctx, entry, notice), ctx));
    }
    try {
      await resolveInvestigation(deps.web.pool, {
        uuid: entry.dlq_entry_uuid,
        status: form.data.status,
        notes: form.data.notes,
        actor: actorOf(ctx.principal),
        now: deps.now(),
      });
    } catch (err) {
      if (err instanceof NotFoundError) return problemPage(reply, 404, 'Not found', err.message, ctx);
      if (err instanceof UsageError) {
        const current = (await findEntry(deps.db, entry.dlq_entry_uuid)) ?? entry;
        return send(reply, 409, page('Resolve', await entryPage(ctx, current, err.message), ctx));
      }
      throw err;
    }
    return reply.redirect(`/dlq/${entry.dlq_entry_uuid}`, 303);
  });
}

export type { SafeHtml };
