/**
 * Interrupted runs (issue 14): a run whose worker is lost (SIGKILL) is requeued by another worker's
 * recovery pass and resumed at once, without using up a retry and never dead-lettered by the
 * stately queue's one-run-per-state rule; its history row says `interrupted`. A run stopped by
 * SIGTERM hands the rest of its work on to another worker at once. Real worker processes on a real
 * database; every wait is on database state.
 */
import { beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { databaseNow } from '../../src/db/queries/server.ts';
import { insertFinishedGraphs } from '../helpers/archive-factories.ts';
import { type CliProcess, runCli } from '../helpers/cli-process.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { insertTemplate } from '../helpers/factories.ts';
import { waitFor } from '../helpers/wait.ts';
import {
  bossJobs,
  FAST_WORKER_ENV,
  installFor,
  runsOf,
  startWorkerProcess,
  waitForWorkers,
} from '../helpers/workers.ts';

const ARCHIVE = 'tasker.archive-finished-tasks';
const GRAPHS = 120;
// Archival runs of 24 batches of 5 graphs with 300 ms between batches: ~8 s each, long enough to
// kill a worker in the middle. No schedules: the test starts every run itself.
const WORKER_ENV = {
  TASKER__staleness_detection__enabled: 'false',
  TASKER__archive__enabled: 'false',
  TASKER__archive__pause_between_batches_ms: '300',
};
const RUN_FLAGS = ['--retention-days', '1', '--batch-size', '5'];

const db = useTestDatabase();

beforeAll(async () => {
  await installFor(db.url, WORKER_ENV);
});
beforeEach(async () => {
  await resetTables(db.pool);
  await db.pool.query(`DELETE FROM pgboss.job WHERE name LIKE 'tasker.%'`);
  const template = await insertTemplate(db.pool);
  const now = await databaseNow(db.pool);
  await insertFinishedGraphs(db.pool, {
    named_task_uuid: template.named_task_uuid,
    state: 'complete',
    finishedAt: new Date(now.getTime() - 10 * 86_400_000),
    count: GRAPHS,
    spacingSeconds: 60,
    steps: 2,
  });
});

async function enqueueArchive(extra: string[] = []) {
  const result = await runCli(['enqueue', 'archive', ...RUN_FLAGS, '--json', ...extra], {
    DATABASE_URL: db.url,
    ...FAST_WORKER_ENV,
    ...WORKER_ENV,
  });
  expect({ code: result.code, stderr: result.stderr }).toMatchObject({ code: 0 });
  return result;
}

async function archived(): Promise<number> {
  const { rows } = await db.pool.query('SELECT count(*) AS n FROM tasker_tasks_archive');
  return rows[0].n;
}

async function live(): Promise<number> {
  const { rows } = await db.pool.query('SELECT count(*) AS n FROM tasker_tasks');
  return rows[0].n;
}

/** The worker process whose run of pg-boss job `id` is in progress (its history row has no outcome). */
async function runnerOf(workers: CliProcess[], id: string, attempt: number): Promise<CliProcess> {
  return waitFor(`attempt ${attempt} of run ${id} to be running`, async () => {
    const { rows } = await db.pool.query(
      `SELECT j.retry_count, r.worker FROM pgboss.job j JOIN tasker_job_runs r ON r.pgboss_job_id = j.id
        WHERE j.id = $1 AND j.state = 'active' AND r.outcome IS NULL AND j.retry_count = $2
          AND r.started_at > j.started_on - interval '2 seconds' -- this attempt's row, not a lost one's
        ORDER BY r.started_at DESC LIMIT 1`,
      [id, attempt],
    );
    const pid = rows[0]?.worker.split(':').at(-1);
    return pid === undefined ? undefined : workers.find((w) => String(w.pid) === pid);
  });
}

async function someBatchesDone(before: number): Promise<void> {
  await waitFor('a few more batches to commit', async () => (await archived()) >= before + 10);
}

/**
 * SIGKILLs a run's worker in the middle of a batch, whatever the machine's load: the archive table
 * is locked first, so the run's next batch waits on it (seen in pg_locks), `meanwhile` runs, and
 * the lock is let go once the worker is dead. Without the hold, a run of a few seconds could end before a slow test
 * step (a CLI process starting on a loaded machine took 10 s) reached the kill.
 */
async function killMidBatch(runner: CliProcess, meanwhile?: () => Promise<void>): Promise<void> {
  const hold = await db.connect();
  try {
    await hold.query('BEGIN');
    await hold.query('LOCK TABLE tasker_tasks_archive IN ACCESS EXCLUSIVE MODE');
    await waitFor('a batch to wait on the held archive table', async () => {
      const { rows } = await db.pool.query(
        `SELECT count(*)::integer AS n FROM pg_locks WHERE relation = 'tasker_tasks_archive'::regclass AND NOT granted`,
      );
      return rows[0].n > 0 || undefined;
    });
    await meanwhile?.();
    runner.kill('SIGKILL');
    expect((await runner.done).signal).toBe('SIGKILL');
  } finally {
    await hold.query('ROLLBACK');
    await hold.end();
  }
}

async function deadLettered(): Promise<number> {
  const { rows } = await db.pool.query(`SELECT count(*) AS n FROM pgboss.job WHERE name = $1`, [
    `${ARCHIVE}.failed`,
  ]);
  return rows[0].n;
}

async function stopAll(workers: CliProcess[]): Promise<void> {
  for (const w of workers) w.kill('SIGTERM');
  await Promise.all(workers.map((w) => w.done));
}

describe('interrupted runs', () => {
  it('two SIGKILLs: the first run is retried and completes, nothing is dead-lettered, every run has an outcome', async () => {
    const workers = [startWorkerProcess(db.url, WORKER_ENV), startWorkerProcess(db.url, WORKER_ENV)];
    try {
      await waitForWorkers(db.pool, 2);
      const a = JSON.parse((await enqueueArchive()).stdout).job_id as string;
      const runnerA = await runnerOf(workers, a, 0);
      await someBatchesDone(0);
      // Run B waits behind A (stately queue: one active, one waiting). Enqueued while A is held
      // mid-batch, so A is still running when it is killed.
      let b = '';
      await killMidBatch(runnerA, async () => {
        b = JSON.parse((await enqueueArchive()).stdout).job_id as string;
      });
      workers.push(startWorkerProcess(db.url, WORKER_ENV));
      // Recovered by the other worker's recovery pass and resumed at once, ahead of B.
      const runnerA2 = await runnerOf(workers, a, 1);
      expect(runnerA2).not.toBe(runnerA);
      await someBatchesDone(await archived());

      await killMidBatch(runnerA2);
      const secondKill = Date.now();
      workers.push(startWorkerProcess(db.url, WORKER_ENV));

      await waitFor(
        'runs A and B to complete',
        async () => {
          const jobs = await bossJobs(db.pool, ARCHIVE);
          return jobs.length === 2 && jobs.every((j) => j.state === 'completed');
        },
        { timeoutMs: 120_000, intervalMs: 500 },
      );
      const tookMs = Date.now() - secondKill;
      expect(tookMs).toBeLessThan(120_000);
      expect(await archived()).toBe(GRAPHS);
      expect(await live()).toBe(0);

      const jobs = await bossJobs(db.pool, ARCHIVE);
      const jobA = jobs.find((j) => j.id === a)!;
      expect(jobA.retry_count).toBe(2);
      expect(jobs.find((j) => j.id === b)).toBeDefined();
      expect(await deadLettered()).toBe(0);
      // A's retries are not used up by the interruptions: the limit grew with each.
      const { rows: limits } = await db.pool.query('SELECT retry_limit, data FROM pgboss.job WHERE id = $1', [
        a,
      ]);
      expect(limits[0]).toMatchObject({
        retry_limit: 3 + 2,
        data: expect.objectContaining({ interruptions: 2 }),
      });

      // Settled history rows are written asynchronously; wait for the last of them.
      await waitFor('every run to have an outcome', async () =>
        (await runsOf(db.pool, ARCHIVE)).every((r) => r.outcome !== null),
      );
      const runs = await runsOf(db.pool, ARCHIVE);
      expect(runs.map((r) => [r.pgboss_job_id, r.outcome])).toEqual([
        [a, 'interrupted'],
        [a, 'interrupted'],
        [a, 'completed'],
        [b, 'completed'],
      ]);
      const { rows: errors } = await db.pool.query(
        `SELECT error FROM tasker_job_runs WHERE outcome = 'interrupted' ORDER BY started_at`,
      );
      expect(errors.every((e) => /^worker_lost: its worker sent no heartbeat/.test(e.error))).toBe(true);
      process.stdout.write(`two SIGKILLs: work done ${tookMs} ms after the second kill\n`);
    } finally {
      await stopAll(workers.filter((w) => w !== undefined));
    }
  }, 200_000);

  it('a run that must wait while another waits to retry is not dead-lettered when its worker dies', async () => {
    const workers = [startWorkerProcess(db.url, WORKER_ENV)];
    try {
      await waitForWorkers(db.pool, 1);
      // A dry run of one batch (dry runs never hand anything on): its row is the model for R below.
      const a = JSON.parse((await enqueueArchive(['--dry-run', '--max-batches', '1'])).stdout)
        .job_id as string;
      await waitFor('run A to finish', async () =>
        (await bossJobs(db.pool, ARCHIVE)).some((j) => j.id === a && j.state === 'completed'),
      );
      // The state the issue reproduced: run R waits in `retry` (its backoff not yet over) while run
      // B runs. Placed directly: R is a copy of A put back to retry an hour from now.
      const { rows: r } = await db.pool.query(
        `INSERT INTO pgboss.job (name, data, state, singleton_key, retry_limit, retry_count, start_after, policy,
                                 heartbeat_seconds, expire_seconds, started_on)
         SELECT name, data, 'retry', singleton_key, retry_limit, 1, now() + interval '1 hour', policy,
                heartbeat_seconds, expire_seconds, started_on
           FROM pgboss.job WHERE id = $1 RETURNING id`,
        [a],
      );
      const retrying = r[0].id as string;
      await db.pool.query(`DELETE FROM pgboss.job WHERE id = $1`, [a]);
      const b = JSON.parse((await enqueueArchive()).stdout).job_id as string;
      const runnerB = await runnerOf(workers, b, 0);
      await someBatchesDone(await archived());
      await killMidBatch(runnerB);
      workers.push(startWorkerProcess(db.url, WORKER_ENV));
      await waitFor(
        'run B to resume and complete',
        async () => (await bossJobs(db.pool, ARCHIVE)).some((j) => j.id === b && j.state === 'completed'),
        { timeoutMs: 60_000, intervalMs: 500 },
      );
      expect(await deadLettered()).toBe(0);
      expect((await bossJobs(db.pool, ARCHIVE)).find((j) => j.id === retrying)).toMatchObject({
        state: 'retry',
      });
      expect(await archived()).toBe(GRAPHS);
    } finally {
      await stopAll(workers);
    }
  }, 120_000);

  it('SIGTERM mid-run: the counts so far are recorded and another worker finishes the rest within a minute', async () => {
    const workers = [startWorkerProcess(db.url, WORKER_ENV), startWorkerProcess(db.url, WORKER_ENV)];
    try {
      await waitForWorkers(db.pool, 2);
      const a = JSON.parse((await enqueueArchive()).stdout).job_id as string;
      const runner = await runnerOf(workers, a, 0);
      await someBatchesDone(0);
      runner.kill('SIGTERM');
      const terminated = Date.now();
      expect((await runner.done).code).toBe(0);

      const jobs = await bossJobs(db.pool, ARCHIVE);
      const jobA = jobs.find((j) => j.id === a)!;
      expect(jobA.state).toBe('completed');
      const next = jobA.output.handed_on_to as string;
      expect(next).toEqual(expect.any(String));
      await waitFor(
        'the rest to be archived by the other worker',
        async () => (await bossJobs(db.pool, ARCHIVE)).some((j) => j.id === next && j.state === 'completed'),
        { timeoutMs: 60_000, intervalMs: 500 },
      );
      const tookMs = Date.now() - terminated;
      expect(tookMs).toBeLessThan(60_000);
      expect(await archived()).toBe(GRAPHS);

      const runs = await runsOf(db.pool, ARCHIVE);
      expect(runs).toHaveLength(2);
      const [first, rest] = runs;
      expect(first).toMatchObject({ pgboss_job_id: a, outcome: 'interrupted' });
      expect(rest).toMatchObject({ pgboss_job_id: next, outcome: 'completed' });
      expect(first!.worker).not.toBe(rest!.worker);
      const firstCount = Number(first!.counts?.tasks_archived);
      expect(firstCount).toBeGreaterThan(0);
      expect(firstCount + Number(rest!.counts?.tasks_archived)).toBe(GRAPHS);
      expect(first!.counts).toMatchObject({ stopped_by: 'aborted', handed_on_to: next });
      process.stdout.write(`SIGTERM: the rest done ${tookMs} ms after the signal\n`);
    } finally {
      await stopAll(workers);
    }
  }, 120_000);
});
