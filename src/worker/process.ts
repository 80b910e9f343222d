import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import type { Config } from '../config/schema.ts';
import { NotMigratedError } from '../errors.ts';
import { checkInstall, reportInstallCheck } from '../install/index.ts';
import type { Logger } from '../telemetry/logger.ts';
import { createMetrics, cronIntervalSeconds } from '../telemetry/metrics.ts';
import { RunObserver } from '../telemetry/run-events.ts';
import { createBoss } from './boss.ts';
import { type HealthServer, startHealthServer } from './health.ts';
import { logRuns, recordRuns } from './observe.ts';
import { type Recovery, startRecovery } from './recovery.ts';
import { type AnyJob, deadLetterQueue, RUN_KEY, workQueues } from './worker.ts';

/**
 * A worker process's life: start pg-boss, check that the database has what this build needs
 * (src/install: it writes nothing shared, and logs every queue setting, schedule or setting that
 * differs from its configuration), work the queues, serve /healthz and /readyz; and on stop, stop
 * taking work, let running jobs finish their current batch (they see the abort between batches),
 * and close everything.
 */

export interface StartWorkerOptions {
  config: Readonly<Config>;
  url: string;
  pool: pg.Pool;
  logger: Logger;
  jobs: readonly AnyJob[];
}

export interface RunningWorker {
  /** The port /healthz and /readyz listen on (null when metrics.enabled is false). */
  port: number | null;
  observer: RunObserver;
  stop(): Promise<void>;
}

/**
 * Starts pg-boss. A schema that is missing or too old is reported as "run migrate first"; any other
 * failure (too many clients, a refused connection, a wrong password) with its own cause.
 */
export async function startBoss(boss: PgBoss): Promise<void> {
  try {
    await boss.start();
  } catch (err) {
    const message = (err as Error).message;
    if (/pg-boss is not installed|requires migrations/.test(message)) {
      throw new NotMigratedError(
        `pg-boss could not start (${message}): run \`tasker-lifecycle migrate\` first`,
      );
    }
    throw new Error(`pg-boss could not start: ${message}`, { cause: err });
  }
}

async function installedSchedules(boss: PgBoss, jobs: readonly AnyJob[]): Promise<Record<string, string>> {
  const schedules = await boss.getSchedules().catch(() => []);
  return Object.fromEntries(
    jobs.map((j) => [j.name, schedules.find((s) => s.name === j.name && s.key === RUN_KEY)?.cron ?? 'off']),
  );
}

export async function startWorker(o: StartWorkerOptions): Promise<RunningWorker> {
  const observer = new RunObserver();
  const metrics = o.config.metrics.enabled
    ? createMetrics(observer, o.pool, o.logger, {
        jobs: o.jobs.map((j) => j.name),
        scheduleIntervals: Object.fromEntries(
          o.jobs.map((j) => [j.name, cronIntervalSeconds(j.schedule(o.config))]),
        ),
      })
    : undefined;
  if (metrics) observer.tracer = metrics.tracer;
  const boss = createBoss(o.config, o.url, 'worker', o.logger, metrics?.meterProvider);
  metrics?.watchQueues(
    boss,
    o.jobs.map((j) => j.name),
    (job) => deadLetterQueue({ name: job }),
  );
  await startBoss(boss).catch(async (err) => {
    await metrics?.shutdown();
    throw err;
  });
  logRuns(observer, o.logger);
  const history = recordRuns(observer, o.pool, o.config.worker.run_history_days, o.logger);
  const shutdown = new AbortController();
  const state = {
    stopping: false,
    started: false,
    checkDatabase: async () => {
      await o.pool.query('SELECT 1');
    },
    ...(metrics ? { metrics: metrics.handleScrape } : {}),
  };
  let health: HealthServer | undefined;
  let recovery: Recovery | undefined;
  try {
    if (o.config.metrics.enabled)
      health = await startHealthServer(o.config.metrics.host, o.config.metrics.port, state);
    reportInstallCheck(
      await checkInstall({ pool: o.pool, config: o.config, jobs: o.jobs, boss }),
      o.logger,
      'worker',
    );
    // Runs of lost workers are requeued before this worker takes work, so it can resume them.
    recovery = startRecovery({ config: o.config, pool: o.pool, logger: o.logger, observer, jobs: o.jobs });
    await recovery.pass();
    await workQueues({
      config: o.config,
      pool: o.pool,
      boss,
      logger: o.logger,
      observer,
      jobs: o.jobs,
      shutdown: shutdown.signal,
    });
  } catch (err) {
    await recovery?.stop();
    await health?.close();
    await boss.stop({ graceful: false });
    await metrics?.shutdown();
    throw err;
  }
  state.started = true;
  o.logger.info('worker started', {
    jobs: o.jobs.map((j) => j.name),
    // The schedules in force: pg-boss's (src/install writes them), whatever this configuration says.
    schedules: await installedSchedules(boss, o.jobs),
    http_port: health?.port ?? null,
  });

  let stopping: Promise<void> | undefined;
  return {
    port: health?.port ?? null,
    observer,
    stop: () => {
      stopping ??= (async () => {
        state.stopping = true;
        o.logger.info('worker stopping: finishing the current batch of running jobs', {
          timeout_seconds: o.config.worker.shutdown_timeout_seconds,
        });
        shutdown.abort();
        await boss.stop({
          graceful: true,
          close: true,
          timeout: o.config.worker.shutdown_timeout_seconds * 1000,
        });
        await recovery?.stop();
        await history.flush();
        await health?.close();
        await metrics?.shutdown();
        o.logger.info('worker stopped');
      })();
      return stopping;
    },
  };
}
