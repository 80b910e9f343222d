import type { FastifyError, FastifyPluginAsync } from 'fastify';
import { checkSession, endSession, openSession } from '../../operations/sessions.ts';
import { can } from '../../operations/tokens.ts';
import type { WebDeps } from '../context.ts';
import { answerFor } from '../errors.ts';
import type { Refusals } from '../refusals.ts';
import { html } from './html.ts';
import { page } from './layout.ts';
import { registerConsoleRoutes } from './routes.ts';

/**
 * The web console under `/` (routes.ts), registered by buildServer after the API routes. Its errors
 * are pages, with the console's headers: a bad value 400, an unknown thing 404, a busy database 503
 * with Retry-After, anything else 500 (logged), never the API's JSON.
 */
export const consoleRoutes: FastifyPluginAsync<{ deps: WebDeps; refusals: Refusals }> = async (
  app,
  { deps, refusals },
) => {
  const db = deps.authPool ?? deps.pool;
  const limits = {
    maxAgeMinutes: deps.config.web.session_max_age_minutes,
    idleTimeoutMinutes: deps.config.web.session_idle_timeout_minutes,
  };
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const a = answerFor(error, request, deps.logger);
    if (a.retryAfter !== undefined) void reply.header('retry-after', String(a.retryAfter));
    const title =
      a.status === 400
        ? 'Not accepted'
        : a.status === 404
          ? 'Not found'
          : a.status === 503
            ? 'Try again shortly'
            : a.status >= 500
              ? 'Something went wrong'
              : 'Refused';
    const what = a.status < 500 || a.status === 503 ? ' Nothing was changed.' : '';
    return reply
      .code(a.status)
      .header('content-type', 'text/html; charset=utf-8')
      .send(
        page(
          title,
          html`<h1>${title}</h1><p class="notice error" role="alert" id="problem">${a.message}.${what}</p><p><a href="/">The queue</a></p>`,
        ),
      );
  });
  registerConsoleRoutes(app, {
    web: deps,
    // Reads: the replica when configured and fresh (not for a page after its caller's change).
    db: deps.reads?.reads ?? deps.pool,
    now: deps.now,
    sessions: {
      open: (token, now, clientAddress) => openSession(db, { token, now, limits, clientAddress }),
      check: (secret, now) => checkSession(db, secret, now, limits),
      end: (secret, now) => endSession(db, secret, now),
    },
    can,
    secureCookies: (request) => deps.config.web.secure_cookies === 'always' || request.protocol === 'https',
    refused: refusals.refused,
    queueRefreshSeconds: 10,
  });
};
