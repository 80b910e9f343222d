import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { cancelRun, enqueueRun, retryDeadJob } from '../../operations/runs.ts';
import { tokenActor, type WebDeps } from '../context.ts';
import { sendError } from '../errors.ts';
import { followRun, jobStates } from '../job-states.ts';
import { DeadJobParams, EnqueueBody, JobParams, JobRunParams, RUN_OPTION_SCHEMAS } from '../schemas.ts';

/** Job states, ad-hoc runs and following them, retrying dead-lettered runs. */
export const jobRoutes: FastifyPluginAsyncZod<{ deps: WebDeps }> = async (app, { deps }) => {
  const tags = ['jobs'];

  app.get(
    '/v1/jobs',
    {
      config: { permission: 'jobs:read' },
      schema: {
        tags,
        description:
          "Each job's schedule, last runs with their counts, queue depths and dead-lettered runs with their error. Permission jobs:read.",
      },
    },
    async () => jobStates(deps),
  );

  app.post(
    '/v1/jobs/:job/runs',
    {
      config: { permission: 'jobs:run' },
      schema: {
        tags,
        description:
          'Queue a run with options (those of `enqueue detect-stale` / `enqueue archive`): 202 with its id; 409 when a run is already waiting. Audited. Permission jobs:run.',
        params: JobParams,
        body: EnqueueBody,
      },
    },
    async (request, reply) => {
      const { job } = request.params;
      const parsed = RUN_OPTION_SCHEMAS[job]!.safeParse(request.body.options);
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        const keys = (issue as { keys?: string[] }).keys;
        const field = keys ? keys.map((k) => `options.${k}`).join(', ') : `options.${issue.path.join('.')}`;
        return sendError(
          reply,
          400,
          'BAD_REQUEST',
          `${field}: ${keys ? 'unknown field; remove it' : issue.message}`,
        );
      }
      const run = await enqueueRun(deps, {
        job,
        options: parsed.data,
        thisRunOnly: request.body.this_run_only,
        actor: tokenActor(request.principal),
        now: deps.now(),
      });
      return reply
        .code(202)
        .header('location', `/v1/jobs/${job}/runs/${run.job_id}`)
        .send({ ...run, follow: `/v1/jobs/${job}/runs/${run.job_id}` });
    },
  );

  app.get(
    '/v1/jobs/:job/runs/:id',
    {
      config: { permission: 'jobs:read' },
      schema: {
        tags,
        description:
          "A queued run: pg-boss's state and output, handed_on_to / merged_into (the run to follow next), its history rows with counts, and chain: every pg-boss job of the run (a run that stops early hands the rest on), its status and the link in flight. Permission jobs:read.",
        params: JobRunParams,
      },
    },
    async (request) => followRun(deps, request.params.job, request.params.id),
  );

  app.post(
    '/v1/jobs/:job/runs/:id/cancel',
    {
      config: { permission: 'jobs:run' },
      schema: {
        tags,
        description:
          'Cancel a run that waits or runs: the link of its chain in flight (a running one stops after the batch in hand and hands nothing on). 200 with what was cancelled; 404 unknown; 409 already ended. Audited (job.cancel). Permission jobs:run.',
        params: JobRunParams,
      },
    },
    async (request) =>
      cancelRun(deps, {
        job: request.params.job,
        id: request.params.id,
        actor: tokenActor(request.principal),
        now: deps.now(),
      }),
  );

  app.post(
    '/v1/jobs/:job/dead-letters/:id/retry',
    {
      config: { permission: 'jobs:run' },
      schema: {
        tags,
        description:
          'Queue a dead-lettered run again with its original request: 202 with the new run id; 404 unknown, 409 already retried or a run already waiting. Audited. Permission jobs:run.',
        params: DeadJobParams,
      },
    },
    async (request, reply) => {
      const retried = await retryDeadJob(deps, {
        job: request.params.job,
        deadJobId: request.params.id,
        actor: tokenActor(request.principal),
        now: deps.now(),
      });
      return reply.code(202).send({ ...retried, follow: `/v1/jobs/${retried.job}/runs/${retried.job_id}` });
    },
  );
};
