import { RunObserver } from '../telemetry/run-events.ts';
import type { JobContext } from '../worker/job.ts';
import { logRuns, observeRun, recordRuns } from '../worker/observe.ts';
import type { AnyJob } from '../worker/worker.ts';
import type { Runtime } from './runtime.ts';

/**
 * Runs a job once in the CLI's process, observed like a worker's run: logged, and recorded in
 * tasker_job_runs with trigger "cli" (so `status` shows it).
 */
export async function runInline<R>(
  rt: Runtime,
  job: AnyJob,
  options: unknown,
  ctx: Omit<JobContext, 'pool' | 'logger'>,
  run: (ctx: JobContext) => Promise<R> = (c) => job.run(c, options),
): Promise<R> {
  const observer = new RunObserver();
  logRuns(observer, rt.logger);
  const history = recordRuns(observer, rt.pool, rt.config.worker.run_history_days, rt.logger);
  try {
    return await observeRun(
      observer,
      { job: job.name, workDone: job.workDone, trigger: 'cli', options },
      (progress) => run({ ...ctx, pool: rt.pool, logger: rt.logger, progress }),
    );
  } finally {
    await history.flush();
  }
}
