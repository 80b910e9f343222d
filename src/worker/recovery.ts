import type pg from 'pg';
import type { Config } from '../config/schema.ts';
import { findLostRuns, requeueRun } from '../db/queries/boss-jobs.ts';
import { settleOrphanedRuns, unfinishedRunsOf } from '../db/queries/job-runs.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { RunObserver } from '../telemetry/run-events.ts';
import { observeLostRun } from './observe.ts';
import { type AnyJob, RunRequest } from './worker.ts';

/**
 * Runs whose worker was lost. Every worker, at start and every worker.recovery_interval_seconds,
 * looks for active runs whose heartbeat is worker.heartbeat_seconds old (pg-boss's own check comes
 * at twice that, every worker.monitor_interval_seconds, and is only a backstop), and for each:
 *
 * - requeues it at once (requeueRun: into `retry`, else `created`, else merged into the run already
 *   waiting), without using up a retry: an interruption is not a failure of the run. After
 *   MAX_FREE_INTERRUPTIONS interruptions of one request, further ones count as failures, so a run
 *   that kills its worker every time still ends in the dead-letter queue;
 * - records it as interrupted (outcome `interrupted` in tasker_job_runs, a warn log line, the
 *   tasker_job_runs_total{outcome="interrupted"} metric), through the run observer.
 *
 * It also settles run history rows left unfinished whose pg-boss job is no longer active (their
 * worker could not write the end, e.g. the database was away for longer than its retries).
 * Safe in any number of workers at once: each requeue locks the job row (and the queue's slots).
 */

export const MAX_FREE_INTERRUPTIONS = 5;

export interface Recovery {
  /** One pass now (also what the timer runs). */
  pass(): Promise<void>;
  stop(): Promise<void>;
}

export interface RecoveryDeps {
  config: Readonly<Config>;
  pool: pg.Pool;
  logger: Logger;
  observer: RunObserver;
  jobs: readonly AnyJob[];
}

export function startRecovery(deps: RecoveryDeps): Recovery {
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> = Promise.resolve();
  let stopped = false;
  const pass = () => {
    inFlight = inFlight
      .then(() => recoverLostRuns(deps))
      .catch((err: Error) => {
        deps.logger.warn('recovery pass failed; the next one tries again', { error: err.message });
      });
    return inFlight;
  };
  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(() => {
      void pass().then(() => schedule(deps.config.worker.recovery_interval_seconds * 1000));
    }, ms);
    timer.unref();
  };
  // Jittered first pass, so that workers started together do not all look at once.
  schedule(Math.random() * deps.config.worker.recovery_interval_seconds * 1000);
  return {
    pass,
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      await inFlight;
    },
  };
}

export async function recoverLostRuns(deps: RecoveryDeps): Promise<void> {
  const w = deps.config.worker;
  const queues = deps.jobs.map((j) => j.name);
  for (const lost of await findLostRuns(deps.pool, queues, w.heartbeat_seconds)) {
    const request = RunRequest.safeParse(lost.data);
    const data: Record<string, unknown> = { ...(lost.data ?? {}) };
    const interruptions = (request.success ? (request.data.interruptions ?? 0) : 0) + 1;
    data.interruptions = interruptions;
    const why = `its worker sent no heartbeat for ${w.heartbeat_seconds} s (lost: killed, or cut off from the database)`;
    const outcome = await requeueRun(deps.pool, {
      name: lost.name,
      id: lost.id,
      retryCount: lost.retry_count,
      delaySeconds: 0,
      extendLimit: interruptions <= MAX_FREE_INTERRUPTIONS,
      data,
      output: { message: `interrupted: ${why}`, interrupted: true, interruptions },
    });
    if (outcome.placed === 'gone') continue; // settled or requeued meanwhile
    const placed =
      outcome.placed === 'merged'
        ? `merged into the waiting run ${outcome.into}`
        : outcome.placed === 'exhausted'
          ? 'no retries left: pg-boss fails it for good'
          : `requeued (${outcome.placed}) to resume at once`;
    for (const row of await unfinishedRunsOf(deps.pool, lost.id)) {
      observeLostRun(deps.observer, { ...row, job: row.job_name }, `${why}; ${placed}`);
    }
  }
  // A row's own worker tries its end for about a minute; after that, nothing else will write it.
  const orphaned =
    'its end was never recorded (its worker was lost or could not reach the database), and its pg-boss job is no longer active';
  for (const row of await settleOrphanedRuns(deps.pool, Math.max(120, 4 * w.heartbeat_seconds), orphaned)) {
    observeLostRun(deps.observer, { ...row, job: row.job_name }, orphaned);
  }
}
