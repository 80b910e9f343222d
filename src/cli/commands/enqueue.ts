import type { PgBoss } from 'pg-boss';
import archiveFinishedTasks from '../../../jobs/archive-finished-tasks.ts';
import detectStaleTasks from '../../../jobs/detect-stale-tasks.ts';
import { databaseUrl } from '../../db/pool.ts';
import { databaseNow } from '../../db/queries/server.ts';
import { enqueueRun } from '../../operations/runs.ts';
import { personName } from '../../validation/fields.ts';
import { wholeNumber } from '../../validation/values.ts';
import { createBoss } from '../../worker/boss.ts';
import { startBoss } from '../../worker/process.ts';
import { type AnyJob, deadLetterQueue } from '../../worker/worker.ts';
import type { ArgsSpec } from '../args.ts';
import type { Command, CommandContext } from '../command.ts';
import { describeFailure, type Target } from '../failures.ts';
import { printFields, printJson } from '../output.ts';
import type { Runtime } from '../runtime.ts';
import {
  ARCHIVE_FLAGS,
  archiveOptionsFromFlags,
  archiveOptionsGiven,
  refuseUnmatchedTemplateFilter,
} from './archive.ts';
import { detectFlags, detectOptionsFromFlags, detectOptionsGiven } from './detect-stale.ts';
import { cliActor } from './token.ts';

/**
 * enqueue <job> [options] [--wait]: hands one run, with its own options, to the workers. The
 * options are validated here with the job's own schema, so a bad value is refused before it is
 * queued. A run of the job that is already waiting makes the request pointless: it is refused
 * (runs of a job never overlap and at most one waits). --wait follows the run to its end and
 * prints its counts; the exit code is 1 if it failed.
 */

const waitFlags = {
  'this-run-only': {
    type: 'boolean',
    description:
      'a run that reaches --max-batches with work left stops there (default: it hands the rest on to a new run, until the work is done)',
  },
  wait: { type: 'boolean', description: 'follow the run to its end and print its counts' },
  by: {
    type: 'string',
    placeholder: 'NAME',
    schema: personName,
    description: 'who queues it, for the audit log (default: $USER)',
  },
  'timeout-seconds': {
    type: 'string',
    placeholder: 'N',
    schema: wholeNumber(1, 86_400),
    description: 'with --wait: give up waiting after N seconds (default 600; the run goes on)',
  },
} satisfies ArgsSpec['flags'];

export function enqueueCommand(
  name: string,
  job: AnyJob,
  flags: ArgsSpec['flags'],
  /** The full options a run with these flags would use, checked (throws UsageError: exit 2). */
  checkOptions: (rt: Runtime, flags: Record<string, unknown>) => Promise<unknown>,
  optionsGiven: (flags: Record<string, unknown>) => Record<string, unknown>,
): Command {
  return {
    name: `enqueue ${name}`,
    summary: `Queue a run of ${name} for the workers, with its own options.`,
    args: { flags: { ...flags, ...waitFlags } },
    async run({ flags: given }, ctx) {
      const rt = ctx.runtime.get();
      // Checked in full here (exit 2 on a bad value), sent as given: the worker fills in the rest.
      await checkOptions(rt, given);
      const options = optionsGiven(given);
      const boss = createBoss(rt.config, databaseUrl(rt.config), 'client', rt.logger);
      await startBoss(boss);
      try {
        // Queues and their settings belong to `worker` and `migrate`; a client only sends.
        if (!(await boss.getQueue(job.name))) {
          throw new Error(
            `the queue ${job.name} does not exist yet: start a worker (or run \`tasker-lifecycle migrate\`) first`,
          );
        }
        // Queued in one transaction with its audit row; ConflictError (exit 2) when one already waits.
        const { job_id: id } = await enqueueRun(
          { pool: rt.pool, boss, config: rt.config },
          {
            job: job.name,
            options,
            thisRunOnly: given['this-run-only'] === true,
            actor: cliActor(given, ctx.io),
            now: await databaseNow(rt.pool),
          },
        );
        const workers = (await boss.getInstances()).filter((i) => i.live && i.supervise).length;
        if (!given.wait) {
          if (given.json)
            return printJson(ctx.io.stdout, { job: job.name, job_id: id, workers_running: workers });
          ctx.io.stdout.write(`queued ${job.name} run ${id}\n`);
          if (workers === 0)
            ctx.io.stderr.write('warning: no worker is running; the run starts when one does\n');
          return;
        }
        if (workers === 0 && !given.json)
          ctx.io.stderr.write('warning: no worker is running yet; waiting for one\n');
        await follow(
          boss,
          job,
          id,
          ((given['timeout-seconds'] as number | undefined) ?? 600) * 1000,
          given.json === true,
          ctx,
          ctx.runtime.target(),
        );
      } finally {
        await boss.stop({ graceful: false });
      }
    },
  };
}

/** How long --wait keeps trying while the database cannot be reached before it gives up. */
export const LOST_DATABASE_GRACE_MS = 15_000;
/** The longest one look at the run may take (a frozen server must not hang the wait). */
const LOOK_TIMEOUT_MS = 10_000;

/** A promise that rejects after ms, or when the signal aborts (with the reason "aborted"). */
function within<T>(promise: Promise<T>, ms: number, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms);
    const onAbort = () => reject(new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    });
  });
}

const seconds = (ms: number) => Math.round(ms / 1000);

/**
 * Follows a run to its end. A lost connection (the database restarting, connections terminated) is
 * said at once and tried again for LOST_DATABASE_GRACE_MS; a look that hangs gives up after
 * LOOK_TIMEOUT_MS. The wait ends, exit 1, as "interrupted" when the database stays away or on
 * Ctrl-C (the run goes on without us), and when --timeout-seconds runs out, always with the time
 * really waited. A run that stopped early and handed the rest on (handed_on_to), or was merged into
 * the run waiting (merged_into), is followed on to the run that finishes the work.
 */
async function follow(
  boss: PgBoss,
  job: AnyJob,
  id: string,
  timeoutMs: number,
  json: boolean,
  ctx: CommandContext,
  target: Target | undefined,
): Promise<void> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  let state = 'created';
  let lostSince: number | undefined;
  let lastError: Error | undefined;
  const interrupted = (why: string) =>
    new Error(
      `interrupted after waiting ${seconds(Date.now() - started)} s: ${why}; run ${id} was ${state} when last seen and goes on without this command (see \`tasker-lifecycle status\`, or \`tasker-lifecycle cancel ${id}\`)`,
    );
  for (;;) {
    if (ctx.signal.aborted) throw interrupted('stopped by a signal (Ctrl-C)');
    if (Date.now() >= deadline) {
      throw new Error(
        `run ${id} is still ${state} after waiting ${seconds(Date.now() - started)} s (--timeout-seconds ${seconds(timeoutMs)}); it goes on (see \`tasker-lifecycle status\`)${lastError ? `; last error: ${lastError.message}` : ''}`,
      );
    }
    let found: Awaited<ReturnType<PgBoss['findJobs']>>[number] | undefined;
    try {
      [found] = await within(boss.findJobs(job.name, { id }), LOOK_TIMEOUT_MS, ctx.signal);
      if (lostSince !== undefined && !json) ctx.io.stderr.write('the database is back; still waiting\n');
      lostSince = undefined;
      lastError = undefined;
    } catch (err) {
      if (ctx.signal.aborted) continue; // said above, as interrupted
      lastError = err as Error;
      const message = describeFailure(lastError, target);
      if (lostSince === undefined) {
        lostSince = Date.now();
        if (!json)
          ctx.io.stderr.write(
            `cannot reach the database while waiting: ${message}; trying again for ${seconds(LOST_DATABASE_GRACE_MS)} s\n`,
          );
      } else if (Date.now() - lostSince >= LOST_DATABASE_GRACE_MS) {
        throw interrupted(`the database cannot be reached (${message})`);
      }
      await sleep(1000, ctx.signal);
      continue;
    }
    if (!found) {
      throw new Error(
        `run ${id} no longer exists in ${job.name}: it was deleted, or exhausted its retries (see ${deadLetterQueue(job)})`,
      );
    }
    state = found.state;
    const output = (found.output ?? {}) as Record<string, unknown>;
    const next =
      state === 'completed' ? output.handed_on_to : state === 'cancelled' ? output.merged_into : null;
    if (typeof next === 'string') {
      if (!json)
        ctx.io.stderr.write(`run ${id} ${state}; the rest of its work is run ${next}: following it\n`);
      id = next;
      continue;
    }
    const waited_seconds = seconds(Date.now() - started);
    if (state === 'completed') {
      if (json) return printJson(ctx.io.stdout, { job: job.name, job_id: id, state, waited_seconds, output });
      return printFields(ctx.io.stdout, {
        job: job.name,
        job_id: id,
        state,
        waited: `${waited_seconds} s`,
        ...output,
      });
    }
    if (state === 'failed' || state === 'cancelled') {
      throw new Error(
        `run ${id} ${state} after waiting ${waited_seconds} s: ${JSON.stringify(found.output)}`,
      );
    }
    await sleep(500, ctx.signal);
  }
}

/** Waits ms, or less when the signal aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

export const enqueueDetectStaleCommand = enqueueCommand(
  'detect-stale',
  detectStaleTasks,
  detectFlags,
  async (rt, flags) => detectOptionsFromFlags(rt.config, flags),
  detectOptionsGiven,
);

export const enqueueArchiveCommand = enqueueCommand(
  'archive',
  archiveFinishedTasks,
  ARCHIVE_FLAGS,
  async (rt, flags) => {
    const options = archiveOptionsFromFlags(rt.config, flags);
    await refuseUnmatchedTemplateFilter(rt.pool, options);
    return options;
  },
  archiveOptionsGiven,
);
