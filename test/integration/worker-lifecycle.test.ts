/**
 * Worker processes and their life: ad-hoc runs wait their turn behind a running one, SIGTERM lets
 * the running batch commit and exits 0, SIGKILL mid-batch loses nothing (another worker finishes
 * the job), and health endpoints answer. Real `worker` processes on a real database; every wait is
 * on database state or an HTTP answer.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import { databaseNow } from '../../src/db/queries/server.ts';
import { runCli, startCli } from '../helpers/cli-process.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { insertTask, insertTemplate, minutesBefore } from '../helpers/factories.ts';
import { waitFor } from '../helpers/wait.ts';
import {
  blockEntryFor,
  bossJobs,
  FAST_WORKER_ENV,
  HELD_DETECTION_ENV,
  holdDetectionAtStart,
  installFor,
  runsOf,
  startWorkerProcess,
  waitForBlockedDetection,
  waitForWorkers,
  workerPort,
} from '../helpers/workers.ts';

const DETECT = 'tasker.detect-stale-tasks';
// Detection's schedule off: these tests start every detection run themselves. (The enrichment
// sweep stays scheduled; it only adds to snapshots.)
const NO_SCHEDULES = { TASKER__staleness_detection__enabled: 'false', ...HELD_DETECTION_ENV };

const db = useTestDatabase();

beforeEach(async () => {
  await installFor(db.url, NO_SCHEDULES); // the release step, as the workers below are configured
  await resetTables(db.pool);
  await db.pool.query(`DELETE FROM pgboss.job WHERE name LIKE 'tasker.%'`);
});

async function staleTasks(n: number): Promise<string[]> {
  const now = await databaseNow(db.pool);
  const t = await insertTemplate(db.pool);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    ids.push(
      await insertTask(db.pool, {
        template: t,
        state: 'waiting_for_retry',
        enteredAt: minutesBefore(now, 300 - i),
      }),
    );
  }
  return ids;
}

function enqueue(args: string[]) {
  return runCli(['enqueue', 'detect-stale', ...args], {
    DATABASE_URL: db.url,
    ...FAST_WORKER_ENV,
    ...NO_SCHEDULES,
  });
}

/** Per task: error transitions and pending entries. */
async function outcomes(ids: string[]) {
  const { rows } = await db.pool.query(
    `SELECT t AS task_uuid,
            (SELECT count(*) FROM tasker_task_transitions x WHERE x.task_uuid = t AND x.to_state = 'error') AS errors,
            (SELECT count(*) FROM tasker_tasks_dlq d WHERE d.task_uuid = t AND d.resolution_status = 'pending') AS entries
       FROM unnest($1::uuid[]) t`,
    [ids],
  );
  return rows as Array<{ task_uuid: string; errors: number; entries: number }>;
}

describe('one worker', () => {
  it('an ad-hoc run sent during a running one waits its turn; a third is refused while one waits', async () => {
    const worker = startWorkerProcess(db.url, NO_SCHEDULES);
    try {
      await waitForWorkers(db.pool, 1);
      const holder = await holdDetectionAtStart(await db.connect());
      const first = await enqueue(['--dry-run']);
      expect(first.code).toBe(0);
      await waitFor('the first run to be active', async () =>
        (await bossJobs(db.pool, DETECT)).some((j) => j.state === 'active'),
      );
      const second = await enqueue(['--json']);
      expect(second.code).toBe(0);
      const secondId = JSON.parse(second.stdout).job_id;
      const third = await enqueue([]);
      expect(third).toMatchObject({ code: 2, stderr: expect.stringContaining('already waiting to start') });
      const jobs = await bossJobs(db.pool, DETECT);
      expect(jobs.map((j) => j.state)).toEqual(['active', 'created']);
      await holder.release();
      await waitFor('the second run to complete', async () =>
        (await bossJobs(db.pool, DETECT)).find((j) => j.id === secondId && j.state === 'completed'),
      );
      const runs = await runsOf(db.pool, DETECT);
      expect(runs).toHaveLength(2);
      expect(runs[1]!.started_at.getTime()).toBeGreaterThanOrEqual(runs[0]!.finished_at!.getTime());
      expect(runs.map((r) => r.trigger)).toEqual(['adhoc', 'adhoc']);
    } finally {
      worker.kill('SIGTERM');
      expect((await worker.done).code).toBe(0);
    }
  });

  it('--wait follows the run and prints its counts; /healthz, /readyz and /metrics answer', async () => {
    const ids = await staleTasks(3);
    const worker = startWorkerProcess(db.url, NO_SCHEDULES);
    try {
      const port = await workerPort(worker);
      await waitFor(
        '/readyz 200',
        async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200,
      );
      expect(await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()).toEqual({ status: 'ok' });
      const run = await enqueue(['--wait', '--json']);
      expect(run.code).toBe(0);
      expect(JSON.parse(run.stdout)).toMatchObject({
        state: 'completed',
        output: { tasks_detected: 3, dlq_entries_created: 3 },
      });
      for (const o of await outcomes(ids)) expect(o).toMatchObject({ errors: 1, entries: 1 });
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const value = (name: string) =>
        metrics
          .split('\n')
          .filter((l) => l.startsWith(name))
          .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
      expect(
        value(
          'tasker_dlq_entries_created_total{dlq_reason="staleness_timeout",original_state="waiting_for_retry"}',
        ),
      ).toBe(3);
      expect(value('tasker_staleness_tasks_detected_total{state="waiting_for_retry"}')).toBe(3);
      expect(
        value(
          'tasker_job_runs_total{tasker_job="tasker.detect-stale-tasks",trigger="adhoc",outcome="completed"}',
        ),
      ).toBe(1);
      expect(metrics).toContain('pgboss_queue_jobs{');
      // The DLQ gauges are read once per cluster per metrics.gauges_interval_seconds (issue 25), so
      // the entries show within an interval of the run, not at the first scrape after it.
      await waitFor(
        'the pending gauge to count the 3 entries',
        async () => {
          const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
          const line = text.split('\n').find((l) => l.startsWith('tasker_dlq_pending_investigations '));
          return line?.endsWith(' 3') ? true : undefined;
        },
        { timeoutMs: 45_000, intervalMs: 500 },
      );
    } finally {
      worker.kill('SIGTERM');
      expect((await worker.done).code).toBe(0);
    }
  });

  it('SIGTERM during a run: the batch in flight commits, no further batch starts, the rest is handed on, exit 0', async () => {
    const ids = await staleTasks(30); // oldest first: ids[0..9] make the first batch of 10
    const blocker = await blockEntryFor(await db.connect(), ids[0]!);
    const worker = startWorkerProcess(db.url, NO_SCHEDULES);
    await waitForWorkers(db.pool, 1);
    expect((await enqueue(['--batch-size', '10', '--max-batches', '10'])).code).toBe(0);
    await waitForBlockedDetection(db.pool);
    worker.kill('SIGTERM');
    await waitFor('the worker to start stopping', async () =>
      worker.stderrSoFar().includes('worker stopping'),
    );
    await blocker.release();
    const exit = await worker.done;
    expect(exit.code).toBe(0);
    const done = await outcomes(ids);
    expect(done.slice(0, 10).every((o) => o.errors === 1 && o.entries === 1)).toBe(true);
    expect(done.slice(10).every((o) => o.errors === 0 && o.entries === 0)).toBe(true);
    const [run] = await runsOf(db.pool, DETECT);
    expect(run).toMatchObject({
      outcome: 'interrupted',
      counts: expect.objectContaining({ aborted: true, batches: 1, tasks_detected: 10 }),
    });
    // The rest was handed on: the same request waits for the next worker.
    const jobs = await bossJobs(db.pool, DETECT);
    expect(jobs.map((j) => j.state)).toEqual(['completed', 'created']);
    expect(jobs[1]!.data).toMatchObject({ trigger: 'adhoc', continues: jobs[0]!.id });
    expect(jobs[0]!.output).toMatchObject({ handed_on_to: jobs[1]!.id });
  });
});

describe('enqueue from a process with another configuration', () => {
  it("sends only the flags given: the run uses the worker's configuration, and queue settings stay the installed ones", async () => {
    const now = await databaseNow(db.pool);
    const t = await insertTemplate(db.pool);
    // 50 minutes in waiting_for_retry: stale for the enqueuing process (1 minute), not for the worker (100).
    const id = await insertTask(db.pool, {
      template: t,
      state: 'waiting_for_retry',
      enteredAt: minutesBefore(now, 50),
    });
    const worker = startWorkerProcess(db.url, {
      ...NO_SCHEDULES,
      TASKER__staleness_detection__thresholds__waiting_for_retry_minutes: '100',
      TASKER__staleness_detection__thresholds__task_max_lifetime_hours: '24',
    });
    try {
      await waitForWorkers(db.pool, 1);
      const settings = async () =>
        (
          await db.pool.query(
            `SELECT retry_limit, retry_delay, expire_seconds, heartbeat_seconds FROM pgboss.queue WHERE name = $1`,
            [DETECT],
          )
        ).rows[0];
      const before = await settings();
      expect(before).toMatchObject({ retry_limit: 3 });
      const run = await runCli(['enqueue', 'detect-stale', '--batch-size', '7', '--wait', '--json'], {
        DATABASE_URL: db.url,
        ...FAST_WORKER_ENV,
        TASKER_ENV: 'development',
        TASKER__staleness_detection__thresholds__waiting_for_retry_minutes: '1',
        TASKER__worker__retry_limit: '9',
        TASKER__worker__job_expire_seconds: '120',
      });
      expect(run.code).toBe(0);
      expect(JSON.parse(run.stdout)).toMatchObject({ state: 'completed', output: { tasks_detected: 0 } });
      expect((await outcomes([id]))[0]).toMatchObject({ errors: 0, entries: 0 });
      const [job] = await bossJobs(db.pool, DETECT);
      expect(job!.data).toEqual({ trigger: 'adhoc', options: { batch_size: 7 } });
      const [history] = await runsOf(db.pool, DETECT);
      const { rows } = await db.pool.query('SELECT options FROM tasker_job_runs WHERE run_id = $1', [
        history!.run_id,
      ]);
      expect(rows[0].options).toMatchObject({ batch_size: 7, waiting_for_retry_minutes: 100 });
      expect(await settings()).toEqual(before);
      // The worker's own thresholds differ from the installed settings row: said, not written.
      expect(worker.stderrSoFar()).toContain(
        'tasker_lifecycle_settings.waiting_for_retry_minutes: the database has 30, this configuration says 100',
      );
      expect(
        (await db.pool.query('SELECT waiting_for_retry_minutes FROM tasker_lifecycle_settings')).rows,
      ).toEqual([{ waiting_for_retry_minutes: 30 }]);
    } finally {
      worker.kill('SIGTERM');
      expect((await worker.done).code).toBe(0);
    }
  });
});

describe('worker configuration that reaches pg-boss', () => {
  it("worker.retry_delay_max_seconds, installed by migrate, caps the backoff; database.boss_pool_max sizes pg-boss's pool", async () => {
    const env = {
      ...NO_SCHEDULES,
      TASKER__worker__retry_delay_max_seconds: '1800',
      TASKER__database__max_connections_per_process: '13',
      TASKER__database__pool_max: '10',
      TASKER__database__boss_pool_max: '3',
    };
    await installFor(db.url, env);
    const worker = startWorkerProcess(db.url, env);
    try {
      await workerPort(worker); // it logs its port once its queues are set up
      const { rows: queues } = await db.pool.query(
        'SELECT retry_delay_max, heartbeat_seconds FROM pgboss.queue WHERE name = $1',
        [DETECT],
      );
      // Heartbeat: pg-boss's own check is the backstop at twice worker.heartbeat_seconds (10).
      expect(queues[0]).toEqual({ retry_delay_max: 1800, heartbeat_seconds: 20 });
      const { rows: instances } = await db.pool.query(
        `SELECT pool_max FROM pgboss.instance WHERE stopped_on IS NULL AND pid = $1`,
        [worker.pid],
      );
      expect(instances).toEqual([{ pool_max: 3 }]);
    } finally {
      worker.kill('SIGTERM');
      expect((await worker.done).code).toBe(0);
    }
  });
});

describe('connections terminated mid-run', () => {
  it("the run's end is recorded, the run is retried and finishes, and enqueue --wait reconnects and reports it", async () => {
    const ids = await staleTasks(3);
    const worker = startWorkerProcess(db.url, NO_SCHEDULES);
    try {
      await waitForWorkers(db.pool, 1);
      const holder = await holdDetectionAtStart(await db.connect());
      const waiting = startCli(['enqueue', 'detect-stale', '--wait', '--json'], {
        DATABASE_URL: db.url,
        ...FAST_WORKER_ENV,
        ...NO_SCHEDULES,
      });
      await waitFor('the run to wait on the held lock', async () => {
        const { rows } = await db.pool.query(
          `SELECT count(*) AS n FROM pg_stat_activity
            WHERE wait_event_type = 'Lock' AND application_name LIKE 'tasker-lifecycle%' AND datname = current_database()`,
        );
        return rows[0].n > 0;
      });
      // Every connection of the worker and of the enqueuing process, again and again for 3 s, so
      // that queries in flight are cut too (enqueue --wait looks every 500 ms).
      for (let i = 0; i < 30; i++) {
        await db.pool.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE application_name LIKE 'tasker-lifecycle%' AND datname = current_database() AND pid <> pg_backend_pid()`,
        );
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await holder.release();

      const result = await waiting.done;
      expect(result.code).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ state: 'completed', output: { tasks_detected: 3 } });
      for (const o of await outcomes(ids)) expect(o).toMatchObject({ errors: 1, entries: 1 });
      await waitFor('every run to have an outcome', async () =>
        (await runsOf(db.pool, DETECT)).every((r) => r.outcome !== null),
      );
      const runs = await runsOf(db.pool, DETECT);
      expect(runs.length).toBeGreaterThanOrEqual(2);
      expect(runs[0]!.outcome).toMatch(/^(failed|interrupted)$/);
      expect(runs.at(-1)!.outcome).toBe('completed');
    } finally {
      worker.kill('SIGTERM');
      expect((await worker.done).code).toBe(0);
    }
  });
});

describe('a run that fails after committing batches', () => {
  it('its committed batches are in the metrics, its history counts and its enrichment follow-ups', async () => {
    const ids = await staleTasks(6); // oldest first: batches of 2
    const blocker = await blockEntryFor(await db.connect(), ids[2]!);
    // The second batch fails for a reason of its own: it waits on the held entry past its
    // statement timeout. (A cut connection is an interruption, not a failure: see
    // worker-database-restart.test.ts.)
    const env = {
      ...NO_SCHEDULES,
      TASKER__worker__retry_limit: '0',
      TASKER__staleness_detection__batch_statement_timeout_ms: '2000',
    };
    await installFor(db.url, env);
    const worker = startWorkerProcess(db.url, env);
    try {
      const port = await workerPort(worker);
      await waitForWorkers(db.pool, 1);
      expect(
        (
          await runCli(['enqueue', 'detect-stale', '--batch-size', '2', '--max-batches', '5'], {
            DATABASE_URL: db.url,
            ...FAST_WORKER_ENV,
            ...env,
          })
        ).code,
      ).toBe(0);
      await waitFor('the run to fail', async () => (await runsOf(db.pool, DETECT))[0]?.outcome === 'failed');
      await blocker.release();
      const [run] = await runsOf(db.pool, DETECT);
      expect(run!.counts).toMatchObject({ batches: 1, tasks_detected: 2, dlq_entries_created: 2 });
      expect((await outcomes(ids)).map((o) => o.entries)).toEqual([1, 1, 0, 0, 0, 0]);
      // The committed batch's two entries: one request carrying both.
      const { rows: requests } = await db.pool.query(
        `SELECT jsonb_array_length(data->'options'->'entry_uuids') AS n FROM pgboss.job
          WHERE name = 'tasker.enrich-dlq-snapshots' AND data->>'trigger' = 'event'`,
      );
      expect(requests).toEqual([{ n: 2 }]);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const value = (name: string) =>
        metrics
          .split('\n')
          .filter((l) => l.startsWith(name))
          .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
      expect(value('tasker_staleness_tasks_detected_total{state="waiting_for_retry"}')).toBe(2);
      expect(
        value(
          'tasker_job_runs_total{tasker_job="tasker.detect-stale-tasks",trigger="adhoc",outcome="failed"}',
        ),
      ).toBe(1);
    } finally {
      worker.kill('SIGTERM');
      expect((await worker.done).code).toBe(0);
    }
  });
});

describe('two workers', () => {
  it('SIGKILL mid-batch: the job is retried by the other worker and every task ends exactly once', async () => {
    const ids = await staleTasks(40);
    const blocker = await blockEntryFor(await db.connect(), ids[0]!);
    const first = startWorkerProcess(db.url, NO_SCHEDULES);
    await waitForWorkers(db.pool, 1);
    expect((await enqueue(['--batch-size', '10', '--max-batches', '10'])).code).toBe(0);
    await waitForBlockedDetection(db.pool);
    first.kill('SIGKILL');
    expect((await first.done).signal).toBe('SIGKILL');
    await blocker.release();
    const second = startWorkerProcess(db.url, NO_SCHEDULES);
    try {
      // pg-boss fails the dead worker's job once its heartbeat is missed, then retries it here.
      await waitFor(
        'the retried run to complete',
        async () =>
          (await bossJobs(db.pool, DETECT)).find((j) => j.state === 'completed' && j.retry_count >= 1),
        { timeoutMs: 60_000, intervalMs: 500 },
      );
      for (const o of await outcomes(ids)) expect(o).toMatchObject({ errors: 1, entries: 1 });
      // The run's history row is written beside pg-boss's completion, not before it: wait for it.
      const runs = await waitFor('the retried run recorded as completed', async () => {
        const all = await runsOf(db.pool, DETECT);
        return all.at(-1)?.outcome === 'completed' ? all : undefined;
      });
      expect(new Set(runs.map((r) => r.worker)).size).toBe(2);
    } finally {
      second.kill('SIGTERM');
      expect((await second.done).code).toBe(0);
    }
  });
});
