/**
 * How a worker settles the pg-boss requests of a run: a request whose options the job refuses is
 * dead-lettered at once (retrying it would be refused the same way), and every request served by
 * one batched run stores that run's counts as its output.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { loadConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { createBoss } from '../../src/worker/boss.ts';
import { startBoss } from '../../src/worker/process.ts';
import { deadLetterQueue } from '../../src/worker/worker.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';
import { bossJobs, installFor, runsOf, startWorkerProcess, waitForWorkers } from '../helpers/workers.ts';

const DETECT = 'tasker.detect-stale-tasks';
const ENRICH = 'tasker.enrich-dlq-snapshots';
const WORKER_ENV = {
  TASKER__staleness_detection__enabled: 'false',
  // Retries allowed: a refused request must still not use them.
  TASKER__worker__retry_limit: '3',
};

const db = useTestDatabase();
const config = loadConfig({ env: { TASKER_ENV: 'test', ...WORKER_ENV } }).config;
let client: ReturnType<typeof createBoss>;
beforeAll(async () => {
  await installFor(db.url, WORKER_ENV);
  client = createBoss(config, db.url, 'client', silentLogger());
  await startBoss(client);
});
afterAll(async () => {
  await client.stop({ graceful: false });
});

it('a refused request is dead-lettered without retries; a batched run stores its counts on every request', async () => {
  // Queued before any worker runs, so the worker takes the three enrichment requests as one batch.
  const enrichIds: (string | null)[] = [];
  for (let i = 0; i < 3; i++)
    enrichIds.push(
      await client.send(
        ENRICH,
        { trigger: 'event', options: { entry_uuids: [randomUUID()] } },
        { singletonKey: `entry-${i}` },
      ),
    );
  const refusedId = await client.send(DETECT, { trigger: 'adhoc', options: { batch_size: 0 } });

  const worker = startWorkerProcess(db.url, WORKER_ENV);
  try {
    await waitForWorkers(db.pool, 1);
    await waitFor('the refused request to be dead-lettered', async () =>
      (await bossJobs(db.pool, deadLetterQueue({ name: DETECT }))).length === 1 ? true : undefined,
    );
    const [refused] = (await bossJobs(db.pool, DETECT)).filter((j) => j.id === refusedId);
    expect(refused).toMatchObject({ state: 'failed', retry_count: 0 });
    expect(refused.output).toEqual({ rejected: 'batch_size: Too small: expected number to be >=1' });
    // The run history is written beside pg-boss's settlement, not before it.
    await waitFor('the rejected run recorded', async () =>
      (await runsOf(db.pool, DETECT)).some((r) => r.outcome !== null) ? true : undefined,
    );
    expect((await runsOf(db.pool, DETECT)).map((r) => r.outcome)).toEqual(['rejected']);

    await waitFor('the enrichment requests completed', async () =>
      (await bossJobs(db.pool, ENRICH)).filter((j) => enrichIds.includes(j.id) && j.state === 'completed')
        .length === 3
        ? true
        : undefined,
    );
    const enrichRuns = (await runsOf(db.pool, ENRICH)).filter((r) => r.trigger === 'event');
    expect(enrichRuns).toHaveLength(1);
    const outputs = (await bossJobs(db.pool, ENRICH))
      .filter((j) => enrichIds.includes(j.id))
      .map((j) => j.output);
    expect(outputs).toEqual([enrichRuns[0]!.counts, enrichRuns[0]!.counts, enrichRuns[0]!.counts]);
    expect(outputs[0]).toEqual(expect.objectContaining({ requested: 3, not_found: 3 }));

    // The worker's own pool names its connections after the command, as pg-boss's does.
    const { rows } = await db.pool.query<{ name: string }>(
      `SELECT DISTINCT application_name AS name FROM pg_stat_activity
        WHERE datname = current_database() AND application_name LIKE 'tasker-lifecycle-%'`,
    );
    const names = rows.map((r) => r.name);
    expect(names).toContain('tasker-lifecycle-worker');
    expect(names).not.toContain('tasker-lifecycle-cli');
  } finally {
    worker.kill('SIGTERM');
    await worker.done;
  }
});
