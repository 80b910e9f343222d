import type { PgBoss } from 'pg-boss';
import type { Config } from '../config/schema.ts';
import type { Db } from '../db/pool.ts';
import { installedSchemaVersion, liveInstances, PGBOSS_SCHEMA_VERSION } from '../db/queries/boss-jobs.ts';
import { UsageError } from '../errors.ts';
import type { Logger } from '../telemetry/logger.ts';
import { createBoss } from '../worker/boss.ts';
import { type AnyJob, deadLetterQueue, RUN_KEY, type RunRequest } from '../worker/worker.ts';

/**
 * pg-boss's side of installing: its schema (under its own advisory lock, safe in parallel), one
 * queue per job with its policy and retry settings plus a dead-letter queue `<job>.failed`, and
 * each job's schedule. All of it is shared by every worker, so only `migrate` writes it, from its
 * configuration; workers and `web` read it back and report what differs from theirs.
 */

/** The policy a job's queue has: `stately` (one run active, one waiting), `exclusive` for batches. */
export function queuePolicy(job: AnyJob): 'stately' | 'exclusive' {
  return job.batch ? 'exclusive' : 'stately';
}

/** The retry, expiry and heartbeat settings of every job queue. */
export function queueSettings(config: Readonly<Config>) {
  const w = config.worker;
  return {
    retryLimit: w.retry_limit,
    retryDelay: w.retry_delay_seconds,
    retryBackoff: true,
    retryDelayMax: w.retry_delay_max_seconds,
    expireInSeconds: w.job_expire_seconds,
    // pg-boss fails a run with a missed heartbeat itself only as a backstop, at twice our threshold:
    // the recovery pass requeues it first, without the dead-letter conflict and the used-up retry.
    heartbeatSeconds: 2 * w.heartbeat_seconds,
  };
}

/** The flag that lets `migrate` upgrade pg-boss's schema while workers of another build are alive. */
export const UPGRADE_PGBOSS_SCHEMA_FLAG = '--upgrade-pgboss-schema';

/**
 * `migrate` would upgrade pg-boss's schema while workers of another build are alive (refused, with
 * nothing changed). pg-boss runs only on its own schema version, so every worker alive on the older
 * schema is of an older build, and once the schema is upgraded none of them can start again: the
 * upgrade is a stop-the-world step. Exit 2: the fix is in front of the operator.
 */
export class PgBossUpgradeRefusedError extends UsageError {
  override name = 'PgBossUpgradeRefusedError';
}

/**
 * Before `migrate` changes anything: when this build's pg-boss would upgrade the installed schema,
 * refuses while any worker is alive (named, from pg-boss's instance registry), unless `allowed` (the operator's
 * --upgrade-pgboss-schema). Returns the upgrade it lets through ({from, to}), or null when pg-boss's
 * schema is absent (a first install) or already this build's.
 */
export async function checkPgBossSchemaUpgrade(
  db: Db,
  allowed: boolean,
): Promise<{ from: number; to: number } | null> {
  const installed = await installedSchemaVersion(db);
  if (installed === null || installed >= PGBOSS_SCHEMA_VERSION) return null;
  const upgrade = { from: installed, to: PGBOSS_SCHEMA_VERSION };
  if (allowed) return upgrade;
  const live = await liveInstances(db);
  if (live !== null && live.length === 0) return upgrade;
  const who =
    live === null
      ? "pg-boss's schema has no instance registry, so which workers are alive cannot be read"
      : `workers alive on it: ${live
          .map(
            (i) =>
              `${i.host}:${i.pid} (pg-boss ${i.version}, started ${i.started_on.toISOString()}, last heartbeat ${i.heartbeat_on.toISOString()})`,
          )
          .join('; ')}`;
  throw new PgBossUpgradeRefusedError(
    `migrate refuses to upgrade pg-boss's schema from version ${installed} to ${PGBOSS_SCHEMA_VERSION} (this build's pg-boss) while workers of another build may run: ${who}. ` +
      `pg-boss starts only on its own schema version, so once it is upgraded none of them can start again (a worker that restarts refuses to start): this upgrade is a stop-the-world step. ` +
      `Stop those workers first (SIGTERM; a worker killed without stopping counts as alive until it misses 3 heartbeats), then run migrate again, then start this build's workers; ` +
      `or run migrate ${UPGRADE_PGBOSS_SCHEMA_FLAG} to upgrade now anyway. Nothing was changed (docs/operating.md, "Upgrades").`,
  );
}

/** Installs or upgrades pg-boss's schema, then the queues and schedules; returns the schema version. */
export async function installPgBoss(
  config: Readonly<Config>,
  url: string,
  logger: Logger,
  jobs: readonly AnyJob[],
): Promise<number | null> {
  const boss = createBoss(config, url, 'migrate', logger);
  await boss.start();
  try {
    await createQueues(boss, config, jobs);
    await applySchedules(boss, config, jobs, logger);
    return await boss.schemaVersion();
  } finally {
    await boss.stop({ graceful: false });
  }
}

/** Creates each job's queue and dead-letter queue (idempotent) and applies the retry settings. */
export async function createQueues(boss: PgBoss, config: Readonly<Config>, jobs: readonly AnyJob[]) {
  const settings = queueSettings(config);
  for (const job of jobs) {
    await boss.createQueue(deadLetterQueue(job), { policy: 'standard' });
    await boss.createQueue(job.name, {
      policy: queuePolicy(job),
      deadLetter: deadLetterQueue(job),
      ...settings,
    });
    await boss.updateQueue(job.name, settings);
  }
}

/** Upserts each job's schedule from the configuration, or removes it when the job is disabled. */
export async function applySchedules(
  boss: PgBoss,
  config: Readonly<Config>,
  jobs: readonly AnyJob[],
  logger: Logger,
): Promise<void> {
  for (const job of jobs) {
    const cron = job.schedule(config);
    if (cron === null) {
      await boss.unschedule(job.name, RUN_KEY);
      logger.info(`${job.name}: not scheduled (disabled in configuration)`, { job: job.name });
      continue;
    }
    const data: RunRequest = { trigger: 'schedule' };
    await boss.schedule(job.name, cron, data, { key: RUN_KEY, tz: 'UTC', singletonKey: RUN_KEY });
    logger.debug(`${job.name}: scheduled`, { job: job.name, cron });
  }
}

export interface PgBossDifferences {
  /** What a worker cannot run without: a queue missing, or with another policy or dead-letter queue. */
  missing: string[];
  /** Settings and schedules that differ from this configuration (the database's are in force). */
  differences: string[];
}

/** The queues and schedules in the database against what `migrate` with this configuration writes. */
export async function pgBossDifferences(
  boss: PgBoss,
  config: Readonly<Config>,
  jobs: readonly AnyJob[],
): Promise<PgBossDifferences> {
  const missing: string[] = [];
  const differences: string[] = [];
  const wanted = queueSettings(config);
  for (const job of jobs) {
    const queue = await boss.getQueue(job.name);
    if (!queue) {
      missing.push(`queue ${job.name} does not exist`);
      continue;
    }
    if (!(await boss.getQueue(deadLetterQueue(job))))
      missing.push(`queue ${deadLetterQueue(job)} (dead letters of ${job.name}) does not exist`);
    if (queue.policy !== queuePolicy(job))
      missing.push(
        `queue ${job.name} has policy ${queue.policy}; this build needs ${queuePolicy(job)} (pg-boss cannot change a queue's policy: delete the queue, which drops its jobs, then run migrate)`,
      );
    if (queue.deadLetter !== deadLetterQueue(job))
      missing.push(
        `queue ${job.name} dead-letters to ${queue.deadLetter ?? 'nothing'}; this build needs ${deadLetterQueue(job)}`,
      );
    for (const [key, value] of Object.entries(wanted)) {
      const have = (queue as unknown as Record<string, unknown>)[key];
      if (have !== value)
        differences.push(
          `queue ${job.name} ${key}: the database has ${have}, this configuration says ${value}`,
        );
    }
    const cron = job.schedule(config);
    const schedule = await boss.getSchedule(job.name, RUN_KEY);
    if ((schedule?.cron ?? null) !== cron)
      differences.push(
        `schedule of ${job.name}: the database has ${schedule ? `"${schedule.cron}"` : 'none'}, this configuration says ${cron === null ? 'none' : `"${cron}"`}`,
      );
  }
  return { missing, differences };
}
