import type { FastifyPluginAsync } from 'fastify';
import type { WebDeps } from '../server.ts';

/** The web console (issue 12). Empty until the console lands; registered after the API routes. */
export const consoleRoutes: FastifyPluginAsync<{ deps: WebDeps }> = async () => {};
