import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type pg from 'pg';
import type { Config } from '../config/schema.ts';
import { createPool, databaseUrl, sessionTimeouts } from '../db/pool.ts';
import { authenticateToken, can } from '../operations/tokens.ts';
import type { Logger } from '../telemetry/logger.ts';
import { consoleRoutes } from './console/index.ts';
import type { WebDeps } from './context.ts';
import { errorHandler, sendError } from './errors.ts';
import { archiveRoutes } from './routes/archive.ts';
import { auditRoutes } from './routes/audit.ts';
import { dlqRoutes } from './routes/dlq.ts';
import { jobRoutes } from './routes/jobs.ts';

/**
 * The HTTP server of the `web` command: the API under /v1 (bearer tokens, one permission per
 * route), /openapi.json generated from the request schemas, /healthz and /readyz, then the console.
 * Any number of web processes may run: they share nothing but the database.
 */

function bearerSecret(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1]! : null;
}

/**
 * The web process's pool for token checks and /readyz (WebDeps.authPool): one connection, taken
 * from the budget's pg-boss share (a web process's pg-boss client uses 2 of its 3), with the same
 * session timeouts as every pool.
 */
export function createAuthPool(config: Readonly<Config>, logger: Logger): pg.Pool {
  return createPool(databaseUrl(config), {
    max: 1,
    logger,
    applicationName: 'tasker-lifecycle-web-auth',
    timeouts: sessionTimeouts(config.database),
  });
}

export async function buildServer(deps: WebDeps): Promise<FastifyInstance> {
  // Fastify's own logger is off: it would log request headers' neighbourhood and has its own format.
  // Requests are logged below (method, route, status, time), never headers or bodies.
  const app = Fastify({ logger: false, bodyLimit: 1_048_576 });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorateRequest('principal', null);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'tasker-lifecycle API',
        version: '1',
        description:
          'Investigations (upstream tasker-core DLQ endpoints and more), job states and runs, the archive, the audit log. Every /v1 route needs `Authorization: Bearer <token>` with the permission named in its description; errors are {"error": {"code", "message"}}.',
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });

  app.addHook('onRequest', async (request, reply) => {
    const permission = request.routeOptions.config?.permission;
    if (permission === undefined) return;
    const secret = bearerSecret(request);
    if (secret === null) {
      return sendError(reply, 401, 'UNAUTHORIZED', 'missing Authorization: Bearer <token> header');
    }
    const principal = await authenticateToken(deps.authPool ?? deps.pool, secret, deps.now());
    if (principal === null) {
      return sendError(reply, 401, 'UNAUTHORIZED', 'the token is unknown, expired or revoked');
    }
    if (!can(principal, permission)) {
      return sendError(
        reply,
        403,
        'FORBIDDEN',
        `token ${principal.tokenName} lacks the permission ${permission} (it has ${principal.permissions.join(', ')})`,
      );
    }
    request.principal = principal;
  });

  app.addHook('onResponse', async (request, reply) => {
    deps.logger.debug('request', {
      method: request.method,
      route: request.routeOptions.url ?? request.url.split('?')[0],
      status: reply.statusCode,
      duration_ms: Math.round(reply.elapsedTime),
      token: request.principal?.tokenName,
    });
  });

  app.setErrorHandler(errorHandler(deps.logger));

  app.setNotFoundHandler((request, reply) =>
    sendError(reply, 404, 'NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`),
  );

  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { hide: true } }, async (_request, reply) => {
    try {
      const { rows } = await (deps.authPool ?? deps.pool).query<{ migrated: boolean }>(
        "SELECT to_regclass('tasker_audit_log') IS NOT NULL AS migrated",
      );
      if (!rows[0]?.migrated) {
        return reply.code(503).send({
          status: 'unavailable',
          error: 'the database is not migrated: run `tasker-lifecycle migrate`',
        });
      }
      return { status: 'ready' };
    } catch (err) {
      return reply.code(503).send({ status: 'unavailable', error: (err as Error).message });
    }
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.register(dlqRoutes, { deps });
  await app.register(jobRoutes, { deps });
  await app.register(archiveRoutes, { deps });
  await app.register(auditRoutes, { deps });

  await app.register(consoleRoutes, { deps });
  return app;
}
