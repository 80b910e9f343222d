import { JOBS } from '../../../jobs/index.ts';
import { databaseUrl } from '../../db/pool.ts';
import { checkInstall } from '../../install/index.ts';
import { buildServer, createAuthPool } from '../../web/server.ts';
import { createBoss } from '../../worker/boss.ts';
import { startBoss } from '../../worker/process.ts';
import type { Command } from '../command.ts';
import { untilAborted } from './worker.ts';

/**
 * web: the HTTP API (/v1, /openapi.json, /healthz, /readyz) and the console, on web.host:web.port,
 * until SIGTERM/SIGINT. Any number may run beside the workers; they share only the database.
 */
export const webCommand: Command = {
  name: 'web',
  summary:
    'Serve the HTTP API (/v1, /openapi.json) and the console on web.host:web.port until SIGTERM/SIGINT.',
  args: { flags: {} },
  async run(_, { runtime, signal }) {
    const rt = runtime.get();
    const boss = createBoss(rt.config, databaseUrl(rt.config), 'client', rt.logger);
    await startBoss(boss);
    const authPool = createAuthPool(rt.config, rt.logger);
    try {
      // What the API and console need and how it differs from this configuration, logged; /readyz
      // answers 503 while this build's tables are missing.
      const check = await checkInstall({ pool: rt.pool, config: rt.config, jobs: JOBS, boss });
      for (const gap of check.missing)
        rt.logger.warn(`web: ${gap}: run \`tasker-lifecycle migrate\` with this build`);
      for (const difference of check.differences)
        rt.logger.info(`web: ${difference} (the database's is in force)`, { install_difference: difference });
      const app = await buildServer({
        pool: rt.pool,
        authPool,
        ...(rt.config.database.replica_url === '' ? {} : { reads: rt.readRouter() }),
        config: rt.config,
        now: () => new Date(),
        logger: rt.logger,
        boss,
      });
      await app.listen({ host: rt.config.web.host, port: rt.config.web.port });
      const address = app.server.address();
      const port = typeof address === 'object' && address !== null ? address.port : rt.config.web.port;
      rt.logger.info(`web: listening on http://${rt.config.web.host}:${port}`, {
        host: rt.config.web.host,
        port,
        database: rt.target,
      });
      await untilAborted(signal);
      rt.logger.info('web: stopping');
      await app.close();
    } finally {
      await boss.stop({ graceful: false });
      await authPool.end();
    }
  },
};
