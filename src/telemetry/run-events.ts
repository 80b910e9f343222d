import { EventEmitter } from 'node:events';
import { type Tracer, trace } from '@opentelemetry/api';

/**
 * The events of a run, as the worker emits them (src/worker/observe.ts) and their subscribers take
 * them: log lines, the run history (tasker_job_runs), and metrics (src/telemetry/metrics.ts). They
 * live here, below both, so that telemetry subscribes to runs without importing the worker.
 */

export type RunTrigger = 'schedule' | 'adhoc' | 'event' | 'cli';

export interface RunStart {
  run_id: string;
  job: string;
  trigger: RunTrigger;
  /** pg-boss job id, for runs that came through a queue. */
  pgboss_job_id: string | null;
  /** 1 for a request's first attempt, 2 for its first retry... (pg-boss retryCount + 1); null outside pg-boss. */
  attempt: number | null;
  /** How long the request waited in its queue once it could start (null outside pg-boss). */
  wait_seconds: number | null;
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
  /** The run reported its batches (`batch` events), which carried its counts as it went. */
  batches_reported: boolean;
}

export interface RunFailure extends RunStart {
  duration_ms: number;
  error: Error;
  /** Sums of the counts of the batches it committed before failing (null: it reported none). */
  counts: Record<string, number> | null;
}

/** One batch of a run (JobContext.progress). */
export interface RunBatch extends RunStart {
  /** The batch's own result, in the shape of the job's result. */
  result: unknown;
  counts: Record<string, unknown>;
  /** Sums of the numeric counts of the run's batches so far. */
  totals: Record<string, number>;
  work_done: number;
}

/**
 * Why a run ended without finishing or failing, none of them a failure of the run:
 * - 'shutdown': its worker was asked to stop and the run stopped between batches, or gave its run
 *   back before the shutdown timeout;
 * - 'worker_lost': its worker was lost (SIGKILL, a paused or lost host, connections cut) and another
 *   worker's recovery pass requeued it (recorded by that worker);
 * - 'taken_over': the run found its claim gone (it was requeued while its worker was paused or cut
 *   off) and stopped without committing its batch;
 * - 'database': the database went away or refused it (a restart, a cut connection);
 * - 'no_connection': no connection of its pool came free in time;
 * - 'expiry': it gave its run back before pg-boss's expiry (worker.job_expire_seconds) would fail it;
 * - 'cancelled': an operator cancelled it while it ran (`tasker-lifecycle cancel`, the API, the
 *   console); it stopped after the batch in hand.
 */
export type InterruptReason =
  | 'cancelled'
  | 'shutdown'
  | 'worker_lost'
  | 'taken_over'
  | 'database'
  | 'no_connection'
  | 'expiry';

export interface RunInterrupted extends RunStart {
  reason: InterruptReason;
  /** null when the run's own process could not say (worker lost). */
  duration_ms: number | null;
  /** Counts so far, as for RunEnd; null when the worker was lost. */
  counts: Record<string, unknown> | null;
  result: unknown;
  /** What happened, for people: e.g. "no heartbeat for 15 s; requeued (retry)". */
  detail: string;
}

/**
 * A run refused before it started: its request or options failed validation (a ZodError). It is
 * observed like any other run (log line, history row, metrics), with outcome "rejected".
 */
export interface RunRejected extends RunStart {
  duration_ms: number;
  error: Error;
}

export type RunEvents = {
  start: [RunStart];
  batch: [RunBatch];
  end: [RunEnd];
  failure: [RunFailure];
  interrupted: [RunInterrupted];
  rejected: [RunRejected];
};

export class RunObserver extends EventEmitter<RunEvents> {
  /** Makes a span per run (a no-op tracer unless tracing is on). */
  tracer: Tracer = trace.getTracer('tasker-lifecycle');
}
