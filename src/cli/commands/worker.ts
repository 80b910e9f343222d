import { JOBS } from '../../../jobs/index.ts';
import { databaseUrl } from '../../db/pool.ts';
import { startWorker } from '../../worker/process.ts';
import type { Command } from '../command.ts';
import { applySettingsFromConfig } from '../settings.ts';

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
    try {
      await applySettingsFromConfig(rt.pool, rt.config, rt.logger, 'worker');
    } catch (err) {
      await worker.stop();
      throw err;
    }
    await untilAborted(signal);
    await worker.stop();
  },
};

export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
