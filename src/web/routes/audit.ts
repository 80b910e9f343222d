import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { listAudit } from '../../db/queries/audit.ts';
import { readDb, type WebDeps } from '../context.ts';
import { AuditQuery } from '../schemas.ts';

/** The audit log, newest first. */
export const auditRoutes: FastifyPluginAsyncZod<{ deps: WebDeps }> = async (app, { deps }) => {
  app.get(
    '/v1/audit',
    {
      config: { permission: 'audit:read' },
      schema: {
        tags: ['audit'],
        description:
          'Changes made through the API, the CLI and the console, newest first: who (actor, actor_kind, and the token as actor_token_id or the OS user of the CLI as actor_os_user), when, what, on which entry/task/job/token, before and after. Page with before_id. Permission audit:read.',
        querystring: AuditQuery,
      },
    },
    async (request) => {
      const q = request.query;
      return listAudit(readDb(deps), {
        since: q.since === undefined ? undefined : new Date(q.since),
        actor: q.actor,
        actorTokenId: q.actor_token_id,
        targetId: q.target_id,
        beforeId: q.before_id,
        limit: q.limit ?? 100,
      });
    },
  );
};
