import swagger from '@fastify/swagger';
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import {
  hasZodFastifySchemaValidationErrors,
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
} from 'fastify-type-provider-zod';
import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import type { Config } from '../config/schema.ts';
import { NotFoundError, UsageError } from '../errors.ts';
import { ConflictError } from '../operations/errors.ts';
import { authenticateToken, can, type Permission, type Principal } from '../operations/tokens.ts';
import type { Logger } from '../telemetry/logger.ts';
import { consoleRoutes } from './console/index.ts';
import { archiveRoutes } from './routes/archive.ts';
import { auditRoutes } from './routes/audit.ts';
import { dlqRoutes } from './routes/dlq.ts';
import { jobRoutes } from './routes/jobs.ts';

/**
 * The HTTP server of the `web` command: the API under /v1 (bearer tokens, one permission per
 * route), /openapi.json generated from the request schemas, /healthz and /readyz, then the console.
 * Any number of web processes may run: they share nothing but the database.
 */

export interface WebDeps {
  pool: pg.Pool;
  config: Readonly<Config>;
  /** The clock of this server: every change is stamped with it. */
  now: () => Date;
  logger: Logger;
  /** A pg-boss client (role 'client': it sends and reads, it does not work queues). */
  boss: PgBoss;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The token's principal on /v1 routes (set by the auth hook); null elsewhere. */
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /** The permission a /v1 route needs; routes without one are open (health, OpenAPI, console). */
    permission?: Permission;
  }
}

/** The API's error body: {"error": {"code", "message", "details"?}}. */
export function sendError(
  reply: FastifyReply,
  status: number,
  code: string,
  message: string,
  details?: Record<string, unknown>,
): FastifyReply {
  return reply.code(status).send({ error: details ? { code, message, details } : { code, message } });
}

/** "limit: expected a whole number ...", "body: unknown field \"x\"": the field first. */
function validationMessage(error: FastifyError & { validationContext?: string }): string {
  if (!hasZodFastifySchemaValidationErrors(error)) return error.message;
  const first = error.validation[0]!;
  const params = first.params as { keys?: string[] } | undefined;
  const path = first.instancePath.replace(/^\//, '').replaceAll('/', '.');
  if (first.keyword === 'unrecognized_keys' && params?.keys) {
    const where = path === '' ? (error.validationContext ?? 'request') : path;
    return `${params.keys.map((k) => (path === '' ? k : `${path}.${k}`)).join(', ')}: unknown field in ${where}; remove it`;
  }
  const field = path === '' ? (error.validationContext ?? 'request') : path;
  return `${field}: ${first.message}`;
}

function bearerSecret(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1]! : null;
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
    const principal = await authenticateToken(deps.pool, secret, deps.now());
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

  app.setErrorHandler((error: FastifyError & { validationContext?: string }, request, reply) => {
    if (error.validation) return sendError(reply, 400, 'BAD_REQUEST', validationMessage(error));
    if (error instanceof NotFoundError) return sendError(reply, 404, 'NOT_FOUND', error.message);
    if (error instanceof ConflictError)
      return sendError(reply, 409, 'CONFLICT', error.message, error.details);
    if (error instanceof UsageError) return sendError(reply, 400, 'BAD_REQUEST', error.message);
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) return sendError(reply, status, 'BAD_REQUEST', error.message);
    deps.logger.error('request failed', {
      method: request.method,
      route: request.routeOptions.url,
      error: error.message,
      stack: error.stack,
    });
    return sendError(reply, 500, 'INTERNAL_ERROR', 'internal error (logged by the server)');
  });

  app.setNotFoundHandler((request, reply) =>
    sendError(reply, 404, 'NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`),
  );

  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { hide: true } }, async (_request, reply) => {
    try {
      const { rows } = await deps.pool.query<{ migrated: boolean }>(
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
