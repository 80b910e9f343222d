import { JOBS } from '../../../jobs/index.ts';
import { databaseUrl } from '../../db/pool.ts';
import { startWorker } from '../../worker/process.ts';
import type { Command } from '../command.ts';

export const workerCommand: Command = {
  name: 'worker',
  summary: 'Run the scheduled and queued jobs until SIGTERM/SIGINT; serves /healthz and /readyz.',
  args: { flags: {} },
  async run(_, { runtime, signal }) {
    const rt = runtime.get();
    const worker = await startWorker({
      config: rt.config,
      url: databaseUrl(rt.config),
      pool: rt.pool,
      logger: rt.logger,
      jobs: JOBS,
    });
    await untilAborted(signal);
    await worker.stop();
  },
};

export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
