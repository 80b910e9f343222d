import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { archivedGraph } from '../../db/queries/archive-lookup.ts';
import { NotFoundError } from '../../errors.ts';
import { restoreArchivedTask } from '../../operations/archive.ts';
import { readDb, tokenActor, type WebDeps } from '../context.ts';
import { RestoreBody, TaskUuidParams } from '../schemas.ts';

/** Archived task graphs: look one up, restore it. */
export const archiveRoutes: FastifyPluginAsyncZod<{ deps: WebDeps }> = async (app, { deps }) => {
  const tags = ['archive'];

  app.get(
    '/v1/archive/tasks/:task_uuid',
    {
      config: { permission: 'archive:read' },
      schema: {
        tags,
        description:
          'An archived task graph: the task, its transitions, steps, edges, step transitions and DLQ entries; 404 if not archived. Permission archive:read.',
        params: TaskUuidParams,
      },
    },
    async (request) => {
      const graph = await archivedGraph(readDb(deps), request.params.task_uuid);
      if (!graph) throw new NotFoundError(`task ${request.params.task_uuid} is not archived`);
      return graph;
    },
  );

  app.post(
    '/v1/archive/tasks/:task_uuid/restore',
    {
      config: { permission: 'archive:restore' },
      schema: {
        tags,
        description:
          'Move an archived task graph back to the live tables, exactly as it was; 404 if not archived. With hold_days, hold it out of archival that long (else a task past the retention is archived again by the next run: past_retention and archival say so). Audited. Permission archive:restore.',
        params: TaskUuidParams,
        body: RestoreBody,
      },
    },
    async (request) =>
      restoreArchivedTask(deps.pool, {
        taskUuid: request.params.task_uuid,
        holdDays: request.body?.hold_days,
        retentionDays: deps.config.archive.retention_days,
        actor: tokenActor(request.principal),
        now: deps.now(),
      }),
  );
};
