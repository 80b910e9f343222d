import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import type pg from 'pg';
import { finishRun, insertRun, pruneRuns } from '../db/queries/job-runs.ts';
import type { Logger } from '../telemetry/logger.ts';

/**
 * Every run of every job, observed from one place. observeRun wraps a job's run() and emits
 * `start`, then `end` (duration and counts) or `failure` (duration and cause). Logs, run history
 * and metrics are subscribers; a subscriber can never break the run it observes.
 */

export type RunTrigger = 'schedule' | 'adhoc' | 'event' | 'cli';

export interface RunStart {
  run_id: string;
  job: string;
  trigger: RunTrigger;
  /** pg-boss job id, for runs that came through a queue. */
  pgboss_job_id: string | null;
  worker: string;
  started_at: Date;
  options: unknown;
}

export interface RunEnd extends RunStart {
  duration_ms: number;
  /** How many things the run changed (the job's workDone). */
  work_done: number;
  /** The run's result without its lists (see countsOf). */
  counts: Record<string, unknown>;
  /** The run's whole result, for subscribers that need its lists (metrics by state). */
  result: unknown;
}

export interface RunFailure extends RunStart {
  duration_ms: number;
  error: Error;
}

type RunEvents = { start: [RunStart]; end: [RunEnd]; failure: [RunFailure] };

export class RunObserver extends EventEmitter<RunEvents> {}

/** Emits without letting a throwing subscriber reach the run. */
function safeEmit<K extends keyof RunEvents>(observer: RunObserver, event: K, ...args: RunEvents[K]): void {
  try {
    (observer.emit as (e: K, ...a: RunEvents[K]) => boolean)(event, ...args);
  } catch {
    // A subscriber (log line, history row, metric) failing must not fail the job it watches.
  }
}

export const WORKER_NAME = `${hostname()}:${process.pid}`;

export interface RunDescription {
  job: string;
  /** The job's measure of work done, applied to the result. */
  workDone?: (result: never) => number;
  trigger: RunTrigger;
  options: unknown;
  pgbossJobId?: string | null;
}

export async function observeRun<R>(
  observer: RunObserver,
  d: RunDescription,
  run: () => Promise<R>,
): Promise<R> {
  const start: RunStart = {
    run_id: randomUUID(),
    job: d.job,
    trigger: d.trigger,
    pgboss_job_id: d.pgbossJobId ?? null,
    worker: WORKER_NAME,
    started_at: new Date(),
    options: d.options,
  };
  const t0 = performance.now();
  safeEmit(observer, 'start', start);
  try {
    const result = await run();
    safeEmit(observer, 'end', {
      ...start,
      duration_ms: Math.round(performance.now() - t0),
      work_done: d.workDone ? d.workDone(result as never) : 0,
      counts: countsOf(result),
      result,
    });
    return result;
  } catch (thrown) {
    const error = thrown instanceof Error ? thrown : new Error(String(thrown));
    safeEmit(observer, 'failure', { ...start, duration_ms: Math.round(performance.now() - t0), error });
    throw error;
  }
}

/**
 * A run's result reduced to what logs, history and pg-boss output should hold: numbers, flags and
 * small maps; lists (such as the tasks a detection pass acted on) are replaced by their length.
 */
export function countsOf(result: unknown): Record<string, unknown> {
  if (typeof result !== 'object' || result === null) return { result };
  return Object.fromEntries(
    Object.entries(result).map(([k, v]) => (Array.isArray(v) ? [`${k}_count`, v.length] : [k, v])),
  );
}

/** Info when a run did something, debug when it found nothing, error when it failed. */
export function logRuns(observer: RunObserver, logger: Logger): void {
  observer.on('start', (r) =>
    logger.debug(`${r.job}: run started`, { job: r.job, run_id: r.run_id, trigger: r.trigger }),
  );
  observer.on('end', (r) => {
    logger.log(r.work_done > 0 ? 'info' : 'debug', `${r.job}: run finished`, {
      job: r.job,
      run_id: r.run_id,
      trigger: r.trigger,
      duration_ms: r.duration_ms,
      ...r.counts,
    });
  });
  observer.on('failure', (r) =>
    logger.error(`${r.job}: run failed: ${r.error.message}`, {
      job: r.job,
      run_id: r.run_id,
      trigger: r.trigger,
      duration_ms: r.duration_ms,
      error: r.error.message,
      stack: r.error.stack,
    }),
  );
}

/**
 * Writes each run to tasker_job_runs (row at start, completed at the end) and prunes runs older
 * than historyDays, a bounded batch per run. Writes for one run are chained so the update never
 * overtakes the insert; flush() waits for all of them (at shutdown).
 */
export function recordRuns(observer: RunObserver, pool: pg.Pool, historyDays: number, logger: Logger) {
  const pending = new Map<string, Promise<void>>();
  const chain = (runId: string, write: () => Promise<unknown>) => {
    const next = (pending.get(runId) ?? Promise.resolve())
      .then(write)
      .then(() => undefined)
      .catch((err: Error) => {
        logger.warn('could not record job run history', { run_id: runId, error: err.message });
      });
    pending.set(runId, next);
    return next;
  };
  observer.on('start', (r) =>
    chain(r.run_id, () =>
      insertRun(pool, {
        run_id: r.run_id,
        job_name: r.job,
        trigger: r.trigger,
        pgboss_job_id: r.pgboss_job_id,
        worker: r.worker,
        started_at: r.started_at,
        options: r.options,
      }),
    ),
  );
  const finish = (
    r: RunStart,
    outcome: 'completed' | 'failed',
    duration: number,
    counts: unknown,
    error: string | null,
  ) =>
    chain(r.run_id, async () => {
      await finishRun(pool, {
        run_id: r.run_id,
        finished_at: new Date(),
        outcome,
        duration_ms: duration,
        counts,
        error,
      });
      await pruneRuns(pool, r.job, new Date(Date.now() - historyDays * 86_400_000));
    }).finally(() => pending.delete(r.run_id));
  observer.on('end', (r) => void finish(r, 'completed', r.duration_ms, r.counts, null));
  observer.on('failure', (r) => void finish(r, 'failed', r.duration_ms, null, r.error.message));
  return {
    flush: async () => {
      await Promise.all(pending.values());
    },
  };
}
