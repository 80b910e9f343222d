import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { z } from 'zod';
import type { Config } from '../config/schema.ts';
import { databaseNow } from '../db/queries/server.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { JobDefinition } from './job.ts';
import { countsOf, observeRun, type RunObserver } from './observe.ts';

/**
 * The pg-boss side of the jobs: one queue per job (and a dead-letter queue `<job>.failed` for runs
 * that exhaust their retries), its schedule, and the handler that turns a queued request into one
 * observed run. Any number of worker processes can run this side by side:
 *
 * - Runs of a job never overlap: its queue has the `stately` policy and every run request the key
 *   "run", so at most one run is active and at most one waits (a scheduled tick or an ad-hoc
 *   request that arrives while one is already waiting is dropped: pg-boss's send returns null).
 * - Jobs that declare `batch` (enrichment) take an `exclusive` queue instead: requests are keyed
 *   (by DLQ entry; the sweep by "run"), a key is queued or active at most once, and up to
 *   batch.size requests are served by one run.
 * - pg-boss evaluates each schedule once per minute across all workers.
 * - A run that fails is retried with exponential backoff; a run whose worker died (SIGKILL) misses
 *   its heartbeat and is failed and retried by pg-boss's monitor, on whichever worker fetches it.
 */

export const RUN_KEY = 'run';

/** What a queued request carries. Options are validated again by the job's schema at run time. */
export const RunRequest = z.strictObject({
  trigger: z.enum(['schedule', 'adhoc', 'event']),
  options: z.record(z.string(), z.unknown()).optional(),
});
export type RunRequest = z.infer<typeof RunRequest>;

export function deadLetterQueue(job: { name: string }): string {
  return `${job.name}.failed`;
}

// biome-ignore lint/suspicious/noExplicitAny: the registry holds jobs of every option and result type
export type AnyJob = JobDefinition<any, any>;

/** Creates each job's queue and dead-letter queue (idempotent) and applies the retry settings. */
export async function ensureQueues(
  boss: PgBoss,
  config: Readonly<Config>,
  jobs: readonly AnyJob[],
): Promise<void> {
  const w = config.worker;
  const settings = {
    retryLimit: w.retry_limit,
    retryDelay: w.retry_delay_seconds,
    retryBackoff: true,
    retryDelayMax: 600,
    expireInSeconds: w.job_expire_seconds,
    heartbeatSeconds: w.heartbeat_seconds,
  };
  for (const job of jobs) {
    await boss.createQueue(deadLetterQueue(job), { policy: 'standard' });
    await boss.createQueue(job.name, {
      policy: job.batch ? 'exclusive' : 'stately',
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

export interface SendResult {
  /** null when a run of the job is already waiting (the request was dropped). */
  id: string | null;
}

/** Queues an ad-hoc run with its own options (validated here, before it reaches any worker). */
export async function sendRun(
  boss: PgBoss,
  job: AnyJob,
  options: unknown,
  key = RUN_KEY,
): Promise<SendResult> {
  const validated = job.optionsSchema.parse(options) as Record<string, unknown>;
  const data: RunRequest = { trigger: 'adhoc', options: validated };
  return { id: await boss.send(job.name, data, { singletonKey: key }) };
}

export interface WorkerDeps {
  config: Readonly<Config>;
  pool: pg.Pool;
  boss: PgBoss;
  logger: Logger;
  observer: RunObserver;
  jobs: readonly AnyJob[];
  /** Aborted when the process is asked to stop; running jobs see it between batches. */
  shutdown: AbortSignal;
}

/** Subscribes a handler per job queue. */
export async function workQueues(deps: WorkerDeps): Promise<void> {
  const byName = new Map(deps.jobs.map((j) => [j.name, j]));
  for (const job of deps.jobs) {
    await deps.boss.work<RunRequest>(
      job.name,
      {
        batchSize: job.batch?.size ?? 1,
        pollingIntervalSeconds: deps.config.worker.polling_interval_seconds,
      },
      async (requests) => {
        const parsed = requests.map((r) => RunRequest.parse(r.data));
        const optionsList = parsed.map((p) =>
          job.optionsSchema.parse({ ...job.optionsFromConfig(deps.config), ...p.options }),
        );
        const options = job.batch ? job.batch.merge(optionsList) : optionsList[0];
        const signal = AbortSignal.any([deps.shutdown, ...requests.map((r) => r.signal)]);
        const result = await observeRun(
          deps.observer,
          {
            job: job.name,
            workDone: job.workDone,
            trigger: parsed[0]!.trigger,
            options,
            pgbossJobId: requests[0]!.id,
          },
          async () =>
            job.run(
              { pool: deps.pool, now: await databaseNow(deps.pool), logger: deps.logger, signal },
              options,
            ),
        );
        await sendFollowUps(deps, job, result, byName);
        return countsOf(result);
      },
    );
  }
}

async function sendFollowUps(
  deps: WorkerDeps,
  job: AnyJob,
  result: unknown,
  byName: Map<string, AnyJob>,
): Promise<void> {
  const byTarget = new Map<AnyJob, { data: RunRequest; singletonKey: string }[]>();
  for (const followUp of job.followUps?.(result) ?? []) {
    const target = byName.get(followUp.job);
    if (!target) continue; // not run by this process; its sweeper catches up
    // Checked against the full schema now, sent as given: the run merges it over its own config.
    target.optionsSchema.parse({ ...target.optionsFromConfig(deps.config), ...(followUp.options as object) });
    const data: RunRequest = { trigger: 'event', options: followUp.options as Record<string, unknown> };
    byTarget.set(target, [...(byTarget.get(target) ?? []), { data, singletonKey: followUp.key }]);
  }
  for (const [target, requests] of byTarget) {
    try {
      // One statement for all of them; a key already queued or running is skipped (ON CONFLICT).
      await deps.boss.insert(target.name, requests);
    } catch (err) {
      // The run itself succeeded; lost follow-ups are picked up by the target's sweeper.
      deps.logger.warn(`${job.name}: could not queue ${requests.length} ${target.name} request(s)`, {
        error: (err as Error).message,
      });
    }
  }
}
