import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import archiveFinishedTasks from '../../jobs/archive-finished-tasks.ts';
import detectStaleTasks from '../../jobs/detect-stale-tasks.ts';
import type { Config } from '../config/schema.ts';
import { withTransaction } from '../db/pool.ts';
import { type Actor, insertAudit } from '../db/queries/audit.ts';
import { lockDeadLettered, markDeadLetterRetried } from '../db/queries/boss-jobs.ts';
import { NotFoundError, UsageError } from '../errors.ts';
import { type AnyJob, deadLetterQueue, RUN_KEY, type RunRequest } from '../worker/worker.ts';
import { ConflictError } from './errors.ts';

/**
 * The runs an operator hands to the workers, for the API, the console and the CLI (`enqueue`)
 * alike: queue an ad-hoc run with its own options, queue a dead-lettered run again. The pg-boss
 * send and the audit row are one transaction, so a queued run always has its record.
 */

/** The jobs an operator may queue a run of. */
export const ENQUEUEABLE_JOBS: Readonly<Record<string, AnyJob>> = {
  [detectStaleTasks.name]: detectStaleTasks,
  [archiveFinishedTasks.name]: archiveFinishedTasks,
};

/** pg-boss's send/complete inside our transaction: the same client runs its statements. */
function bossDb(client: pg.PoolClient) {
  return {
    executeSql: async (text: string, values?: unknown[]) => {
      const { rows } = await client.query(text, values as unknown[]);
      return { rows };
    },
  };
}

export interface EnqueueRunParams {
  /** detect-stale-tasks or archive-finished-tasks. */
  job: string;
  /** Only the options the operator gave: the worker fills in the rest from its configuration. */
  options: Record<string, unknown>;
  actor: Actor;
  now: Date;
}

export interface EnqueuedRun {
  job: string;
  job_id: string;
}

/**
 * Queues one ad-hoc run. The options are checked against the job's schema over this process's
 * configuration first (UsageError naming the option). ConflictError when a run is already waiting
 * (runs of a job never overlap and at most one waits).
 */
export async function enqueueRun(
  deps: { pool: pg.Pool; boss: PgBoss; config: Readonly<Config> },
  p: EnqueueRunParams,
): Promise<EnqueuedRun> {
  const job = ENQUEUEABLE_JOBS[p.job];
  if (!job)
    throw new NotFoundError(`no job ${p.job}: expected one of ${Object.keys(ENQUEUEABLE_JOBS).join(', ')}`);
  const checked = job.optionsSchema.safeParse({ ...job.optionsFromConfig(deps.config), ...p.options });
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw new UsageError(`options.${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'not allowed'}`);
  }
  return withTransaction(deps.pool, async (client) => {
    const data: RunRequest = { trigger: 'adhoc', options: p.options };
    const id = await deps.boss.send(job.name, data, { singletonKey: RUN_KEY, db: bossDb(client) });
    if (id === null) {
      throw new ConflictError(
        `a ${job.name} run is already waiting to start (runs of a job never overlap, and one waits at most); this request was not queued`,
        { job: job.name },
      );
    }
    await insertAudit(client, {
      at: p.now,
      actor: p.actor,
      action: 'job.enqueue',
      targetKind: 'job',
      targetId: id,
      before: null,
      after: { job: job.name, job_id: id, options: p.options },
    });
    return { job: job.name, job_id: id };
  });
}

export interface RetryDeadJobParams {
  /** The job whose dead-letter queue (<job>.failed) holds the run. */
  job: string;
  /** The dead-lettered copy's id in <job>.failed. */
  deadJobId: string;
  actor: Actor;
  now: Date;
}

export interface RetriedRun {
  job: string;
  dead_job_id: string;
  job_id: string;
}

/**
 * Queues a dead-lettered run again, with its original request, and marks its dead-letter copy
 * completed (output: retried_as). NotFoundError when the copy does not exist; ConflictError when it
 * was already retried, or when a run of the job is already waiting.
 */
export async function retryDeadJob(
  deps: { pool: pg.Pool; boss: PgBoss },
  p: RetryDeadJobParams,
): Promise<RetriedRun> {
  const job = Object.values(ENQUEUEABLE_JOBS).find((j) => j.name === p.job);
  if (!job)
    throw new NotFoundError(`no job ${p.job}: expected one of ${Object.keys(ENQUEUEABLE_JOBS).join(', ')}`);
  const queue = deadLetterQueue(job);
  return withTransaction(deps.pool, async (client) => {
    const dead = await lockDeadLettered(client, queue, p.deadJobId);
    if (!dead) throw new NotFoundError(`no dead-lettered run ${p.deadJobId} in ${queue}`);
    if (dead.state !== 'created') {
      throw new ConflictError(`dead-lettered run ${p.deadJobId} was already retried (it is ${dead.state})`, {
        dead_job_id: p.deadJobId,
        state: dead.state,
      });
    }
    const data = (dead.data ?? { trigger: 'adhoc' }) as RunRequest;
    const id = await deps.boss.send(job.name, data, { singletonKey: RUN_KEY, db: bossDb(client) });
    if (id === null) {
      throw new ConflictError(`a ${job.name} run is already waiting to start; retry this one after it`, {
        job: job.name,
      });
    }
    await markDeadLetterRetried(client, queue, p.deadJobId, { retried_as: id, retried_by: p.actor.name });
    await insertAudit(client, {
      at: p.now,
      actor: p.actor,
      action: 'job.retry',
      targetKind: 'job',
      targetId: p.deadJobId,
      before: { queue, state: dead.state, source_id: dead.source_id },
      after: { queue, state: 'completed', retried_as: id },
      details: { job: job.name, error: dead.error },
    });
    return { job: job.name, dead_job_id: p.deadJobId, job_id: id };
  });
}
