import type pg from 'pg';
import type { Config } from '../config/schema.ts';
import { activeJobIds, findLostRuns, requeueRun } from '../db/queries/boss-jobs.ts';
import { settleOrphanedRuns, unfinishedBossRuns, unfinishedRunsOf } from '../db/queries/job-runs.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { RunObserver } from '../telemetry/run-events.ts';
import { observeLostRun } from './observe.ts';
import { describePlacement } from './run-claim.ts';
import { type AnyJob, RunRequest } from './worker.ts';

/**
 * Runs whose worker was lost. Every worker, at start and every worker.recovery_interval_seconds,
 * looks for active runs whose heartbeat is older than the run's own threshold (half the heartbeat
 * setting its pg-boss job was queued with: worker.heartbeat_seconds as `migrate` installed it;
 * pg-boss's own check comes at the full setting, every worker.monitor_interval_seconds, and is only
 * a backstop), and for each:
 *
 * - requeues it at once (requeueRun: into `retry`, else `created`, else into an identical request
 *   already waiting), without using up a retry: an interruption is not a failure of the run. The
 *   heartbeat is looked at again under the row's lock, so a worker that heartbeat since the first
 *   look keeps its run. After MAX_FREE_INTERRUPTIONS interruptions of one request, further ones
 *   count as failures, so a run that kills its worker every time still ends in the dead-letter
 *   queue;
 * - records it as interrupted (outcome `interrupted` in tasker_job_runs, a warn log line, the
 *   tasker_job_runs_total{outcome="interrupted"} metric), through the run observer.
 *
 * It also settles run history rows left unfinished whose pg-boss job is no longer active (their
 * worker could not write the end, e.g. the database was away for longer than its retries).
 * Safe in any number of workers at once: each requeue locks the job row (and the queue's slots).
 * Every statement has a lock and statement timeout (database.lock_timeout_ms), so a held row makes
 * a pass fail fast (the next one tries again) and a pass never holds up the worker's stop.
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
  for (const lost of await findLostRuns(deps.pool, queues)) {
    const request = RunRequest.safeParse(lost.data);
    const data: Record<string, unknown> = { ...(lost.data ?? {}) };
    const interruptions = (request.success ? (request.data.interruptions ?? 0) : 0) + 1;
    data.interruptions = interruptions;
    const why = `its worker sent no heartbeat for ${lost.lost_after_seconds} s (lost: killed, paused, or cut off from the database)`;
    const outcome = await requeueRun(deps.pool, {
      name: lost.name,
      id: lost.id,
      retryCount: lost.retry_count,
      delaySeconds: 0,
      extendLimit: interruptions <= MAX_FREE_INTERRUPTIONS,
      data,
      output: { message: `interrupted: ${why}`, interrupted: true, interruptions },
      onlyIfHeartbeatOlderThanSeconds: lost.lost_after_seconds,
      timeoutMs: deps.config.database.lock_timeout_ms,
    });
    if (outcome.placed === 'gone' || outcome.placed === 'alive') continue; // settled, taken, or heartbeat since
    if (outcome.placed === 'dropped') {
      deps.logger.warn(`${lost.name}: interrupted run ${lost.id} could not be requeued: send it again`, {
        job: lost.name,
        pgboss_job_id: lost.id,
        waiting: outcome.waiting,
        request: lost.data,
      });
    }
    for (const row of await unfinishedRunsOf(deps.pool, lost.id)) {
      observeLostRun(deps.observer, { ...row, job: row.job_name }, `${why}; ${describePlacement(outcome)}`);
    }
  }
  // A row's own worker tries its end for about a minute; after that, nothing else will write it.
  const orphaned =
    'its end was never recorded (its worker was lost or could not reach the database), and its pg-boss job is no longer active';
  const unfinished = await unfinishedBossRuns(deps.pool, Math.max(120, 4 * w.heartbeat_seconds));
  const active = await activeJobIds(
    deps.pool,
    unfinished.map((r) => ({ name: r.job_name, id: r.pgboss_job_id })),
  );
  const ended = unfinished.filter((r) => !active.has(r.pgboss_job_id)).map((r) => r.run_id);
  for (const row of await settleOrphanedRuns(deps.pool, ended, orphaned)) {
    observeLostRun(deps.observer, { ...row, job: row.job_name }, orphaned);
  }
}
