import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { SpanStatusCode } from '@opentelemetry/api';
import type pg from 'pg';
import { z } from 'zod';
import { finishRun, insertRun, pruneRuns, updateRunCounts } from '../db/queries/job-runs.ts';
import { pruneRequestExtras } from '../db/queries/run-request-extras.ts';
import type { Logger } from '../telemetry/logger.ts';
import type {
  InterruptReason,
  RunEvents,
  RunObserver,
  RunStart,
  RunTrigger,
} from '../telemetry/run-events.ts';
import { SERVICE_VERSION } from '../telemetry/service.ts';

/**
 * Every run of every job, observed from one place. observeRun wraps a job's run() and emits
 * `start`, then `end` (duration and counts) or `failure` (duration and cause). Logs, run history
 * and metrics are subscribers; a subscriber can never break the run it observes.
 */

// The observer and its events are defined in telemetry (metrics subscribes to them without
// importing the worker); the worker's modules take the observer from here, with what drives it.

/** Thrown inside a run (before it does anything) when its request or options are invalid. */
export class RunRejection extends Error {
  override name = 'RunRejection';
  readonly reason: Error;
  constructor(reason: Error) {
    super(describeRejection(reason), { cause: reason });
    this.reason = reason;
  }
}

/**
 * Thrown out of a run that stopped without finishing through no fault of its own (its claim gone,
 * the database away, no connection in time): recorded as interrupted, with the counts of the
 * batches it committed, never as failed.
 */
export class RunInterruption extends Error {
  override name = 'RunInterruption';
  readonly reason: InterruptReason;
  constructor(reason: InterruptReason, detail: string, cause?: unknown) {
    super(detail, { cause });
    this.reason = reason;
  }
}

/** A validation failure as one line naming each refused field: `batch_size: Too small: …`. */
function describeRejection(reason: Error): string {
  if (!(reason instanceof z.ZodError)) return reason.message;
  return reason.issues.map((i) => `${i.path.length ? i.path.join('.') : 'request'}: ${i.message}`).join('; ');
}

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
  /** pg-boss retryCount + 1. */
  attempt?: number | null;
  /** Seconds the request waited in its queue once it could start. */
  waitSeconds?: number | null;
  /** Says, from the result, whether the run stopped early without finishing (interrupted, not completed), and why. */
  interruptedBy?: (result: never) => { reason: InterruptReason; detail: string } | null;
}

export async function observeRun<R>(
  observer: RunObserver,
  d: RunDescription,
  run: (progress: (batch: unknown) => void) => Promise<R>,
): Promise<R> {
  const start: RunStart = {
    run_id: randomUUID(),
    job: d.job,
    trigger: d.trigger,
    pgboss_job_id: d.pgbossJobId ?? null,
    attempt: d.attempt ?? null,
    wait_seconds: d.waitSeconds ?? null,
    worker: WORKER_NAME,
    started_at: new Date(),
    options: d.options,
  };
  return observer.tracer.startActiveSpan(
    `run ${d.job}`,
    {
      attributes: {
        'tasker.job': d.job,
        'tasker.run_id': start.run_id,
        'tasker.trigger': d.trigger,
        ...(start.pgboss_job_id ? { 'messaging.message.id': start.pgboss_job_id } : {}),
        ...(start.attempt ? { 'tasker.attempt': start.attempt } : {}),
      },
    },
    async (span) => {
      try {
        const result = await observeStarted(observer, d, start, run);
        span.setAttribute('tasker.outcome', 'completed');
        return result;
      } catch (err) {
        span.setAttribute(
          'tasker.outcome',
          err instanceof RunRejection
            ? 'rejected'
            : err instanceof RunInterruption
              ? 'interrupted'
              : 'failed',
        );
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
        throw err;
      } finally {
        span.end();
      }
    },
  );
}

async function observeStarted<R>(
  observer: RunObserver,
  d: RunDescription,
  start: RunStart,
  run: (progress: (batch: unknown) => void) => Promise<R>,
): Promise<R> {
  const t0 = performance.now();
  safeEmit(observer, 'start', start);
  let totals: Record<string, number> | null = null;
  const progress = (batch: unknown) => {
    const counts = countsOf(batch);
    const sums: Record<string, number> = { ...(totals ?? {}) };
    for (const [k, v] of Object.entries(counts)) if (typeof v === 'number') sums[k] = (sums[k] ?? 0) + v;
    totals = sums;
    safeEmit(observer, 'batch', {
      ...start,
      result: batch,
      counts,
      totals: { ...sums },
      work_done: d.workDone ? safely(() => Number(d.workDone!(batch as never)) || 0, 0) : 0,
    });
  };
  try {
    const result = await run(progress);
    const duration_ms = Math.round(performance.now() - t0);
    const interruptedBy = d.interruptedBy?.(result as never) ?? null;
    if (interruptedBy !== null) {
      safeEmit(observer, 'interrupted', {
        ...start,
        reason: interruptedBy.reason,
        duration_ms,
        counts: countsOf(result),
        result,
        detail: interruptedBy.detail,
      });
      return result;
    }
    safeEmit(observer, 'end', {
      ...start,
      duration_ms,
      work_done: d.workDone ? d.workDone(result as never) : 0,
      counts: countsOf(result),
      result,
      batches_reported: totals !== null,
    });
    return result;
  } catch (thrown) {
    if (thrown instanceof RunInterruption) {
      safeEmit(observer, 'interrupted', {
        ...start,
        reason: thrown.reason,
        duration_ms: Math.round(performance.now() - t0),
        counts: totals,
        result: null,
        detail: thrown.message,
      });
      throw thrown;
    }
    if (thrown instanceof RunRejection) {
      safeEmit(observer, 'rejected', {
        ...start,
        duration_ms: Math.round(performance.now() - t0),
        error: thrown.reason,
      });
      throw thrown;
    }
    const error = thrown instanceof Error ? thrown : new Error(String(thrown));
    safeEmit(observer, 'failure', {
      ...start,
      duration_ms: Math.round(performance.now() - t0),
      error,
      counts: totals,
    });
    throw error;
  }
}

function safely<T>(f: () => T, fallback: T): T {
  try {
    return f();
  } catch {
    return fallback; // a partial result a job's measure cannot read counts nothing
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

/**
 * Tells the observer about a run whose worker was lost: its history row (written by that worker at
 * the start) is the only record of it, so the run is described from that row.
 */
export function observeLostRun(
  observer: RunObserver,
  run: Omit<RunStart, 'trigger' | 'attempt' | 'wait_seconds'> & { trigger: string },
  detail: string,
): void {
  safeEmit(observer, 'interrupted', {
    ...run,
    attempt: null,
    wait_seconds: null,
    trigger: run.trigger as RunTrigger,
    reason: 'worker_lost',
    duration_ms: null,
    counts: null,
    result: null,
    detail,
  });
}

/** The fixed envelope of every run log line; the job's own counts go under `counts`. */
export function runEnvelope(
  r: RunStart,
  outcome: 'started' | 'completed' | 'failed' | 'interrupted' | 'rejected',
  durationMs: number | null,
  counts: Record<string, unknown> | null,
) {
  return {
    job: r.job,
    run_id: r.run_id,
    pgboss_job_id: r.pgboss_job_id,
    attempt: r.attempt,
    trigger: r.trigger,
    outcome,
    duration_ms: durationMs,
    worker: r.worker,
    pid: process.pid,
    version: SERVICE_VERSION,
    counts,
  };
}

/**
 * One log line per run event, each with the fixed envelope (runEnvelope): info when a run did
 * something, debug when it found nothing, warn when interrupted or rejected, error when it failed.
 */
export function logRuns(observer: RunObserver, logger: Logger): void {
  observer.on('start', (r) => logger.debug(`${r.job}: run started`, runEnvelope(r, 'started', null, null)));
  observer.on('end', (r) => {
    logger.log(
      r.work_done > 0 ? 'info' : 'debug',
      `${r.job}: run finished`,
      runEnvelope(r, 'completed', r.duration_ms, r.counts),
    );
  });
  observer.on('interrupted', (r) =>
    logger.warn(`${r.job}: run interrupted (${r.reason}): ${r.detail}`, {
      ...runEnvelope(r, 'interrupted', r.duration_ms, r.counts),
      reason: r.reason,
    }),
  );
  observer.on('failure', (r) =>
    logger.error(`${r.job}: run failed: ${r.error.message}`, {
      ...runEnvelope(r, 'failed', r.duration_ms, r.counts),
      error: r.error.message,
      stack: r.error.stack,
    }),
  );
  observer.on('rejected', (r) =>
    logger.warn(`${r.job}: run rejected: ${r.error.message}`, {
      ...runEnvelope(r, 'rejected', r.duration_ms, null),
      error: r.error.message,
    }),
  );
}

/** Delays between attempts at a history write while the database is away (about a minute in all). */
export const HISTORY_RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000, 15000, 30000];

/**
 * Writes each run to tasker_job_runs (row at start, its outcome at the end) and prunes runs older
 * than historyDays, a bounded batch per run. Writes for one run are chained so the update never
 * overtakes the insert; a write that fails (connections cut, database restarting) is tried again
 * for about a minute, so a run's end is recorded once the database is back. flush() waits for all
 * of them (at shutdown). A row whose end could still not be written is settled by a worker's
 * recovery pass (src/worker/recovery.ts).
 */
export function recordRuns(
  observer: RunObserver,
  pool: pg.Pool,
  historyDays: number,
  logger: Logger,
  retryDelaysMs: readonly number[] = HISTORY_RETRY_DELAYS_MS,
) {
  const pending = new Map<string, Promise<void>>();
  const persistently = async (runId: string, write: () => Promise<unknown>) => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await write();
      } catch (err) {
        const delay = retryDelaysMs[attempt];
        if (delay === undefined) throw err;
        logger.debug('job run history write failed; trying again', {
          run_id: runId,
          error: (err as Error).message,
          retry_in_ms: delay,
        });
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  };
  const chain = (runId: string, write: () => Promise<unknown>) => {
    const next = (pending.get(runId) ?? Promise.resolve())
      .then(() => persistently(runId, write))
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
    outcome: 'completed' | 'failed' | 'interrupted' | 'rejected',
    duration: number | null,
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
        // Another process settles a lost run's row only if nothing else has (a late real end wins).
        onlyIfUnfinished: outcome === 'interrupted' && duration === null,
      });
      const before = new Date(Date.now() - historyDays * 86_400_000);
      await pruneRuns(pool, r.job, before);
      await pruneRequestExtras(pool, before);
    }).finally(() => pending.delete(r.run_id));
  observer.on('end', (r) => void finish(r, 'completed', r.duration_ms, r.counts, null));
  // Counts so far, per batch: a run that fails or is cut off later keeps what it did.
  observer.on('batch', (r) => void chain(r.run_id, () => updateRunCounts(pool, r.run_id, r.totals)));
  observer.on('failure', (r) => void finish(r, 'failed', r.duration_ms, r.counts, r.error.message));
  observer.on('rejected', (r) => void finish(r, 'rejected', r.duration_ms, null, r.error.message));
  observer.on(
    'interrupted',
    (r) => void finish(r, 'interrupted', r.duration_ms, r.counts, `${r.reason}: ${r.detail}`),
  );
  return {
    flush: async () => {
      await Promise.all(pending.values());
    },
  };
}
