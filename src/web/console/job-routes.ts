import type { FastifyInstance, FastifyReply } from 'fastify';
import { listAudit } from '../../db/queries/audit.ts';
import { runsOfBossJobs } from '../../db/queries/job-run-lookup.ts';
import { NotFoundError, UsageError } from '../../errors.ts';
import {
  CHAIN_MAX_LINKS,
  cancelRun,
  ENQUEUEABLE_JOBS,
  enqueueRun,
  retryDeadJob,
  runChain,
} from '../../operations/runs.ts';
import { jobStates } from '../job-states.ts';
import { RUN_OPTION_SCHEMAS } from '../schemas.ts';
import { actorOf } from './deps.ts';
import { jobLive, jobsPage } from './jobs-page.ts';
import { type ConsoleKit, UUID } from './kit.ts';
import type { PageContext } from './layout.ts';
import { type RunView, runLive, runPage } from './run-page.ts';
import { CSRF_FIELD } from './session.ts';

/**
 * Jobs: the page, each job's live part, queueing a run, following one (its own page, refreshing
 * itself), cancelling it, retrying a dead-lettered one. Every POST ends in a redirect (303): after
 * queueing or retrying, to the run's page; after a refusal, to the Jobs page with the reason. A
 * reload never queues again.
 */

/** How many history rows per job the page reads to show its last runs (chains grouped). */
const HISTORY_ROWS = 60;

export function registerJobRoutes(app: FastifyInstance, kit: ConsoleKit): void {
  const { deps } = kit;

  app.get('/jobs', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'jobs:read');
    if (!ctx) return reply;
    const states = await jobStates(deps.web, HISTORY_ROWS);
    const replica = await deps.web.reads?.status();
    return kit.page(reply, 200, 'Jobs', jobsPage(ctx, states, deps.now(), replica), ctx);
  });

  app.get('/jobs/:job/live', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'jobs:read', { consumeFlash: false });
    if (!ctx) return reply;
    const { job } = request.params as { job: string };
    const state = (await jobStates(deps.web, HISTORY_ROWS)).find((s) => s.job === job);
    if (!state) return kit.send(reply, 404, `<p>No job ${job}.</p>`);
    return kit.send(reply, 200, jobLive(ctx, state, deps.now()).value);
  });

  const knownJob = (job: string) =>
    Object.hasOwn(ENQUEUEABLE_JOBS, job)
      ? Object.values(ENQUEUEABLE_JOBS).find((j) => j.name === job)
      : undefined;

  async function loadRun(job: string, id: string): Promise<RunView> {
    const chain = await runChain(deps.web.boss, job, id, deps.db);
    const ids = chain.links.map((l) => l.id);
    const first = chain.links[0]!;
    const [runs, firstAudit, headAudit] = await Promise.all([
      runsOfBossJobs(deps.db, ids, CHAIN_MAX_LINKS * 4),
      listAudit(deps.db, { targetId: first.id, limit: 5 }),
      chain.head.state === 'cancelled' ? listAudit(deps.db, { targetId: chain.head.id, limit: 5 }) : [],
    ]);
    const data = (first.data ?? {}) as RunView['request'] & Record<string, unknown>;
    return {
      chain,
      runs,
      queuedBy: firstAudit.find((a) => a.action === 'job.enqueue'),
      cancelledBy: headAudit.find((a) => a.action === 'job.cancel'),
      request: {
        options: (data.options as Record<string, unknown> | undefined) ?? {},
        this_run_only: data.this_run_only === true,
        trigger: typeof data.trigger === 'string' ? data.trigger : undefined,
      },
    };
  }

  /** The run's page, or a 404 page saying what is unknown. */
  async function runOrReply(reply: FastifyReply, ctx: PageContext, job: string, id: string) {
    if (!knownJob(job)) {
      kit.problem(
        reply,
        404,
        'Not found',
        `No job ${job}: expected one of ${Object.keys(ENQUEUEABLE_JOBS).join(', ')}.`,
        ctx,
      );
      return undefined;
    }
    if (!UUID.test(id)) {
      kit.problem(reply, 404, 'Not found', `No run ${id}: expected a run id (a uuid).`, ctx);
      return undefined;
    }
    try {
      return await loadRun(job, id.toLowerCase());
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      kit.problem(reply, 404, 'Not found', `${err.message}; its history may still be on the Jobs page.`, ctx);
      return undefined;
    }
  }

  app.get('/jobs/:job/runs/:id', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'jobs:read');
    if (!ctx) return reply;
    const { job, id } = request.params as { job: string; id: string };
    const view = await runOrReply(reply, ctx, job, id);
    if (!view) return reply;
    return kit.page(reply, 200, 'Run', runPage(ctx, view, knownJob(job)!.description), ctx);
  });

  app.get('/jobs/:job/runs/:id/live', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'jobs:read', { consumeFlash: false });
    if (!ctx) return reply;
    const { job, id } = request.params as { job: string; id: string };
    const view = await runOrReply(reply, ctx, job, id);
    if (!view) return reply;
    return kit.send(reply, 200, runLive(ctx, view).value);
  });

  app.post('/jobs/:job/runs', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'jobs:run', { next: '/jobs' });
    if (!ctx) return reply;
    const { job } = request.params as { job: string };
    // Own properties only: `constructor`, `__proto__` or `toString` name no job (they would find
    // Object.prototype's members).
    if (!Object.hasOwn(RUN_OPTION_SCHEMAS, job) || !Object.hasOwn(ENQUEUEABLE_JOBS, job))
      return kit.redirect(reply, ctx, '/jobs', { ok: false, text: `Not queued: no job ${job}.` });
    const schema = RUN_OPTION_SCHEMAS[job as keyof typeof RUN_OPTION_SCHEMAS]!;
    // Form values are text: empty fields are left out, numbers and the check boxes converted. The
    // options are built as own properties (a field named __proto__ is a field, refused as unknown).
    const raw = new Map<string, unknown>();
    let thisRunOnly = false;
    for (const [k, v] of Object.entries((request.body ?? {}) as Record<string, unknown>)) {
      if (k === CSRF_FIELD || v === '' || typeof v !== 'string') continue;
      if (k === 'this_run_only') {
        thisRunOnly = v === 'true';
        continue;
      }
      raw.set(
        k,
        k === 'dry_run'
          ? v === 'true'
          : /^-?\d+$/.test(v) && k !== 'namespace' && k !== 'task_name'
            ? Number(v)
            : v,
      );
    }
    const parsed = schema.safeParse(Object.fromEntries(raw));
    if (!parsed.success)
      return kit.redirect(reply, ctx, '/jobs', {
        ok: false,
        text: `Not queued: ${kit.issuesText(parsed.error)}`,
      });
    try {
      const run = await enqueueRun(deps.web, {
        job,
        options: parsed.data,
        thisRunOnly,
        actor: actorOf(ctx.principal),
        now: deps.now(),
      });
      return kit.redirect(reply, ctx, `/jobs/${job}/runs/${run.job_id}`, {
        ok: true,
        text: `Queued a run of ${job}${thisRunOnly ? ' (this run only)' : ''}. This page follows it.`,
      });
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      return kit.redirect(reply, ctx, '/jobs', { ok: false, text: `Not queued: ${err.message}.` });
    }
  });

  app.post('/jobs/:job/runs/:id/cancel', async (request, reply) => {
    const { job, id } = request.params as { job: string; id: string };
    const ctx = await kit.guard(request, reply, 'jobs:run', { next: `/jobs/${job}/runs/${id}` });
    if (!ctx) return reply;
    const back = knownJob(job) && UUID.test(id) ? `/jobs/${job}/runs/${id}` : '/jobs';
    if (back === '/jobs')
      return kit.redirect(reply, ctx, back, { ok: false, text: `Not cancelled: no run ${id} of ${job}.` });
    try {
      const c = await cancelRun(deps.web, { job, id, actor: actorOf(ctx.principal), now: deps.now() });
      return kit.redirect(reply, ctx, back, {
        ok: true,
        text:
          c.previous_state === 'active'
            ? `Cancelled: the run stops after the batch it is in, and hands nothing on.`
            : `Cancelled: the run will not start.`,
      });
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      return kit.redirect(reply, ctx, back, { ok: false, text: `Not cancelled: ${err.message}.` });
    }
  });

  app.post('/jobs/:job/dead-letters/:id/retry', async (request, reply) => {
    const ctx = await kit.guard(request, reply, 'jobs:run', { next: '/jobs' });
    if (!ctx) return reply;
    const { job, id } = request.params as { job: string; id: string };
    if (!UUID.test(id))
      return kit.redirect(reply, ctx, '/jobs', { ok: false, text: `Not retried: id ${id} is not a uuid.` });
    try {
      const run = await retryDeadJob(deps.web, {
        job,
        deadJobId: id,
        actor: actorOf(ctx.principal),
        now: deps.now(),
      });
      return kit.redirect(reply, ctx, `/jobs/${job}/runs/${run.job_id}`, {
        ok: true,
        text: `Retried dead-lettered run ${id} of ${job} as this run.`,
      });
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      return kit.redirect(reply, ctx, '/jobs', { ok: false, text: `Not retried: ${err.message}.` });
    }
  });
}
