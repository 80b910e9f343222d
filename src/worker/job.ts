import type pg from 'pg';
import type { z } from 'zod';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../telemetry/logger.ts';

/**
 * A maintenance job: one file under jobs/, one pass per run(). The job says what it does; when and
 * how often it runs, retries, timing and logging live in src/worker and the CLI, once.
 */
export interface JobContext {
  readonly pool: pg.Pool;
  /** The reference time of this run, read once at its start (the database's clock in production). */
  readonly now: Date;
  readonly logger: Logger;
  /** Aborted when the process is asked to stop; a job checks it between batches. */
  readonly signal: AbortSignal;
  /**
   * Called after each committed batch (and each timed-out or retried one) with that batch's own
   * counts, in the shape of the job's result: runs are observed per batch, so the work of a run
   * that later fails or is cut off is counted, recorded and followed up.
   */
  readonly progress?: (batch: unknown) => void;
  /**
   * The run's commit fence: a batch passes it to its transaction (withTransaction's beforeCommit),
   * which calls it as its last statement before COMMIT. It throws ClaimLostError when the run is no
   * longer this attempt's (taken over while this worker was paused or cut off), so that the batch
   * rolls back: a batch commits only while its attempt holds the run. Absent for inline runs (the
   * CLI's detect-stale and archive), which hold no pg-boss claim.
   */
  readonly commitFence?: (client: pg.PoolClient) => Promise<void>;
}

export interface JobDefinition<Options, Result> {
  /** Also the pg-boss queue name. */
  readonly name: string;
  readonly description: string;
  /** The job's options, validated before every run (config-derived or sent with an ad-hoc run). */
  readonly optionsSchema: z.ZodType<Options>;
  /**
   * Options the previous release's workers do not know: their strict schemas would refuse (and
   * dead-letter) a request carrying one. They travel beside the request, in
   * tasker_run_request_extras, never in its pg-boss data (src/worker/worker.ts splitRequest), so
   * a worker of either build can take any request during a rolling upgrade. Move an option here
   * when it is added; out again once the previous release knows it.
   */
  readonly optionsSentAsExtras?: readonly string[];
  /** The options a scheduled run uses, from the configuration. */
  optionsFromConfig(config: Readonly<Config>): Options;
  /** When pg-boss runs it (cron, UTC), from the configuration; null: not scheduled. */
  schedule(config: Readonly<Config>): string | null;
  /** One pass; returns counts. */
  run(ctx: JobContext, options: Options): Promise<Result>;
  /**
   * The longest one batch of a run may take, in milliseconds (its statement timeout, plus any pause
   * the run cannot cut short): a run is asked to stop this long before it must be done (expiry,
   * shutdown), and a configuration where one batch cannot fit is refused at start.
   */
  longestBatchMs(options: Options): number;
  /** How many things the run changed (tasks acted on, entries enriched, graphs archived): logs say info when > 0. */
  workDone(result: Result): number;
  /**
   * Whether the run stopped before its work was done: 'aborted' (asked to stop, between batches) or
   * 'max_batches' (its batch limit reached with work left); null when done. handOn: whether the
   * rest should be queued at once as another run (not for dry runs, which change nothing);
   * resume: options the next run takes on top of the request's, to go on where this one stopped
   * (its pass's cursor) rather than start over.
   */
  stoppedEarly?(
    result: Result,
    options: Options,
  ): { reason: 'aborted' | 'max_batches'; handOn: boolean; resume?: Record<string, unknown> } | null;
  /**
   * Runs of other jobs this run's result calls for (e.g. one enrichment per new DLQ entry). The
   * worker sends them after the run; each carries a key, so sending one twice queues it once.
   */
  followUps?(result: Result): FollowUp[];
  /**
   * Requests that may be served together by one run: up to `size` queued requests are taken at
   * once and their options merged. Without it, one request is one run and runs of the job never
   * overlap.
   */
  batch?: { size: number; merge(requests: Options[]): Options };
}

export interface FollowUp {
  job: string;
  options: unknown;
  /** Requests with the same key while one is queued are dropped (pg-boss "short" policy). */
  key: string;
}

export function defineJob<Options, Result>(
  definition: JobDefinition<Options, Result>,
): JobDefinition<Options, Result> {
  return Object.freeze(definition);
}
