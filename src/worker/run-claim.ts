import type pg from 'pg';
import { databaseTrouble } from '../db/errors.ts';
import {
  attemptsHoldRun,
  type RequeueOutcome,
  type RunAttempt,
  requeueRun,
} from '../db/queries/boss-jobs.ts';
import { ClaimLostError } from '../errors.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { InterruptReason } from '../telemetry/run-events.ts';
import { RunInterruption } from './observe.ts';

/**
 * A run's hold on its pg-boss job(s), from fetch to settle: what makes "a batch commits only while
 * its attempt still holds the run" true on a bad day.
 *
 * - The commit fence: every batch of the run calls `fence` as its last statement before COMMIT
 *   (attemptsHoldRun, which locks the job rows FOR SHARE until the commit). A run requeued while
 *   its worker was paused, or cut off, finds its claim gone there: the batch rolls back, the run
 *   stops (ClaimLostError), and nothing it does after the takeover is committed.
 * - Stopping in time: `signal` aborts when the process is asked to stop, when pg-boss's heartbeat
 *   finds the claim gone, and at the run's deadline (its expiry less the longest batch and a
 *   margin), so the run ends at a batch boundary before pg-boss would fail it; at the deadline it
 *   hands the rest on like a run that reached max_batches.
 * - Giving the run back: if the run is still going SURRENDER_MARGIN_MS before pg-boss's expiry or
 *   before the end of the shutdown timeout (a batch overran, the event loop stalled), the run is
 *   requeued as an interruption (`surrender`): pg-boss's own expiry or shutdown then finds nothing
 *   of ours to fail, and the batch still in flight is refused by the fence. So no pg-boss fail
 *   path dead-letters an interrupted run.
 */

/** How long before pg-boss's expiry or shutdown failure a still running run is given back. */
export const SURRENDER_MARGIN_MS = 3_000;
/** A run stops starting batches this long, plus its longest batch, before its expiry. */
export const DEADLINE_MARGIN_MS = 10_000;
/** A run asked to stop must reach a batch boundary this long before the shutdown timeout ends. */
export const SHUTDOWN_MARGIN_MS = 2_000;

export interface RunClaimOptions {
  pool: pg.Pool;
  logger: Logger;
  attempts: readonly RunAttempt[];
  /** The data each job carries (the run requests), kept when it is requeued. */
  data: readonly Record<string, unknown>[];
  /** The process's stop signal. */
  shutdown: AbortSignal;
  /** pg-boss's per-job signals, aborted when a heartbeat finds the claim gone. */
  claimSignals: readonly AbortSignal[];
  /** When pg-boss would fail the run (its start + expire_seconds), in milliseconds from now. */
  expiresInMs: number;
  /** The longest one batch may take (JobDefinition.longestBatchMs). */
  longestBatchMs: number;
  /** worker.shutdown_timeout_seconds, in milliseconds. */
  shutdownTimeoutMs: number;
  /** lock_timeout and statement_timeout of a requeue, in milliseconds. */
  requeueTimeoutMs: number;
}

export class RunClaim {
  readonly signal: AbortSignal;
  /** Set when the claim was found gone (by the fence or by pg-boss's heartbeat). */
  lost = false;
  /** Set (by the worker, after the run) when the claim was gone because the run was cancelled. */
  cancelled = false;
  /** Set when this run gave its run back (surrender), with why and what became of it. */
  surrendered: { reason: InterruptReason; outcome: RequeueOutcome } | null = null;
  readonly #o: RunClaimOptions;
  readonly #deadline = new AbortController();
  readonly #timers: NodeJS.Timeout[] = [];
  #done = false;

  constructor(o: RunClaimOptions) {
    this.#o = o;
    const claimGone = o.claimSignals.length > 0 ? AbortSignal.any([...o.claimSignals]) : null;
    claimGone?.addEventListener('abort', () => {
      if (!this.surrendered) this.lost = true;
    });
    this.signal = AbortSignal.any([o.shutdown, this.#deadline.signal, ...(claimGone ? [claimGone] : [])]);
    this.#after(o.expiresInMs - o.longestBatchMs - DEADLINE_MARGIN_MS, () => this.#deadline.abort());
    this.#after(o.expiresInMs - SURRENDER_MARGIN_MS, () => this.surrender('expiry'));
    const onShutdown = () =>
      this.#after(o.shutdownTimeoutMs - SURRENDER_MARGIN_MS, () => this.surrender('shutdown'));
    if (o.shutdown.aborted) onShutdown();
    else o.shutdown.addEventListener('abort', onShutdown, { once: true });
  }

  /** Whether the run must not start a batch because its deadline came (not a stop or a loss). */
  get deadlineReached(): boolean {
    return this.#deadline.signal.aborted && !this.#o.shutdown.aborted && !this.lost;
  }

  /** The commit fence (JobContext.commitFence). */
  readonly fence = async (client: pg.PoolClient): Promise<void> => {
    if (this.surrendered || !(await attemptsHoldRun(client, this.#o.attempts))) {
      if (!this.surrendered) this.lost = true;
      throw new ClaimLostError(
        this.surrendered
          ? `the run was given back (${this.surrendered.reason}) before this batch could commit`
          : 'the run is no longer this attempt’s (requeued after its worker was taken for lost): the batch was rolled back',
      );
    }
  };

  /**
   * Gives the run back while it is still ours: each job is requeued as an interruption (into
   * `retry`, else `created`, else an identical waiting request), without using a retry. Idempotent;
   * never throws (a failure is logged: pg-boss's own paths or another worker's recovery take over).
   */
  async surrender(reason: InterruptReason): Promise<RequeueOutcome | null> {
    if (this.#done || this.surrendered || this.lost) return this.surrendered?.outcome ?? null;
    let outcome: RequeueOutcome | null = null;
    try {
      for (const [i, a] of this.#o.attempts.entries()) {
        const data = this.#o.data[i] ?? {};
        const interruptions = (typeof data.interruptions === 'number' ? data.interruptions : 0) + 1;
        const placed = await requeueRun(this.#o.pool, {
          ...a,
          delaySeconds: 0,
          extendLimit: true,
          data: { ...data, interruptions },
          output: { message: `interrupted: ${describe(reason)}`, interrupted: true, reason, interruptions },
          timeoutMs: this.#o.requeueTimeoutMs,
        });
        outcome ??= placed;
      }
      if (outcome && outcome.placed !== 'gone') this.surrendered = { reason, outcome };
      else if (outcome?.placed === 'gone') this.lost = true;
      if (this.surrendered) this.#deadline.abort();
    } catch (err) {
      this.#o.logger.warn(`could not give run ${this.#o.attempts[0]?.id} back (${reason})`, {
        error: (err as Error).message,
      });
    }
    return outcome;
  }

  /** The run ended (settled by its handler): no timer acts on it any more. */
  dispose(): void {
    this.#done = true;
    for (const t of this.#timers) clearTimeout(t);
  }

  #after(ms: number, fn: () => unknown): void {
    if (ms <= 0) {
      void fn();
      return;
    }
    const timer = setTimeout(() => {
      if (!this.#done) void fn();
    }, ms);
    timer.unref();
    this.#timers.push(timer);
  }
}

function describe(reason: InterruptReason): string {
  switch (reason) {
    case 'expiry':
      return 'it was still running just before its expiry (worker.job_expire_seconds) and gave its run back';
    case 'shutdown':
      return 'its worker was stopping and the run had not reached a batch boundary in time';
    case 'database':
      return 'the database went away or refused it';
    case 'no_connection':
      return 'no database connection came free in time';
    default:
      return reason;
  }
}

/**
 * What stopped a run, when it was not the run's own fault: the claim gone (the fence refused a
 * batch, or the run gave its run back), the database away, or no connection in time. Walks the
 * error's causes (a job wraps its batch's error). null: a failure of the run.
 */
export function interruptionOf(err: unknown, claim: RunClaim): RunInterruption | null {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e instanceof RunInterruption) return e;
    if (e instanceof ClaimLostError) {
      return claim.surrendered
        ? new RunInterruption(
            claim.surrendered.reason,
            `${describe(claim.surrendered.reason)}; ${e.message}`,
            err,
          )
        : new RunInterruption(
            'taken_over',
            'its run was taken over (requeued after its worker was taken for lost: paused, or cut off from the database); the batch in flight was rolled back and nothing more was committed',
            err,
          );
    }
  }
  const trouble = databaseTrouble(err);
  if (trouble === 'no_connection')
    return new RunInterruption(
      'no_connection',
      `no database connection came free in time: ${messageOf(err)}`,
      err,
    );
  if (trouble === 'unavailable')
    return new RunInterruption('database', `the database went away: ${messageOf(err)}`, err);
  return null;
}

/** What became of a requeued run, in words for its history row and log line. */
export function describePlacement(outcome: RequeueOutcome): string {
  switch (outcome.placed) {
    case 'merged':
      return `merged into the identical run ${outcome.into}, waiting`;
    case 'replaced':
      return `requeued in place of the scheduled run ${outcome.replaced}, to resume at once`;
    case 'dropped':
      return `not requeued: runs ${outcome.waiting.join(' and ')} with other options already wait; send it again`;
    case 'exhausted':
      return 'no retries left: pg-boss fails it for good';
    default:
      return `requeued (${outcome.placed}) to resume at once`;
  }
}

/** The innermost message of an error and its causes (the driver's own words). */
function messageOf(err: unknown): string {
  let message = String(err);
  for (let e: unknown = err; e instanceof Error; e = e.cause) message = e.message;
  return message;
}
