import type { FastifyPluginAsync } from 'fastify';
import type { ConsoleDeps } from './deps.ts';
import { registerConsoleRoutes } from './routes.ts';

export type { ConsoleDeps, ConsolePrincipal } from './deps.ts';

/** The web console under `/` (see routes.ts). */
export const consoleRoutes: FastifyPluginAsync<ConsoleDeps> = async (app, deps) => {
  registerConsoleRoutes(app, deps);
};
