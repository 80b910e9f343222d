import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import archiveFinishedTasks from '../../jobs/archive-finished-tasks.ts';
import detectStaleTasks from '../../jobs/detect-stale-tasks.ts';
import type { Config } from '../config/schema.ts';
import type { Db } from '../db/pool.ts';
import { withTransaction } from '../db/pool.ts';
import { type Actor, insertAudit } from '../db/queries/audit.ts';
import { lockDeadLettered, markDeadLetterRetried } from '../db/queries/boss-jobs.ts';
import { requestExtras } from '../db/queries/run-request-extras.ts';
import { NotFoundError, UsageError } from '../errors.ts';
import {
  type AnyJob,
  deadLetterQueue,
  RUN_KEY,
  type RunRequest,
  sendRequest,
  withExtras,
} from '../worker/worker.ts';
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
  /**
   * A run that reaches max_batches with work left stops there instead of handing the rest on to
   * another run (which would carry on until the job's work is done).
   */
  thisRunOnly?: boolean | undefined;
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
  const job = Object.hasOwn(ENQUEUEABLE_JOBS, p.job) ? ENQUEUEABLE_JOBS[p.job] : undefined;
  if (!job)
    throw new NotFoundError(`no job ${p.job}: expected one of ${Object.keys(ENQUEUEABLE_JOBS).join(', ')}`);
  const checked = job.optionsSchema.safeParse({ ...job.optionsFromConfig(deps.config), ...p.options });
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw new UsageError(`options.${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'not allowed'}`);
  }
  return withTransaction(deps.pool, async (client) => {
    const data: RunRequest = {
      trigger: 'adhoc',
      options: p.options,
      ...(p.thisRunOnly ? { this_run_only: true } : {}),
    };
    // Extras (this_run_only) beside the job, in this transaction: see splitRequest.
    const id = await sendRequest(deps.boss, client, job, data, { singletonKey: RUN_KEY, db: bossDb(client) });
    if (id === null) {
      const waiting = await deps.boss.findJobs(job.name, { key: RUN_KEY, queued: true, limit: 1 });
      throw new ConflictError(
        `a ${job.name} run is already waiting to start${waiting[0] ? ` (run ${waiting[0].id})` : ''} (runs of a job never overlap, and one waits at most); this request was not queued`,
        { job: job.name, waiting_job_id: waiting[0]?.id ?? null },
      );
    }
    await insertAudit(client, {
      at: p.now,
      actor: p.actor,
      action: 'job.enqueue',
      targetKind: 'job',
      targetId: id,
      before: null,
      after: {
        job: job.name,
        job_id: id,
        options: p.options,
        ...(p.thisRunOnly ? { this_run_only: true } : {}),
      },
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
    const id = await sendRequest(deps.boss, client, job, data, { singletonKey: RUN_KEY, db: bossDb(client) });
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

// --- following and cancelling a run --------------------------------------------------------------

/** pg-boss's states of a job that has not finished: waiting (created, retry) or running (active). */
const UNFINISHED_STATES = new Set(['created', 'retry', 'active']);

/** One pg-boss job of a run: a run that stops early hands the rest on to the next link. */
export interface RunLink {
  id: string;
  /** created, retry, active, completed, cancelled, failed. */
  state: string;
  created_on: Date;
  started_on: Date | null;
  completed_on: Date | null;
  trigger: string | null;
  /** The request it carries: options, this_run_only, continues. */
  data: Record<string, unknown> | null;
  output: Record<string, unknown> | null;
}

/**
 * A run as the operator started it: the pg-boss job queued, and every job that carried on its work
 * (a run that stops early, at max_batches or on SIGTERM, hands the rest on to a new job, which says
 * `continues`; or merges it into the job already waiting). Oldest first.
 */
export interface RunChain {
  job: string;
  links: RunLink[];
  /** More links before the first shown (the walk stopped at its limit). */
  earlier_not_shown: boolean;
  /** The last link: the one running, waiting, or that ended the run. */
  head: RunLink;
  /** waiting, running, or how it ended (completed, cancelled, failed). */
  status: 'waiting' | 'running' | 'completed' | 'cancelled' | 'failed';
}

/** The most links a chain is walked over, each way. */
export const CHAIN_MAX_LINKS = 500;

function linkOf(j: {
  id: string;
  state: string;
  createdOn: Date;
  startedOn?: Date | null;
  completedOn?: Date | null;
  data: unknown;
  output?: unknown;
}): RunLink {
  const data = (j.data ?? {}) as { trigger?: unknown };
  return {
    id: j.id,
    state: j.state,
    created_on: j.createdOn,
    started_on: j.startedOn ?? null,
    completed_on: j.completedOn ?? null,
    trigger: typeof data.trigger === 'string' ? data.trigger : null,
    data: (j.data as Record<string, unknown> | null) ?? null,
    output: (j.output as Record<string, unknown> | null | undefined) ?? null,
  };
}

/** The next link after a job: who carries on its work, if anyone. */
function nextOf(link: RunLink): string | null {
  const o = link.output ?? {};
  const next =
    link.state === 'completed' ? o.handed_on_to : link.state === 'cancelled' ? o.merged_into : null;
  return typeof next === 'string' ? next : null;
}

/**
 * The chain a pg-boss job belongs to, through pg-boss's getJobById (one primary-key read per link,
 * at most CHAIN_MAX_LINKS each way). NotFoundError when pg-boss has no such job (never queued, or
 * deleted after its retention). With `db`, each link's data has the extras sent beside it put back
 * (this_run_only, detection's resume: see splitRequest), as its run sees it.
 */
export async function runChain(boss: PgBoss, jobName: string, id: string, db?: Db): Promise<RunChain> {
  const job = Object.values(ENQUEUEABLE_JOBS).find((j) => j.name === jobName);
  if (!job)
    throw new NotFoundError(`no job ${jobName}: expected one of ${Object.keys(ENQUEUEABLE_JOBS).join(', ')}`);
  const first = await boss.getJobById(job.name, id);
  if (!first) throw new NotFoundError(`no run ${id} of ${job.name} (pg-boss has no such job)`);
  const links = [linkOf(first)];
  // Back to the run the operator (or the schedule) started.
  let continues = (first.data as { continues?: unknown } | null)?.continues;
  let earlier = false;
  while (typeof continues === 'string') {
    if (links.length >= CHAIN_MAX_LINKS) {
      earlier = true;
      break;
    }
    const prev = await boss.getJobById(job.name, continues);
    if (!prev) {
      earlier = true; // deleted by pg-boss after its retention
      break;
    }
    links.unshift(linkOf(prev));
    continues = (prev.data as { continues?: unknown } | null)?.continues;
  }
  // On to the link that runs, waits, or ended it.
  for (let n = 0, next = nextOf(links.at(-1)!); next !== null && n < CHAIN_MAX_LINKS; n++) {
    if (links.some((l) => l.id === next)) break;
    const j = await boss.getJobById(job.name, next);
    if (!j) break;
    links.push(linkOf(j));
    next = nextOf(links.at(-1)!);
  }
  if (db) {
    const extras = await requestExtras(
      db,
      links.map((l) => l.id),
    );
    for (const link of links)
      if (extras.has(link.id))
        link.data = withExtras((link.data ?? {}) as RunRequest, extras.get(link.id)) as Record<
          string,
          unknown
        >;
  }
  const head = links.at(-1)!;
  const status =
    head.state === 'active'
      ? 'running'
      : head.state === 'created' || head.state === 'retry'
        ? 'waiting'
        : head.state === 'completed' || head.state === 'cancelled'
          ? head.state
          : 'failed';
  return { job: job.name, links, earlier_not_shown: earlier, head, status };
}

export interface CancelRunParams {
  job: string;
  /** Any pg-boss job of the run: the link that runs or waits now is the one cancelled. */
  id: string;
  actor: Actor;
  now: Date;
}

export interface CancelledRun {
  job: string;
  /** The job asked for. */
  requested_id: string;
  /** The link cancelled (waiting or running). */
  job_id: string;
  /** Its state before: created or retry (waiting), active (running). */
  previous_state: string;
  /** Jobs that already carried its work on, cancelled with it. */
  also_cancelled: string[];
  /** Links of the run, this one included. */
  links: number;
}

/**
 * Cancels a run that waits or runs: pg-boss's cancel of the link in flight (a running one stops
 * after the batch in hand: its worker's heartbeat finds the job cancelled and aborts the run, which
 * then hands nothing on), and of any job already queued to continue it, in one transaction with the
 * audit row (job.cancel). NotFoundError for an unknown run; ConflictError when it has finished.
 */
export async function cancelRun(
  deps: { pool: pg.Pool; boss: PgBoss },
  p: CancelRunParams,
): Promise<CancelledRun> {
  const chain = await runChain(deps.boss, p.job, p.id, deps.pool);
  const head = chain.head;
  if (!UNFINISHED_STATES.has(head.state)) {
    const when = head.completed_on ? ` at ${head.completed_on.toISOString()}` : '';
    throw new ConflictError(
      `run ${p.id} of ${chain.job} has already ended (${head.state}${when}); there is nothing to cancel`,
      { job: chain.job, job_id: head.id, state: head.state, completed_on: head.completed_on },
    );
  }
  return withTransaction(deps.pool, async (client) => {
    const db = bossDb(client);
    const cancelled = (await deps.boss.cancel(chain.job, head.id, { db })) as { affected?: number };
    if ((cancelled.affected ?? 0) !== 1) {
      const now = await deps.boss.getJobById(chain.job, head.id, { db });
      throw new ConflictError(
        `run ${head.id} of ${chain.job} ended while it was being cancelled (it is ${now?.state ?? 'gone'}); nothing was cancelled`,
        { job: chain.job, job_id: head.id, state: now?.state ?? null },
      );
    }
    // A run handing on as it was cancelled may have queued its continuation already.
    const followers = (
      await deps.boss.findJobs(chain.job, { data: { continues: head.id }, queued: true, limit: 10, db })
    ).map((j) => j.id);
    if (followers.length > 0) await deps.boss.cancel(chain.job, followers, { db });
    await insertAudit(client, {
      at: p.now,
      actor: p.actor,
      action: 'job.cancel',
      targetKind: 'job',
      targetId: head.id,
      before: { state: head.state },
      after: { state: 'cancelled' },
      details: {
        job: chain.job,
        requested_id: p.id,
        first_job_id: chain.links[0]!.id,
        links: chain.links.length,
        ...(followers.length > 0 ? { also_cancelled: followers } : {}),
      },
    });
    return {
      job: chain.job,
      requested_id: p.id,
      job_id: head.id,
      previous_state: head.state,
      also_cancelled: followers,
      links: chain.links.length,
    };
  });
}
