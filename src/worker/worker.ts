import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import type pg from 'pg';
import type { JobWithMetadata, PgBoss, SendOptions } from 'pg-boss';
import { z } from 'zod';
import type { Config } from '../config/schema.ts';
import type { Db } from '../db/pool.ts';
import { bossJobState, requeueRun, waitingRun } from '../db/queries/boss-jobs.ts';
import {
  deleteRequestExtras,
  type RequestExtras,
  requestExtras,
  saveRequestExtras,
} from '../db/queries/run-request-extras.ts';
import { databaseNow } from '../db/queries/server.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { RunObserver } from '../telemetry/run-events.ts';
import type { JobDefinition } from './job.ts';
import { countsOf, observeRun, RunInterruption, RunRejection } from './observe.ts';
import { DEADLINE_MARGIN_MS, describePlacement, interruptionOf, RunClaim } from './run-claim.ts';

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
 * - A run that fails is retried with exponential backoff (worker.retry_delay_seconds doubling, up
 *   to worker.retry_delay_max_seconds) and dead-lettered after worker.retry_limit retries. A failure
 *   whose retry slot is taken (another run of the job already waits to retry: pg-boss would
 *   dead-letter it at once) is requeued by us into the waiting slot instead (requeueRun).
 * - A run whose worker was lost (SIGKILL) is requeued by any worker's recovery pass
 *   (recovery.ts) once its heartbeat is worker.heartbeat_seconds old, without using up a retry.
 * - A run that stops early (SIGTERM between batches, or max_batches with work left) hands the rest
 *   on: the same request is queued again at once, for another worker. Not when the request says
 *   this_run_only (for max_batches), nor when the run's own job was cancelled (its claim is gone).
 */

export const RUN_KEY = 'run';

/** What a queued request carries. Options are validated again by the job's schema at run time. */
export const RunRequest = z.strictObject({
  trigger: z.enum(['schedule', 'adhoc', 'event']),
  options: z.record(z.string(), z.unknown()).optional(),
  /** The pg-boss job this run continues (it stopped early and handed the rest on). */
  continues: z.string().optional(),
  /** Times this request's runs were interrupted by a lost worker (set by the recovery pass). */
  interruptions: z.int().min(1).optional(),
  /** A run that reaches max_batches with work left stops there: the rest is not handed on. */
  this_run_only: z.boolean().optional(),
});
export type RunRequest = z.infer<typeof RunRequest>;

/**
 * A request as the previous release's workers accept it, and the rest: their request and option
 * schemas are strict, so a field or option they do not know (this_run_only; a job's
 * optionsSentAsExtras, e.g. detection's resume) would make them refuse the request and
 * dead-letter it. Every request this build sends keeps its pg-boss data in their format and puts
 * the rest beside it (tasker_run_request_extras, keyed by the job's id), where this build's workers
 * read it back and theirs never look (they run it as their release would).
 */
export function splitRequest(
  job: Pick<AnyJob, 'optionsSentAsExtras'>,
  request: RunRequest,
): { data: RunRequest; extras: RequestExtras | null } {
  const { this_run_only, options, ...rest } = request;
  const extraKeys = new Set(job.optionsSentAsExtras ?? []);
  const kept: Record<string, unknown> = {};
  const moved: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options ?? {})) (extraKeys.has(key) ? moved : kept)[key] = value;
  const extras: RequestExtras = {
    ...(Object.keys(moved).length > 0 ? { options: moved } : {}),
    ...(this_run_only ? { this_run_only: true } : {}),
  };
  return {
    data: { ...rest, ...(options ? { options: kept } : {}) },
    extras: Object.keys(extras).length > 0 ? extras : null,
  };
}

/** A request with the extras sent beside it put back (the inverse of splitRequest). */
export function withExtras(request: RunRequest, extras: RequestExtras | undefined): RunRequest {
  if (!extras) return request;
  return {
    ...request,
    ...(extras.options ? { options: { ...request.options, ...extras.options } } : {}),
    ...(extras.this_run_only ? { this_run_only: true } : {}),
  };
}

/**
 * Sends a request the way every worker of this or the previous release can take it
 * (splitRequest): its extras first, under the id the job will have, then the job. `db` writes the
 * extras: the sending transaction's client, with `bossDb` the same transaction for pg-boss, makes
 * both one commit. Returns the job's id, or null when pg-boss dropped it (a run already waits).
 */
export async function sendRequest(
  boss: PgBoss,
  db: Db,
  job: AnyJob,
  request: RunRequest,
  options: { singletonKey: string; db?: SendOptions['db'] },
): Promise<string | null> {
  const { data, extras } = splitRequest(job, request);
  if (!extras) return boss.send(job.name, data, options);
  const id = randomUUID();
  await saveRequestExtras(db, { pgbossJobId: id, jobName: job.name, extras });
  const sent = await boss.send(job.name, data, { ...options, id });
  if (sent === null) await deleteRequestExtras(db, id);
  return sent;
}

export function deadLetterQueue(job: { name: string }): string {
  return `${job.name}.failed`;
}

// biome-ignore lint/suspicious/noExplicitAny: the registry holds jobs of every option and result type
export type AnyJob = JobDefinition<any, any>;

/**
 * How often a running job's heartbeat is written: three times per the smallest
 * worker.heartbeat_seconds there can be (10 s), whatever this worker's configuration says. A run
 * is taken for lost by the threshold its job row carries (what `migrate` installed), so during a
 * rolling change of heartbeat_seconds an old worker still heartbeats often enough for the new
 * threshold. At most one run per job is active at a time, so this costs a few writes a second in
 * all, however many workers there are.
 */
export const HEARTBEAT_REFRESH_SECONDS = 10 / 3;

/** A run whose expiry leaves less room than this after its longest batch and margin is refused. */
export const MIN_RUN_MS = 5_000;

/** Delay before retry n (0-based) of a failed run, as pg-boss computes it (plans.js failJobsBody). */
export function retryDelaySeconds(
  config: Readonly<Config>,
  retryCount: number,
  random = Math.random(),
): number {
  const w = config.worker;
  const exp = 2 ** Math.min(16, retryCount + 1) / 2;
  return Math.min(w.retry_delay_max_seconds, Math.max(w.retry_delay_seconds, 1) * (exp + exp * random));
}

export interface SendResult {
  /** null when a run of the job is already waiting (the request was dropped). */
  id: string | null;
}

/**
 * Queues an ad-hoc run. `options` are only those the operator gave; the worker that runs it fills
 * in the rest from its own configuration. They are checked here against the job's schema over this
 * process's configuration, so a bad value is refused before it is queued.
 */
export async function sendRun(
  boss: PgBoss,
  job: AnyJob,
  config: Readonly<Config>,
  options: Record<string, unknown>,
  key = RUN_KEY,
): Promise<SendResult> {
  job.optionsSchema.parse({ ...job.optionsFromConfig(config), ...options });
  const data: RunRequest = { trigger: 'adhoc', options };
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
        includeMetadata: true,
        // Each request in a batch is settled on its own: all get the run's counts as output, and a
        // refused one goes straight to dead letters instead of being retried to the same refusal.
        perJobResults: true,
        pollingIntervalSeconds: deps.config.worker.polling_interval_seconds,
        heartbeatRefreshSeconds: HEARTBEAT_REFRESH_SECONDS,
      },
      // includeMetadata: true above: each request comes with its times (startedOn, createdOn).
      (requests) => runRequests(deps, job, byName, requests as JobWithMetadata<RunRequest>[]),
    );
  }
}

/**
 * One run of a job for the requests pg-boss handed over: validated, observed (start, batches, end,
 * failure, interruption), held by a RunClaim (its commit fence, its deadline, giving the run back
 * in time), followed up, and settled per request.
 */
async function runRequests(
  deps: WorkerDeps,
  job: AnyJob,
  byName: Map<string, AnyJob>,
  requests: readonly JobWithMetadata<RunRequest>[],
) {
  // Validation happens inside the observed run: a request or options that fail it give a run with
  // outcome "rejected" (log line, history row, metrics), and are dead-lettered without retries
  // (the same options would be refused again).
  let parsed: RunRequest[] = [];
  let options: unknown;
  let rejection: RunRejection | null = null;
  const first = requests[0]!;
  const expiresInMs = expiresIn(first);
  // What this build sent beside each request (splitRequest). When they cannot be read (the
  // database away), the run stops before it starts, as an interruption (given back, no retry used),
  // and the request is never rejected for it.
  let extras = new Map<string, RequestExtras>();
  let extrasUnread: Error | null = null;
  try {
    extras = await requestExtras(
      deps.pool,
      requests.map((r) => r.id),
    );
  } catch (err) {
    extrasUnread = err as Error;
  }
  try {
    parsed = requests.map((r) => withExtras(RunRequest.parse(r.data), extras.get(r.id)));
    const optionsList = parsed.map((p) =>
      job.optionsSchema.parse({ ...job.optionsFromConfig(deps.config), ...p.options }),
    );
    options = job.batch ? job.batch.merge(optionsList) : optionsList[0];
    const room = expiresInMs - job.longestBatchMs(options) - DEADLINE_MARGIN_MS;
    if (room < MIN_RUN_MS) {
      throw new Error(
        `one batch can take ${job.longestBatchMs(options)} ms, and the run must stop ${DEADLINE_MARGIN_MS} ms before its expiry in ${Math.round(expiresInMs / 1000)} s (worker.job_expire_seconds): lower the batch timeout or raise job_expire_seconds`,
      );
    }
  } catch (err) {
    rejection = new RunRejection(err as Error);
  }
  const claim = new RunClaim({
    pool: deps.pool,
    logger: deps.logger,
    attempts: requests.map((r) => ({ name: job.name, id: r.id, retryCount: r.retryCount })),
    data: requests.map((r) => (r.data ?? {}) as Record<string, unknown>),
    shutdown: deps.shutdown,
    claimSignals: requests.map((r) => r.signal),
    expiresInMs,
    longestBatchMs: rejection ? 0 : job.longestBatchMs(options),
    shutdownTimeoutMs: deps.config.worker.shutdown_timeout_seconds * 1000,
    requeueTimeoutMs: deps.config.database.lock_timeout_ms,
  });
  // Follow-ups are sent per batch, so a run that fails later still sends those of its committed
  // batches; they are awaited before the run is settled.
  const followUps: Promise<void>[] = [];
  let batchesReported = false;
  let result: Record<string, unknown>;
  try {
    result = await observeRun(
      deps.observer,
      {
        job: job.name,
        workDone: job.workDone,
        trigger: triggerOf(first.data),
        // As validated; as sent when they were refused.
        options: rejection ? ((first.data as { options?: unknown } | null)?.options ?? {}) : options,
        pgbossJobId: first.id,
        attempt: first.retryCount + 1,
        waitSeconds: waitSeconds(first),
        interruptedBy: (r: { handed_on_to?: string | null }) => {
          if (job.stoppedEarly?.(r, options)?.reason !== 'aborted') return null;
          if (claim.lost && claim.cancelled)
            return {
              reason: 'cancelled',
              detail:
                'its run was cancelled: it stopped after the batch in hand, and the rest was not handed on',
            };
          if (claim.lost)
            return {
              reason: 'taken_over',
              detail:
                'its run was taken over (requeued after its worker was taken for lost: paused, or cut off); it stopped between batches, committed nothing more, and was not handed on',
            };
          if (claim.surrendered)
            return {
              reason: claim.surrendered.reason,
              detail: `it gave its run back: ${describePlacement(claim.surrendered.outcome)}`,
            };
          if (claim.deadlineReached) return null; // handed on before its expiry, like max_batches
          return {
            reason: 'shutdown',
            detail: `stopped between batches; the rest ${r.handed_on_to ? `was handed on to ${r.handed_on_to}` : 'waits for the next run'}`,
          };
        },
      },
      async (progress) => {
        if (rejection) throw rejection;
        const onBatch = (batch: unknown) => {
          batchesReported = true;
          progress(batch);
          followUps.push(
            sendFollowUps(deps, job, batch, byName).catch((err: Error) => {
              deps.logger.warn(`${job.name}: could not queue follow-ups of a batch`, { error: err.message });
            }),
          );
        };
        let r: Record<string, unknown>;
        try {
          if (extrasUnread) throw extrasUnread;
          r = await job.run(
            {
              pool: deps.pool,
              now: await databaseNow(deps.pool),
              logger: deps.logger,
              signal: claim.signal,
              progress: onBatch,
              commitFence: claim.fence,
            },
            options,
          );
        } catch (err) {
          const interruption = interruptionOf(err, claim);
          if (interruption?.reason === 'taken_over') {
            // Taken from it by an operator's cancel rather than by another worker: say so.
            claim.cancelled = (await bossJobState(deps.pool, job.name, first.id))?.state === 'cancelled';
            if (claim.cancelled)
              throw new RunInterruption(
                'cancelled',
                'its run was cancelled: the batch in flight was rolled back, and the rest was not handed on',
                err,
              );
          }
          throw interruption ?? err;
        }
        // A run that lost or gave back its claim hands nothing on: its run is someone else's, or
        // was cancelled.
        if (claim.lost)
          claim.cancelled = (await bossJobState(deps.pool, job.name, first.id))?.state === 'cancelled';
        if (claim.lost || claim.surrendered || job.batch) return r;
        const early = job.stoppedEarly?.(r, options) ?? null;
        if (!early?.handOn) return r;
        // A run asked to do this much only stops here.
        if (early.reason === 'max_batches' && parsed[0]!.this_run_only) return r;
        return { ...r, handed_on_to: await handOn(deps, job, first, parsed[0]!, early.resume) };
      },
    );
  } catch (err) {
    await Promise.all(followUps);
    if (err instanceof RunRejection) {
      const output = { rejected: err.message };
      return requests.map((r) => ({ id: r.id, status: 'deadletter' as const, output }));
    }
    if (err instanceof RunInterruption) {
      // The database away or no connection: give the run back (it resumes at once, no retry used).
      // When even that cannot reach the database, pg-boss's fail cannot either, and another
      // worker's recovery requeues the run once its heartbeat is old.
      if (!claim.lost && !claim.surrendered) await claim.surrender(err.reason);
      claim.dispose();
      if (!claim.lost && !claim.surrendered) throw err;
      // Settling is fenced to this attempt by pg-boss: with the run requeued or taken, nothing changes.
      const output = { interrupted: err.reason, message: err.message };
      return requests.map((r) => ({ id: r.id, status: 'completed' as const, output }));
    }
    claim.dispose();
    if (!job.batch && (await requeueOnConflict(deps, job, first, parsed[0]!, err as Error))) {
      return [
        {
          id: first.id,
          status: 'completed' as const,
          output: { failed: (err as Error).message, requeued: true },
        },
      ];
    }
    throw err;
  }
  claim.dispose();
  await Promise.all(followUps);
  if (!batchesReported) await sendFollowUps(deps, job, result, byName);
  const output = countsOf(result);
  return requests.map((r) => ({ id: r.id, status: 'completed' as const, output }));
}

/** Milliseconds until pg-boss would fail this job as expired (its start + expire_seconds). */
function expiresIn(job: { expireInSeconds: number; startedOn?: Date }): number {
  const started = job.startedOn?.getTime() ?? Date.now();
  return started + job.expireInSeconds * 1000 - Date.now();
}

/** The trigger a request says it has, read before validation (a malformed one counts as ad hoc). */
function triggerOf(data: unknown): RunRequest['trigger'] {
  const trigger = (data as { trigger?: unknown } | null)?.trigger;
  return trigger === 'schedule' || trigger === 'event' ? trigger : 'adhoc';
}

/** How long a request waited in its queue from when it could start until a worker took it. */
function waitSeconds(job: { createdOn?: Date; startAfter?: Date; startedOn?: Date }): number | null {
  if (!job.startedOn || !job.createdOn) return null;
  const ready = Math.max(job.createdOn.getTime(), job.startAfter?.getTime() ?? 0);
  return Math.max(0, (job.startedOn.getTime() - ready) / 1000);
}

/**
 * Queues the rest of a run that stopped early: the same request again (with the job's `resume`
 * options, when it gives some), at once, for any worker.
 * When a run of the job already waits with the same options, that run does the rest (merged into
 * it); when the waiting one has other options, this run's own job is requeued instead (into the
 * free retry slot, or in place of a waiting scheduled tick), so that nothing an operator asked for
 * is folded into a request that differs. Returns the id of the run that continues, or null if none
 * could be queued (logged).
 */
async function handOn(
  deps: WorkerDeps,
  job: AnyJob,
  from: { id: string; retryCount: number },
  request: RunRequest,
  resume?: Record<string, unknown>,
): Promise<string | null> {
  // The rest goes on where this run stopped: the request's options plus where it stood.
  const options = resume ? { ...request.options, ...resume } : request.options;
  const data: RunRequest = {
    trigger: request.trigger,
    ...(options ? { options } : {}),
    ...(request.this_run_only ? { this_run_only: true } : {}),
    continues: from.id,
  };
  try {
    const id = await sendRequest(deps.boss, deps.pool, job, data, { singletonKey: RUN_KEY });
    if (id) {
      // Cancelled while it handed on: the rest is cancelled too (the operator's cancel also cancels
      // what continues a run it finds; between the two, neither can miss the other).
      if ((await deps.boss.getJobById(job.name, from.id))?.state === 'cancelled') {
        await deps.boss.cancel(job.name, id);
        return null;
      }
      return id;
    }
    const waiting = await waitingRun(deps.pool, job.name, RUN_KEY);
    if (waiting) {
      const waitingExtras = (await requestExtras(deps.pool, [waiting.id])).get(waiting.id);
      if (sameOptions(withExtras((waiting.data ?? {}) as RunRequest, waitingExtras), data)) return waiting.id;
    }
    // This run's own job carries the rest: its extras are the rest's.
    const { data: requeued, extras } = splitRequest(job, { ...data, continues: undefined });
    if (extras) await saveRequestExtras(deps.pool, { pgbossJobId: from.id, jobName: job.name, extras });
    else await deleteRequestExtras(deps.pool, from.id);
    const outcome = await requeueRun(deps.pool, {
      name: job.name,
      id: from.id,
      retryCount: from.retryCount,
      delaySeconds: 0,
      extendLimit: true,
      data: requeued,
      output: { message: 'stopped early; the rest continues as this job' },
      timeoutMs: deps.config.database.lock_timeout_ms,
    });
    if (outcome.placed === 'retry' || outcome.placed === 'created' || outcome.placed === 'replaced')
      return from.id;
    if (outcome.placed === 'merged') return outcome.into;
    deps.logger.warn(`${job.name}: the rest of run ${from.id} could not be handed on (${outcome.placed})`, {
      job: job.name,
      pgboss_job_id: from.id,
      ...outcome,
    });
    return null;
  } catch (err) {
    deps.logger.warn(`${job.name}: could not hand the rest of run ${from.id} on`, {
      error: (err as Error).message,
    });
    return null;
  }
}

/** Whether a waiting request asks for the same run as this one (its options, as sent). */
function sameOptions(waiting: RunRequest, request: RunRequest): boolean {
  return isDeepStrictEqual(waiting.options ?? {}, request.options ?? {});
}

/**
 * A run failed for a reason of its own while another run of the job waits in `retry`: pg-boss's
 * fail would find the retry slot taken and dead-letter this run at once, whatever its retry count.
 * It is requeued by us instead, with the same backoff, into the free waiting slot (or merged into
 * the waiting run). True when that was done (the run is settled); false: pg-boss fails it as usual.
 */
async function requeueOnConflict(
  deps: WorkerDeps,
  job: AnyJob,
  request: { id: string; retryCount: number; data: unknown },
  parsed: RunRequest,
  error: Error,
): Promise<boolean> {
  try {
    const outcome = await requeueRun(deps.pool, {
      name: job.name,
      id: request.id,
      retryCount: request.retryCount,
      delaySeconds: retryDelaySeconds(deps.config, request.retryCount),
      extendLimit: false,
      // In the previous release's format: the extras stay recorded under this same job's id.
      data: splitRequest(job, parsed).data,
      output: { message: error.message },
      onlyIfRetryTaken: true,
      timeoutMs: deps.config.database.lock_timeout_ms,
    });
    if (
      outcome.placed === 'retry_free' ||
      outcome.placed === 'exhausted' ||
      outcome.placed === 'gone' ||
      outcome.placed === 'alive'
    )
      return false;
    deps.logger.warn(`${job.name}: failed run requeued beside the run already waiting to retry`, {
      job: job.name,
      pgboss_job_id: request.id,
      placed: outcome.placed,
      ...(outcome.placed === 'merged' ? { merged_into: outcome.into } : {}),
    });
    return true;
  } catch (err) {
    deps.logger.warn(`${job.name}: could not check the retry slot of run ${request.id}`, {
      error: (err as Error).message,
    });
    return false;
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
