import type pg from 'pg';
import archiveFinishedTasks from '../../../jobs/archive-finished-tasks.ts';
import detectStaleTasks from '../../../jobs/detect-stale-tasks.ts';
import { JOBS } from '../../../jobs/index.ts';
import type { Config } from '../../config/schema.ts';
import { startEmbeddedPostgres } from '../../db/embedded.ts';
import { createPool, databaseUrl, embeddedDataDir, isEmbedded } from '../../db/pool.ts';
import {
  createDemoTask,
  createTroubledDemoTask,
  type DemoTrouble,
  ensureDemoTemplates,
  markStuck,
  movableDemoTasks,
  seedFinishedTasks,
  transition,
} from '../../db/queries/demo-engine.ts';
import { createToken } from '../../operations/tokens.ts';
import { redactCredentials } from '../../redact.ts';
import type { Logger } from '../../telemetry/logger.ts';
import { buildServer } from '../../web/server.ts';
import { createBoss } from '../../worker/boss.ts';
import { startBoss, startWorker } from '../../worker/process.ts';
import { sendRun } from '../../worker/worker.ts';
import type { Command } from '../command.ts';
import { migrateAll } from './migrate.ts';
import { untilAborted } from './worker.ts';

/**
 * start: everything in one process, for a first look. Without database.url (DATABASE_URL) it
 * starts the embedded PostgreSQL (data kept in database.embedded_data_dir), then migrates, runs a
 * worker, and, unless --no-demo, a small engine stand-in whose tasks sometimes get stuck, so that
 * detection, investigations, enrichment and archival happen while you watch (`status`, `dlq queue`
 * from another terminal). Ctrl-C stops it all.
 */
export const startCommand: Command = {
  name: 'start',
  summary:
    'Migrate and run a worker (with the embedded PostgreSQL when no database is configured) and a demo workload.',
  args: {
    flags: { 'no-demo': { type: 'boolean', description: 'run the worker only, without the demo workload' } },
  },
  async run({ flags }, { io, runtime, signal }) {
    const rt = runtime.get();
    const { config, logger } = rt;
    const embedded = isEmbedded(config)
      ? await startEmbeddedPostgres({
          dataDir: embeddedDataDir(config),
          port: config.database.embedded_port,
          persistent: true,
          onLog: (line) => logger.debug(line, { source: 'postgres' }),
        })
      : undefined;
    try {
      if (embedded) {
        await createDatabaseIfMissing(embedded.url('postgres'), 'tasker');
        logger.info('embedded PostgreSQL running', {
          url: redactCredentials(embedded.url('tasker')),
          data_dir: embedded.dataDir,
        });
      }
      const url = databaseUrl(config);
      await migrateAll(rt, 'start');
      const worker = await startWorker({ config, url, pool: rt.pool, logger, jobs: JOBS });
      const demo = flags['no-demo'] ? undefined : await startDemo(rt.pool, config, url, logger);
      const web = await startConsole(rt.pool, config, url, logger);
      io.stderr.write(
        [
          '',
          `tasker-lifecycle is running on ${rt.target}.${demo ? ' A demo workload creates tasks; some get stuck.' : ''}`,
          `Console (signed in with a fresh token, ${web.tokenName}, valid for a day):`,
          `  ${web.link}`,
          'In another terminal (same directory):',
          '  npm run cli -- status             jobs, investigations, staleness, archive',
          '  npm run cli -- dlq queue          pending investigations, most urgent first',
          '  npm run cli -- dlq show <uuid>    one investigation with its diagnosis',
          `  curl localhost:${worker.port ?? config.metrics.port}/readyz`,
          'Ctrl-C stops everything.',
          '',
        ].join('\n'),
      );
      await untilAborted(signal);
      await web.stop();
      await demo?.stop();
      await worker.stop();
    } finally {
      await runtime.close(); // the pool goes before the server it connects to
      await embedded?.stop();
    }
  },
};

async function createDatabaseIfMissing(adminUrl: string, name: string): Promise<void> {
  const admin = createPool(adminUrl, { max: 1 });
  try {
    const { rows } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (rows.length === 0) await admin.query(`CREATE DATABASE ${name}`); // a fixed identifier, not input
  } finally {
    await admin.end();
  }
}

/**
 * The web server (API and console) on web.host:web.port, and a fresh token with every permission
 * for this demo (expiring in a day, recorded in the audit log like any token). The link carries the
 * token in its fragment, which the browser keeps to itself: the sign-in page submits it.
 */
async function startConsole(pool: pg.Pool, config: Readonly<Config>, url: string, logger: Logger) {
  const boss = createBoss(config, url, 'client', logger);
  await startBoss(boss);
  const app = await buildServer({ pool, config, now: () => new Date(), logger, boss });
  await app.listen({ host: config.web.host, port: config.web.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : config.web.port;
  const now = new Date();
  const token = await createToken(pool, {
    name: `demo-${now.getTime().toString(36)}`,
    permissions: ['*'],
    expiresInDays: 1,
    actor: { kind: 'cli', name: 'npm start' },
    now,
  });
  const host = config.web.host === '0.0.0.0' || config.web.host === '::' ? '127.0.0.1' : config.web.host;
  return {
    tokenName: token.name,
    link: `http://${host.includes(':') ? `[${host}]` : host}:${port}/sign-in#token=${token.token}`,
    stop: async () => {
      await app.close();
      await boss.stop({ graceful: false });
    },
  };
}

/** The engine stand-in: a task every 2 s, moved along every 2 s; about one in six left stuck. */
async function startDemo(pool: pg.Pool, config: Readonly<Config>, url: string, logger: Logger) {
  const templates = await ensureDemoTemplates(pool);
  const pick = () => templates[Math.floor(Math.random() * templates.length)]!;
  const now = new Date();
  // History for archival (finished 40 days ago) and a few tasks already stuck for a while.
  await seedFinishedTasks(pool, pick().named_task_uuid, 200, 40);
  for (const state of ['waiting_for_retry', 'steps_in_process', 'waiting_for_dependencies']) {
    const id = await createDemoTask(
      pool,
      pick().named_task_uuid,
      state,
      new Date(now.getTime() - 20 * 60_000),
      5,
    );
    await markStuck(pool, id);
  }
  // One of each kind of trouble detection tells apart, so the first look shows what an
  // investigation explains: a step out of retries, a dependency cycle, steps no worker picked up.
  const byName = (name: string) => (templates.find((t) => t.name === name) ?? pick()).named_task_uuid;
  const troubles: Array<[DemoTrouble, string]> = [
    ['retries_exhausted', 'invoice_export'],
    ['dependency_cycle', 'order_fulfilment'],
    ['missing_worker', 'order_fulfilment'],
  ];
  for (const [trouble, template] of troubles) {
    await createTroubledDemoTask(pool, byName(template), trouble, new Date(now.getTime() - 20 * 60_000));
  }
  // Show detection and archival at once rather than at their next scheduled time.
  const boss = createBoss(config, url, 'client', logger);
  await boss.start();
  await sendRun(boss, detectStaleTasks, config, {});
  await sendRun(boss, archiveFinishedTasks, config, {});
  await boss.stop({ graceful: false });

  const next: Record<string, string> = {
    pending: 'initializing',
    initializing: 'enqueuing_steps',
    enqueuing_steps: 'steps_in_process',
    steps_in_process: 'evaluating_results',
    waiting_for_retry: 'enqueuing_steps',
    waiting_for_dependencies: 'evaluating_results',
  };
  const tick = async () => {
    await createDemoTask(pool, pick().named_task_uuid, 'pending', new Date());
    if (Math.random() < 0.02) {
      const [trouble] = troubles[Math.floor(Math.random() * troubles.length)]!;
      await createTroubledDemoTask(pool, pick().named_task_uuid, trouble, new Date());
    }
    for (const task of await movableDemoTasks(pool, 50)) {
      if (Math.random() < 0.03) {
        await markStuck(pool, task.task_uuid); // the engine "loses" it: detection will notice
        continue;
      }
      const to =
        task.state === 'evaluating_results'
          ? (['complete', 'complete', 'complete', 'waiting_for_retry', 'waiting_for_dependencies'][
              Math.floor(Math.random() * 5)
            ] ?? 'complete')
          : next[task.state];
      if (to) await transition(pool, task.task_uuid, task.state, to);
    }
  };
  let running = Promise.resolve();
  const timer = setInterval(() => {
    running = running.then(tick).catch((err: Error) => {
      logger.warn('demo workload step failed', { error: err.message });
    });
  }, 2000);
  logger.info('demo workload started', { templates: templates.map((t) => t.name) });
  return {
    stop: async () => {
      clearInterval(timer);
      await running;
    },
  };
}
