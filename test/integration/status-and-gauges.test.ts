/**
 * What operators read: `status` shows the schedules the workers filed in pg-boss (not the CLI's own
 * configuration) and tells interrupted runs apart; the backlogs of a stale storm (stale tasks
 * waiting for detection, entries awaiting enrichment, retrying and given up) and how fast they
 * drain are in `status` and the gauges; the DLQ gauges keep their last values, marked stale, when
 * the database cannot be read, and say so at warn.
 */
import { createServer } from 'node:http';
import { PassThrough } from 'node:stream';
import { beforeAll, expect, it } from '@jest/globals';
import winston from 'winston';
import { loadConfig } from '../../src/config/load.ts';
import { createPool } from '../../src/db/pool.ts';
import { databaseNow } from '../../src/db/queries/server.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { RunObserver } from '../../src/telemetry/run-events.ts';
import { createBoss } from '../../src/worker/boss.ts';
import { startBoss } from '../../src/worker/process.ts';
import { runCli } from '../helpers/cli-process.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { insertDlqEntry, insertTask, insertTemplate, minutesBefore } from '../helpers/factories.ts';
import { placeStorm } from '../helpers/storm.ts';
import { waitFor } from '../helpers/wait.ts';
import { FAST_WORKER_ENV, installFor, startWorkerProcess, waitForWorkers } from '../helpers/workers.ts';

const db = useTestDatabase();
beforeAll(async () => {
  await installFor(db.url, { TASKER__staleness_detection__detection_interval_seconds: '120' });
});

it("status shows the workers' schedules from pg-boss and interrupted runs as such", async () => {
  const worker = startWorkerProcess(db.url, {
    TASKER__staleness_detection__detection_interval_seconds: '120',
  });
  try {
    await waitForWorkers(db.pool, 1);
    await db.pool.query(
      `INSERT INTO tasker_job_runs (run_id, job_name, trigger, worker, started_at, finished_at, outcome, error)
       VALUES (gen_random_uuid(), 'tasker.archive-finished-tasks', 'adhoc', 'gone:1', now(), now(), 'interrupted',
               'worker_lost: its worker sent no heartbeat')`,
    );
    // The status process's own configuration (test environment) says every minute.
    const status = await runCli(['status', '--json'], { DATABASE_URL: db.url, ...FAST_WORKER_ENV });
    expect(status.code).toBe(0);
    const jobs = JSON.parse(status.stdout).jobs as Array<{
      job: string;
      schedule: string | null;
      last_run: unknown;
    }>;
    const byName = Object.fromEntries(jobs.map((j) => [j.job, j]));
    expect(byName['tasker.detect-stale-tasks']!.schedule).toBe('*/2 * * * *');
    expect(byName['tasker.archive-finished-tasks']!.last_run).toMatchObject({ outcome: 'interrupted' });
    expect(JSON.parse(status.stdout).recovery).toEqual({
      enabled: true,
      pgboss_schema_version: 46,
      written_for: 46,
    });
  } finally {
    worker.kill('SIGTERM');
    expect((await worker.done).code).toBe(0);
  }
});

it('status counts queues live: a run queued a moment ago is counted at once, and the count is stamped', async () => {
  const boss = createBoss(
    loadConfig({ env: { TASKER_ENV: 'test', DATABASE_URL: db.url } }).config,
    db.url,
    'client',
    silentLogger(),
  );
  await startBoss(boss);
  try {
    await db.pool.query(`DELETE FROM pgboss.job WHERE name LIKE 'tasker.%'`);
    // pg-boss's cached queue stats are refreshed by a worker's monitor, and no worker runs here.
    expect(
      await boss.send('tasker.archive-finished-tasks', { trigger: 'adhoc' }, { singletonKey: 'run' }),
    ).not.toBeNull();
    expect(await boss.send('tasker.detect-stale-tasks.failed', { trigger: 'adhoc' })).not.toBeNull();
    const before = await databaseNow(db.pool);
    const status = await runCli(['status', '--json'], { DATABASE_URL: db.url });
    expect(status.code).toBe(0);
    const report = JSON.parse(status.stdout) as {
      queues_counted_at: string;
      jobs: Array<{ job: string; queue: { queued: number } | null; dead_lettered: number }>;
    };
    const byName = Object.fromEntries(report.jobs.map((j) => [j.job, j]));
    expect(byName['tasker.archive-finished-tasks']!.queue).toEqual({ queued: 1, active: 0, failed: 0 });
    expect(byName['tasker.detect-stale-tasks']!.dead_lettered).toBe(1);
    expect(new Date(report.queues_counted_at).getTime()).toBeGreaterThanOrEqual(before.getTime());
    const text = await runCli(['status'], { DATABASE_URL: db.url });
    expect(text.stdout.split('\n')[0]).toMatch(/; queues counted live at \d{4}-\d{2}-\d{2}T/);
  } finally {
    await boss.stop({ graceful: false });
  }
});

it('DLQ gauges keep their last values, marked stale, when the database cannot be read', async () => {
  await resetTables(db.pool);
  const now = await databaseNow(db.pool);
  const template = await insertTemplate(db.pool);
  const task = await insertTask(db.pool, { template, state: 'error', enteredAt: minutesBefore(now, 5) });
  await insertDlqEntry(db.pool, { task, reason: 'manual_dlq', at: now });
  const lines: string[] = [];
  const sink = new PassThrough();
  sink.on('data', (d) => lines.push(String(d)));
  const logger = winston.createLogger({
    level: 'info',
    format: winston.format.json(),
    transports: [new winston.transports.Stream({ stream: sink })],
  });
  const pool = createPool(db.url, { max: 2 });
  const metrics = createMetrics(new RunObserver(), pool, logger, { gaugeIntervalSeconds: 1 });
  const server = createServer((req, res) => metrics.handleScrape(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const scrape = async () => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const value = (name: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
      return line === undefined ? undefined : Number(line.split(' ').at(-1));
    };
    return {
      pending: value('tasker_dlq_pending_investigations'),
      stale: value('tasker_metrics_gauges_stale'),
    };
  };
  try {
    expect(await scrape()).toEqual({ pending: 1, stale: 0 });
    await pool.end(); // every read fails from now on (the next check is within a second)
    await waitFor('the gauges marked stale', async () => (await scrape()).stale === 1);
    expect(await scrape()).toEqual({ pending: 1, stale: 1 });
    expect(lines.some((l) => /"level":"warn"/.test(l) && /could not read the DLQ gauges/.test(l))).toBe(true);
  } finally {
    server.close();
    await metrics.shutdown();
  }
});

it('a pg-boss start failure that is not about the schema is reported with its own cause', async () => {
  const config = loadConfig({ env: { TASKER_ENV: 'test' } }).config;
  const boss = createBoss(config, 'postgres://postgres@127.0.0.1:1/nowhere', 'client', silentLogger());
  const failure = await startBoss(boss).then(
    () => null,
    (err: Error) => err,
  );
  expect(failure?.message).toMatch(/^pg-boss could not start: .*ECONNREFUSED/);
  expect(failure?.message).not.toMatch(/migrate/);
  await boss.stop({ graceful: false }).catch(() => undefined);
});

it("status and the gauges show a storm's backlogs and how fast they drain", async () => {
  await resetTables(db.pool);
  const now = await databaseNow(db.pool);
  // 3 stale tasks waiting (1 fresh), 2 entries awaiting enrichment, 2 retrying (1 due), 1 given
  // up, 1 enriched; 600 tasks detected and 300 entries enriched in the last 5 minutes.
  await placeStorm(db.pool, now);
  // Ages are whole minutes since the rows were placed: a command that starts a minute later (a
  // loaded machine) says one more. Each age may exceed its placed value by the minutes gone since.
  const placedAt = Date.now();
  const ages = (placed: number) => {
    const late = Math.floor((Date.now() - placedAt) / 60_000);
    return Array.from({ length: late + 1 }, (_, i) => placed + i);
  };

  const status = await runCli(['status', '--json'], { DATABASE_URL: db.url, ...FAST_WORKER_ENV });
  expect(status.code).toBe(0);
  const report = JSON.parse(status.stdout);
  expect(report.investigations).toMatchObject({ awaiting_enrichment: 2 });
  expect(ages(122)).toContain(report.backlog.stale_tasks.oldest_waiting_minutes);
  expect(ages(30)).toContain(report.backlog.enrichment.oldest_awaiting_minutes);
  expect(report.backlog).toEqual({
    window_minutes: 5,
    stale_tasks: {
      waiting: 3,
      capped: false,
      oldest_waiting_minutes: report.backlog.stale_tasks.oldest_waiting_minutes,
      detected: { runs: 1, work: 600, per_second: 2 },
    },
    enrichment: {
      awaiting: 2,
      oldest_awaiting_minutes: report.backlog.enrichment.oldest_awaiting_minutes,
      retrying: 2,
      retry_due: 1,
      given_up: 1,
      enriched: { runs: 2, work: 300, per_second: 1 },
    },
  });
  const text = await runCli(['status'], { DATABASE_URL: db.url, ...FAST_WORKER_ENV });
  const staleLine = text.stdout.split('\n').find((l) => l.startsWith('stale tasks waiting'));
  expect(
    ages(2).map(
      (m) =>
        `stale tasks waiting for detection: 3 (longest 2h${m}m in its state); detected 600 in the last 5 minutes (2/s)`,
    ),
  ).toContain(staleLine);
  const enrichmentLine = text.stdout.split('\n').find((l) => l.startsWith('enrichment: '));
  expect(
    ages(30).map(
      (m) =>
        `enrichment: 2 awaiting (oldest ${m}m), 2 retrying (1 due), 1 given up; enriched 300 in the last 5 minutes (1/s)`,
    ),
  ).toContain(enrichmentLine);

  const metrics = createMetrics(new RunObserver(), db.pool, silentLogger());
  const server = createServer((req, res) => metrics.handleScrape(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const port = (server.address() as { port: number }).port;
    const lines = (await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).split('\n');
    const value = (series: string) => {
      const line = lines.find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.split(' ').at(-1));
    };
    expect(ages(30)).toContain(Math.floor(value('tasker_dlq_oldest_awaiting_enrichment_age_seconds')! / 60));
    expect(ages(122)).toContain(Math.floor(value('tasker_staleness_oldest_waiting_age_seconds')! / 60));
    expect({
      awaiting: value('tasker_dlq_awaiting_enrichment_investigations'),
      oldestAwaiting: Math.floor(value('tasker_dlq_oldest_awaiting_enrichment_age_seconds')! / 60),
      retryingDue: value('tasker_dlq_enrichment_retrying_investigations{due="true"}'),
      retryingLater: value('tasker_dlq_enrichment_retrying_investigations{due="false"}'),
      givenUp: value('tasker_dlq_enrichment_failed_investigations'),
      staleWaiting: value('tasker_staleness_waiting_tasks'),
      oldestWaiting: Math.floor(value('tasker_staleness_oldest_waiting_age_seconds')! / 60),
      failures: value('tasker_dlq_enrichment_failures_total{outcome="gave_up"}'),
      retries: value('tasker_dlq_enrichment_retries_total{outcome="enriched"}'),
    }).toEqual({
      awaiting: 2,
      oldestAwaiting: expect.any(Number),
      retryingDue: 1,
      retryingLater: 1,
      givenUp: 1,
      staleWaiting: 3,
      oldestWaiting: expect.any(Number),
      failures: 0,
      retries: 0,
    });
  } finally {
    server.close();
    await metrics.shutdown();
  }
});
