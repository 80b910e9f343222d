import type { FastifyPluginAsync } from 'fastify';
import { authenticateToken, can } from '../../operations/tokens.ts';
import type { WebDeps } from '../context.ts';
import { registerConsoleRoutes } from './routes.ts';

/** The web console under `/` (routes.ts), registered by buildServer after the API routes. */
export const consoleRoutes: FastifyPluginAsync<{ deps: WebDeps }> = async (app, { deps }) => {
  registerConsoleRoutes(app, {
    web: deps,
    db: deps.pool,
    now: deps.now,
    authenticate: (secret, now) => authenticateToken(deps.authPool ?? deps.pool, secret, now),
    can,
    secureCookies: false,
    queueRefreshSeconds: 10,
  });
};
