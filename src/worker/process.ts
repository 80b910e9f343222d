import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { type Config, connectionShares } from '../config/schema.ts';
import { sessionTimeouts } from '../db/pool.ts';
import { PGBOSS_SCHEMA_VERSION } from '../db/queries/boss-jobs.ts';
import { createReadRouter } from '../db/replica.ts';
import { ConfigError, NotMigratedError } from '../errors.ts';
import { checkInstall, reportInstallCheck } from '../install/index.ts';
import type { Logger } from '../telemetry/logger.ts';
import { createMetrics, cronIntervalSeconds } from '../telemetry/metrics.ts';
import { RunObserver } from '../telemetry/run-events.ts';
import { createBoss } from './boss.ts';
import { type HealthServer, startHealthServer } from './health.ts';
import { logRuns, recordRuns } from './observe.ts';
import { type Recovery, startRecovery } from './recovery.ts';
import { DEADLINE_MARGIN_MS, SHUTDOWN_MARGIN_MS } from './run-claim.ts';
import { type AnyJob, deadLetterQueue, MIN_RUN_MS, RUN_KEY, workQueues } from './worker.ts';

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
    if (/requires migrations/.test(message)) {
      const installed = await boss.schemaVersion().catch(() => null);
      if (installed !== null && installed > PGBOSS_SCHEMA_VERSION) {
        throw new NotMigratedError(
          `pg-boss could not start: the database's pg-boss schema is version ${installed}, newer than this build's pg-boss (schema ${PGBOSS_SCHEMA_VERSION}). This build is older than the database (a newer build ran migrate): deploy that build (docs/operating.md, "Upgrades")`,
        );
      }
      if (installed !== null && installed < PGBOSS_SCHEMA_VERSION) {
        throw new NotMigratedError(
          `pg-boss could not start: the database's pg-boss schema is version ${installed}, older than this build's pg-boss (schema ${PGBOSS_SCHEMA_VERSION}): run \`tasker-lifecycle migrate\` with this build (it upgrades pg-boss's schema: stop the old workers first, as workers of the previous build cannot start on the upgraded schema; docs/operating.md, "Upgrades")`,
        );
      }
    }
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

/**
 * What this worker's configuration cannot do, with the arithmetic: a run asked to stop must reach
 * a batch boundary before the shutdown timeout (else pg-boss fails it), a run must be able to do
 * at least one batch before its expiry, and the pool must have a connection for each job's batch
 * and one for recovery and run history (else a heartbeat, a recovery pass or a batch waits for a
 * connection and a live run looks lost).
 */
export function workerConfigProblems(config: Readonly<Config>, jobs: readonly AnyJob[]): string[] {
  const problems: string[] = [];
  const w = config.worker;
  for (const job of jobs) {
    const longest = job.longestBatchMs(job.optionsFromConfig(config));
    if (longest + SHUTDOWN_MARGIN_MS > w.shutdown_timeout_seconds * 1000) {
      problems.push(
        `worker.shutdown_timeout_seconds (${w.shutdown_timeout_seconds} s) is shorter than one batch of ${job.name} can take (${longest} ms) plus ${SHUTDOWN_MARGIN_MS} ms: a run asked to stop could not reach a batch boundary in time. Raise it to ${Math.ceil((longest + SHUTDOWN_MARGIN_MS) / 1000)} or lower the job's batch_statement_timeout_ms`,
      );
    }
    if (longest + DEADLINE_MARGIN_MS + MIN_RUN_MS > w.job_expire_seconds * 1000) {
      problems.push(
        `worker.job_expire_seconds (${w.job_expire_seconds} s) leaves no room for a run of ${job.name}: one batch can take ${longest} ms, and a run stops ${DEADLINE_MARGIN_MS} ms before its expiry. Raise it to ${Math.ceil((longest + DEADLINE_MARGIN_MS + MIN_RUN_MS) / 1000)} or lower the job's batch_statement_timeout_ms`,
      );
    }
  }
  const { pool } = connectionShares(config.database);
  if (pool < jobs.length + 1) {
    problems.push(
      `a worker's pool needs ${jobs.length + 1} connections (one per job it runs, one for recovery and run history); database.max_connections_per_process (${config.database.max_connections_per_process}) gives it ${pool}: raise max_connections_per_process (or pool_max)`,
    );
  }
  return problems;
}

export async function startWorker(o: StartWorkerOptions): Promise<RunningWorker> {
  const problems = workerConfigProblems(o.config, o.jobs);
  if (problems.length > 0) throw new ConfigError(problems);
  const observer = new RunObserver();
  // The gauges are read from the replica when one is set and fresh (one connection: the holder
  // reads them one after another); everything else of a worker writes or decides writes.
  const replica =
    o.config.database.replica_url === ''
      ? undefined
      : createReadRouter({
          primary: o.pool,
          replicaUrl: o.config.database.replica_url,
          maxLagSeconds: o.config.database.replica_max_lag_seconds,
          logger: o.logger,
          max: 1,
          applicationName: 'tasker-lifecycle-worker',
          timeouts: sessionTimeouts(o.config.database),
        });
  const metrics = o.config.metrics.enabled
    ? createMetrics(observer, o.pool, o.logger, {
        gaugeIntervalSeconds: o.config.metrics.gauges_interval_seconds,
        ...(replica ? { reader: replica.pool, replicaStatus: replica.status } : {}),
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
    await replica?.close();
    throw err;
  });
  // Recovery reads and writes pg-boss's tables directly (src/db/queries/boss-jobs.ts): only on the
  // schema it was written for. Off, loudly, on any other: runs of lost workers then wait for
  // pg-boss's own heartbeat and expiry checks, which use up a retry.
  const bossSchema = await boss.schemaVersion();
  const recoveryEnabled = bossSchema === PGBOSS_SCHEMA_VERSION;
  if (!recoveryEnabled) {
    o.logger.error(
      `recovery of lost runs is OFF: pg-boss's schema is version ${bossSchema}, and this build's queries on it were written for version ${PGBOSS_SCHEMA_VERSION} (src/db/queries/boss-jobs.ts)`,
      { pgboss_schema_version: bossSchema, expected: PGBOSS_SCHEMA_VERSION },
    );
  }
  metrics?.setRecoveryEnabled(recoveryEnabled);
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
    if (recoveryEnabled) {
      recovery = startRecovery({ config: o.config, pool: o.pool, logger: o.logger, observer, jobs: o.jobs });
      await recovery.pass();
    }
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
    await replica?.close();
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
        await replica?.close();
        o.logger.info('worker stopped');
      })();
      return stopping;
    },
  };
}
