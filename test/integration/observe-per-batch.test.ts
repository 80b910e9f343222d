/**
 * Runs are observed per batch (JobContext.progress → the run observer): an archival run that
 * commits a batch and then throws after statement timeouts has its archived tasks and its timeouts
 * in the metrics and in its history row. The same observer, history and metrics a worker wires up.
 */
import { createServer } from 'node:http';
import { afterEach, expect, it } from '@jest/globals';
import archiveJob from '../../jobs/archive-finished-tasks.ts';
import { loadConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { RunObserver } from '../../src/telemetry/run-events.ts';
import { observeRun, recordRuns } from '../../src/worker/observe.ts';
import { insertFinishedGraphs } from '../helpers/archive-factories.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { hoursBefore, insertTemplate, NOW } from '../helpers/factories.ts';
import { runsOf } from '../helpers/workers.ts';

const db = useTestDatabase();
afterEach(async () => {
  await db.pool.query('DROP TRIGGER IF EXISTS slow_archive ON tasker_tasks_archive');
});

it('an archival run that commits a batch and then fails on timeouts is counted as it went', async () => {
  const fine = await insertTemplate(db.pool, { name: 'fine' });
  const slow = await insertTemplate(db.pool, { name: 'slow' });
  const graphs = (named_task_uuid: string, daysAgo: number) =>
    insertFinishedGraphs(db.pool, {
      named_task_uuid,
      state: 'complete',
      finishedAt: hoursBefore(NOW, 24 * daysAgo),
      count: 4,
      steps: 2,
    });
  await graphs(fine.named_task_uuid, 50); // oldest: the first batch, archived
  await graphs(slow.named_task_uuid, 40); // then every batch times out, down to one task: the run throws
  await db.pool.query(
    `CREATE OR REPLACE FUNCTION slow_archive_row() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF NEW.named_task_uuid = '${slow.named_task_uuid}' THEN PERFORM pg_sleep(1.5); END IF;
       RETURN NEW;
     END $$;
     CREATE TRIGGER slow_archive BEFORE INSERT ON tasker_tasks_archive FOR EACH ROW EXECUTE FUNCTION slow_archive_row();`,
  );

  const observer = new RunObserver();
  const metrics = createMetrics(observer, db.pool, silentLogger());
  const history = recordRuns(observer, db.pool, 14, silentLogger());
  const options = {
    ...archiveJob.optionsFromConfig(loadConfig({ env: {} }).config),
    batch_size: 4,
    // Long enough for the first batch (4 quick graphs) on a loaded machine; one slow graph alone
    // (1.5 s) outlasts it.
    batch_statement_timeout_ms: 1000,
    pause_between_batches_ms: 0,
  };
  const server = createServer((req, res) => metrics.handleScrape(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    await expect(
      observeRun(
        observer,
        { job: archiveJob.name, workDone: archiveJob.workDone, trigger: 'adhoc', options },
        (progress) =>
          archiveJob.run(
            {
              pool: db.pool,
              now: NOW,
              logger: silentLogger(),
              signal: new AbortController().signal,
              progress,
            },
            options,
          ),
      ),
    ).rejects.toThrow('archiving one task took longer than batch_statement_timeout_ms');
    await history.flush();

    const [run] = await runsOf(db.pool, archiveJob.name);
    expect(run).toMatchObject({
      outcome: 'failed',
      counts: expect.objectContaining({ batches: 1, tasks_archived: 4, timeouts: 3 }),
    });
    const port = (server.address() as { port: number }).port;
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const value = (name: string) =>
      Number(
        text
          .split('\n')
          .find((l) => l.startsWith(`${name} `))
          ?.split(' ')[1],
      );
    expect(value('tasker_archive_tasks_archived_total')).toBe(4);
    expect(value('tasker_archive_batch_timeouts_total')).toBe(3);
  } finally {
    server.close();
    await metrics.shutdown();
  }
});
