import { databaseUrl } from '../../db/pool.ts';
import { databaseNow } from '../../db/queries/server.ts';
import { NotFoundError } from '../../errors.ts';
import { type CancelledRun, cancelRun, ENQUEUEABLE_JOBS } from '../../operations/runs.ts';
import { uuid } from '../../validation/values.ts';
import { createBoss } from '../../worker/boss.ts';
import { startBoss } from '../../worker/process.ts';
import type { Command } from '../command.ts';
import { printJson } from '../output.ts';
import { BY_FLAG, cliActor } from './token.ts';

/**
 * cancel <run_id>: cancel a run that waits or runs, whichever job it is of: the pg-boss job of the
 * run in flight (a run that handed its work on is followed to the job doing it now). A running
 * run stops after the batch in hand and hands nothing on. Audited (job.cancel), like the
 * console's "Cancel run" and POST /v1/jobs/{job}/runs/{id}/cancel.
 */
export const cancelCommand: Command = {
  name: 'cancel',
  summary: 'Cancel a waiting or running run (as `enqueue` printed its id): it stops after the batch in hand.',
  args: { flags: { by: BY_FLAG }, positionals: [{ name: 'run_id', schema: uuid }] },
  async run({ flags, positionals }, { io, runtime }) {
    const rt = runtime.get();
    const id = positionals[0] as string;
    const boss = createBoss(rt.config, databaseUrl(rt.config), 'client', rt.logger);
    await startBoss(boss);
    try {
      const now = await databaseNow(rt.pool);
      let cancelled: CancelledRun | undefined;
      for (const job of Object.values(ENQUEUEABLE_JOBS)) {
        try {
          cancelled = await cancelRun(
            { pool: rt.pool, boss },
            { job: job.name, id, actor: cliActor(flags, io), now },
          );
          break;
        } catch (err) {
          if (!(err instanceof NotFoundError)) throw err;
        }
      }
      if (!cancelled) {
        throw new NotFoundError(
          `no run ${id} of ${Object.values(ENQUEUEABLE_JOBS)
            .map((j) => j.name)
            .join(
              ' or ',
            )}: pg-boss has no such job (it was never queued, or was deleted after its retention)`,
        );
      }
      if (flags.json) return printJson(io.stdout, cancelled);
      const via = cancelled.job_id === id ? '' : ` (the job now doing its work, ${cancelled.job_id})`;
      io.stdout.write(
        cancelled.previous_state === 'active'
          ? `cancelled run ${id} of ${cancelled.job}${via}: it was running; it stops after the batch in hand and hands nothing on\n`
          : `cancelled run ${id} of ${cancelled.job}${via}: it was waiting and will not start\n`,
      );
    } finally {
      await boss.stop({ graceful: false });
    }
  },
};
