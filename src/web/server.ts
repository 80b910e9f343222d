import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type pg from 'pg';
import type { Config } from '../config/schema.ts';
import { databaseTrouble } from '../db/errors.ts';
import { createPool, databaseUrl, sessionTimeouts } from '../db/pool.ts';
import { UsageError } from '../errors.ts';
import { authenticateToken, can, tokenIdOf } from '../operations/tokens.ts';
import { createHttpMetrics } from '../telemetry/http-metrics.ts';
import type { Logger } from '../telemetry/logger.ts';
import { html } from './console/html.ts';
import { consoleRoutes } from './console/index.ts';
import { page } from './console/layout.ts';
import type { WebDeps } from './context.ts';
import { errorHandler, sendError } from './errors.ts';
import { inputProblem } from './input-guard.ts';
import { createRefusals, isConsoleRequest, routeOf } from './refusals.ts';
import { archiveRoutes } from './routes/archive.ts';
import { auditRoutes } from './routes/audit.ts';
import { dlqRoutes } from './routes/dlq.ts';
import { groupRoutes } from './routes/groups.ts';
import { jobRoutes } from './routes/jobs.ts';

/**
 * The HTTP server of the `web` command: the API under /v1 (bearer tokens, one permission per
 * route), /openapi.json generated from the request schemas, /healthz, /readyz and /metrics, then
 * the console. Any number of web processes may run: they share nothing but the database.
 *
 * Every response carries the security headers (@fastify/helmet: the console's content security
 * policy with base-uri 'none', nosniff, no framing, same-origin referrers) and, unless it says
 * otherwise (the console's assets), Cache-Control: no-store. Every refusal is logged and counted
 * (refusals.ts); an address refused too often gets 429 for a while. No request may carry NUL or
 * JSON nested deeper than 32 levels (input-guard.ts: 400).
 */

/**
 * The security headers of every response. The content security policy is the console's (its own
 * scripts and styles, inline styles for the graph, data: images) plus base-uri 'none'; HSTS without
 * includeSubDomains (browsers heed it only over https, where it belongs; the host's other names are
 * not this server's to decide).
 */
const HELMET_OPTIONS = {
  contentSecurityPolicy: {
    useDefaults: false,
    directives: {
      defaultSrc: ["'self'"],
      styleSrc: ["'self'", "'unsafe-inline'"],
      imgSrc: ["'self'", 'data:'],
      frameAncestors: ["'none'"],
      formAction: ["'self'"],
      baseUri: ["'none'"],
    },
  },
  frameguard: { action: 'deny' as const },
  referrerPolicy: { policy: 'same-origin' as const },
  strictTransportSecurity: { maxAge: 31_536_000, includeSubDomains: false },
};

/**
 * Set on the answer to every accepted change when reads go to a replica: for
 * database.replica_max_lag_seconds (+1) the client's requests read from the primary, so the page
 * after a change (the console's 303 after Resolve) shows it even while the replica has not
 * replayed it yet. It carries nothing but the fact.
 */
export const READ_PRIMARY_COOKIE = 'tasker_read_primary';

/** A console page with a heading and why, for answers made outside the console's routes. */
function problemPage(title: string, message: string): string {
  return page(title, html`<h1>${title}</h1><p class="notice error" role="alert" id="problem">${message}</p>`);
}

/** /readyz's reason codes (the details go to the log). */
type NotReady = 'database_unavailable' | 'database_busy' | 'database_error' | 'not_migrated';

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
  const app = Fastify({ logger: false, bodyLimit: 1_048_576, trustProxy: deps.config.web.trust_proxy });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorateRequest('principal', null);
  const metrics = deps.metrics ?? (deps.config.metrics.enabled ? createHttpMetrics() : undefined);
  if (metrics && !deps.metrics) app.addHook('onClose', async () => metrics.shutdown());
  const webDeps: WebDeps = { ...deps, metrics };

  // Read-your-writes with a replica: a request that changes something, and every request of a
  // client that changed something in the last replica_max_lag_seconds (READ_PRIMARY_COOKIE, set
  // below), reads from the primary; other GETs from the replica while it is fresh. First of the
  // hooks, so that the whole request runs inside it.
  const reads = deps.reads;
  if (reads) {
    const maxAgeSeconds = Math.ceil(deps.config.database.replica_max_lag_seconds) + 1;
    app.addHook('onRequest', (request, _reply, done) => {
      const readOnly = request.method === 'GET' || request.method === 'HEAD';
      const wrote = (request.headers.cookie ?? '').split(/;\s*/).includes(`${READ_PRIMARY_COOKIE}=1`);
      if (readOnly && !wrote) return done();
      reads.onPrimary(() => done());
    });
    app.addHook('onSend', async (request, reply, payload) => {
      const readOnly = request.method === 'GET' || request.method === 'HEAD';
      if (!readOnly && reply.statusCode < 400) {
        const secure = request.protocol === 'https' ? '; Secure' : '';
        reply.header(
          'set-cookie',
          `${READ_PRIMARY_COOKIE}=1; Max-Age=${maxAgeSeconds}; Path=/; HttpOnly; SameSite=Lax${secure}`,
        );
      }
      return payload;
    });
  }

  await app.register(helmet, HELMET_OPTIONS);
  // Not a limit on requests: its store counts refusals per address (refusals.ts).
  await app.register(rateLimit, { global: false });
  const refusals = createRefusals(app, deps.config.web, deps.logger, metrics, problemPage);
  app.addHook('onRequest', refusals.guard);

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
      await refusals.refused(request, { reason: 'no_token', status: 401 });
      return sendError(
        reply.header('www-authenticate', 'Bearer realm="tasker-lifecycle"'),
        401,
        'UNAUTHORIZED',
        'missing Authorization: Bearer <token> header',
      );
    }
    const principal = await authenticateToken(deps.authPool ?? deps.pool, secret, deps.now());
    if (principal === null) {
      await refusals.refused(request, { reason: 'bad_token', status: 401, tokenId: tokenIdOf(secret) });
      return sendError(
        reply.header('www-authenticate', 'Bearer realm="tasker-lifecycle", error="invalid_token"'),
        401,
        'UNAUTHORIZED',
        'the token is unknown, expired or revoked',
      );
    }
    if (!can(principal, permission)) {
      await refusals.refused(request, {
        reason: 'forbidden',
        status: 403,
        tokenId: principal.tokenId,
        permission,
      });
      return sendError(
        reply.header(
          'www-authenticate',
          `Bearer realm="tasker-lifecycle", error="insufficient_scope", scope="${permission}"`,
        ),
        403,
        'FORBIDDEN',
        `token ${principal.tokenName} lacks the permission ${permission} (it has ${principal.permissions.join(', ')})`,
      );
    }
    request.principal = principal;
  });

  // Before any route's own validation: what no request may carry (400, nothing changed).
  app.addHook('preValidation', async (request) => {
    const problem =
      inputProblem(request.params, 'params') ??
      inputProblem(request.query, 'querystring') ??
      inputProblem(request.body, 'body');
    if (problem !== undefined) throw new UsageError(problem);
  });

  // Nothing the server answers is cached unless it says so (the console's assets do).
  app.addHook('onSend', async (_request, reply, payload) => {
    if (!reply.hasHeader('cache-control')) void reply.header('cache-control', 'no-store');
    return payload;
  });

  app.addHook('onResponse', async (request, reply) => {
    const fields = {
      method: request.method,
      route: routeOf(request),
      status: reply.statusCode,
      duration_ms: Math.round(reply.elapsedTime),
      token: request.principal?.tokenName,
      token_id: request.principal?.tokenId,
      client_address: request.ip,
    };
    // A conflict (resolved by someone else first, a run already waiting) is a refusal worth a
    // trace at the default level; 401, 403 and CSRF refusals were logged at warn when refused.
    if (reply.statusCode === 409) deps.logger.info('request refused: conflict', fields);
    else deps.logger.debug('request', fields);
  });

  app.setErrorHandler(errorHandler(deps.logger));

  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '/';
    if (
      isConsoleRequest(request) &&
      request.method === 'GET' &&
      /text\/html/.test(request.headers.accept ?? '')
    ) {
      return reply
        .code(404)
        .header('content-type', 'text/html; charset=utf-8')
        .send(problemPage('Not found', `There is no page ${path} here.`));
    }
    return sendError(reply, 404, 'NOT_FOUND', `no route ${request.method} ${path}`);
  });

  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  // Ready or not, and a short reason; the database's own words (host, port, database and user
  // names) go to the log, once each time they change, never to whoever asks.
  let lastNotReady: string | undefined;
  app.get('/readyz', { schema: { hide: true } }, async (_request, reply) => {
    const notReady = (reason: NotReady, detail: string) => {
      if (lastNotReady !== `${reason}:${detail}`) deps.logger.warn('web: not ready', { reason, detail });
      lastNotReady = `${reason}:${detail}`;
      return reply.code(503).send({ status: 'unavailable', reason });
    };
    try {
      const { rows } = await (deps.authPool ?? deps.pool).query<{ migrated: boolean }>(
        "SELECT to_regclass('tasker_console_sessions') IS NOT NULL AS migrated",
      );
      if (!rows[0]?.migrated)
        return notReady('not_migrated', "this build's tables are missing: run `tasker-lifecycle migrate`");
      if (lastNotReady !== undefined) deps.logger.info('web: ready again');
      lastNotReady = undefined;
      return { status: 'ready' };
    } catch (err) {
      const trouble = databaseTrouble(err);
      const reason: NotReady =
        trouble === 'unavailable'
          ? 'database_unavailable'
          : trouble === null
            ? 'database_error'
            : 'database_busy';
      return notReady(reason, (err as Error).message);
    }
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  if (metrics) {
    // The web process's own metrics (refused requests); scrape it as its own job, apart from the
    // workers' (ops/prometheus/scrape.yml).
    app.get('/metrics', { schema: { hide: true } }, (request, reply) => {
      reply.hijack();
      metrics.handleScrape(request.raw, reply.raw);
    });
  }

  await app.register(dlqRoutes, { deps: webDeps });
  await app.register(groupRoutes, { deps: webDeps });
  await app.register(jobRoutes, { deps: webDeps });
  await app.register(archiveRoutes, { deps: webDeps });
  await app.register(auditRoutes, { deps: webDeps });

  await app.register(consoleRoutes, { deps: webDeps, refusals });
  return app;
}
