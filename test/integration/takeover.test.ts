/**
 * Runs on a bad day, with real worker processes: a worker paused (SIGSTOP) in the middle of a run
 * while another takes the run over commits nothing after the takeover, and every task is handled
 * once; a rolling change of heartbeat_seconds takes no healthy run for lost; a run longer than its
 * expiry is handed on, not failed.
 *
 * What "commits nothing after the takeover" means is checked at commit time: a deferred constraint
 * trigger on the rows a batch writes (archived tasks, DLQ entries) records, as the transaction
 * commits, the attempt the batch said it was (tasker.run_attempt, set by the commit fence) and
 * whether that attempt still held its pg-boss job at that moment. Every row must say it did.
 */
import { afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { databaseNow } from '../../src/db/queries/server.ts';
import { insertFinishedGraphs } from '../helpers/archive-factories.ts';
import { type CliProcess, runCli } from '../helpers/cli-process.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { insertTask, insertTemplate, minutesBefore } from '../helpers/factories.ts';
import { waitFor } from '../helpers/wait.ts';
import {
  blockEntryFor,
  bossJobs,
  FAST_WORKER_ENV,
  installFor,
  runsOf,
  startWorkerProcess,
  waitForWorkers,
} from '../helpers/workers.ts';

const ARCHIVE = 'tasker.archive-finished-tasks';
const DETECT = 'tasker.detect-stale-tasks';
const WORKER_ENV = {
  TASKER__staleness_detection__enabled: 'false',
  TASKER__archive__enabled: 'false',
  TASKER__archive__pause_between_batches_ms: '300',
  // A worker frozen inside a batch has its transaction ended (and its locks freed) this soon.
  TASKER__database__idle_in_transaction_timeout_ms: '3000',
};

const db = useTestDatabase();
const workers: CliProcess[] = [];

beforeAll(async () => {
  await installFor(db.url, WORKER_ENV);
  await db.pool.query(`
    CREATE TABLE commits_by_attempt (tbl text, task_uuid uuid, attempt text, held boolean,
                                     at timestamptz NOT NULL DEFAULT clock_timestamp());
    CREATE FUNCTION record_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      v_attempt text := current_setting('tasker.run_attempt', true);
    BEGIN
      INSERT INTO commits_by_attempt (tbl, task_uuid, attempt, held)
      -- the table as the test names it: a monthly partition's parent (issue 24), else itself
      SELECT coalesce((SELECT inhparent::regclass::text FROM pg_inherits WHERE inhrelid = TG_RELID), TG_TABLE_NAME),
             NEW.task_uuid, v_attempt,
             bool_and(EXISTS (SELECT 1 FROM pgboss.job j
                               WHERE j.id = split_part(a, ':', 1)::uuid AND j.state = 'active'
                                 AND j.retry_count = split_part(a, ':', 2)::int))
        FROM unnest(string_to_array(v_attempt, ',')) a;
      RETURN NULL;
    END $$;
    CREATE CONSTRAINT TRIGGER archived_commit AFTER INSERT ON tasker_tasks_archive
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION record_commit();
    CREATE CONSTRAINT TRIGGER dlq_commit AFTER INSERT ON tasker_tasks_dlq
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION record_commit();`);
});
beforeEach(async () => {
  await resetTables(db.pool);
  await db.pool.query(`DELETE FROM pgboss.job WHERE name LIKE 'tasker.%'; TRUNCATE commits_by_attempt`);
});
afterEach(async () => {
  for (const w of workers) {
    w.kill('SIGCONT');
    w.kill('SIGTERM');
  }
  await Promise.all(workers.splice(0).map((w) => w.done));
});

function worker(env: Record<string, string> = {}): CliProcess {
  const w = startWorkerProcess(db.url, { ...WORKER_ENV, ...env });
  workers.push(w);
  return w;
}

async function enqueue(args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await runCli(['enqueue', ...args, '--json'], {
    DATABASE_URL: db.url,
    ...FAST_WORKER_ENV,
    ...WORKER_ENV,
    ...env,
  });
  expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
  return JSON.parse(r.stdout).job_id as string;
}

async function finishedGraphs(count: number): Promise<void> {
  const template = await insertTemplate(db.pool);
  const now = await databaseNow(db.pool);
  await insertFinishedGraphs(db.pool, {
    named_task_uuid: template.named_task_uuid,
    state: 'complete',
    finishedAt: new Date(now.getTime() - 10 * 86_400_000),
    count,
    spacingSeconds: 60,
    steps: 2,
  });
}

const count = async (sql: string, params: unknown[] = []) =>
  (await db.pool.query(sql, params)).rows[0].n as number;

/**
 * The worker process that ran attempt `attempt` (0-based) of pg-boss job `id`: its run history has
 * a row per attempt, oldest first (a run may already be over when this looks).
 */
async function runningAttempt(id: string, attempt: number) {
  return waitFor(`attempt ${attempt} of ${id} to run`, async () => {
    const { rows } = await db.pool.query(
      'SELECT worker FROM tasker_job_runs WHERE pgboss_job_id = $1 ORDER BY started_at',
      [id],
    );
    const pid = rows[attempt]?.worker.split(':').at(-1);
    return pid === undefined ? undefined : workers.find((w) => String(w.pid) === pid);
  });
}

/** Every batch that committed said whose attempt it was, and that attempt held the run. */
async function commitsAllHeld(table: string, expected: number): Promise<Map<string, number>> {
  const { rows } = await db.pool.query(
    `SELECT attempt, held, count(*)::int AS n, count(DISTINCT task_uuid)::int AS tasks
       FROM commits_by_attempt WHERE tbl = $1 GROUP BY attempt, held`,
    [table],
  );
  expect(rows.filter((r) => r.held !== true)).toEqual([]);
  expect(rows.reduce((sum, r) => sum + r.n, 0)).toBe(expected);
  return new Map(rows.map((r) => [r.attempt, r.n]));
}

describe('a worker paused in the middle of a run', () => {
  it('archival: after another worker takes the run over, the paused one commits nothing, and every graph is archived once', async () => {
    const GRAPHS = 120;
    await finishedGraphs(GRAPHS);
    const a = worker();
    await waitForWorkers(db.pool, 1);
    const id = await enqueue(['archive', '--retention-days', '1', '--batch-size', '5']);
    expect(await runningAttempt(id, 0)).toBe(a);
    await waitFor(
      'a few batches to commit',
      async () => (await count('SELECT count(*)::int AS n FROM tasker_tasks_archive')) >= 15,
    );

    a.kill('SIGSTOP');
    const stoppedAt = Date.now();
    const b = worker();
    expect(await runningAttempt(id, 1)).toBe(b);
    const takeoverMs = Date.now() - stoppedAt;
    await waitFor(
      'the new attempt to commit a batch',
      async () =>
        (await count(`SELECT count(*)::int AS n FROM commits_by_attempt WHERE attempt = $1`, [`${id}:1`])) >
        0,
    );
    a.kill('SIGCONT');

    await waitFor(
      'the run to complete',
      async () => (await bossJobs(db.pool, ARCHIVE)).some((j) => j.id === id && j.state === 'completed'),
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(await count('SELECT count(*)::int AS n FROM tasker_tasks_archive')).toBe(GRAPHS);
    expect(await count('SELECT count(*)::int AS n FROM tasker_tasks')).toBe(0);
    const byAttempt = await commitsAllHeld('tasker_tasks_archive', GRAPHS);
    expect([...byAttempt.keys()].sort()).toEqual([`${id}:0`, `${id}:1`]);

    // The paused attempt records its stop as a takeover, and queues nothing of its own.
    await waitFor('both attempts to have an outcome', async () =>
      (await runsOf(db.pool, ARCHIVE)).every((r) => r.outcome !== null),
    );
    const runs = await runsOf(db.pool, ARCHIVE);
    expect(runs.map((r) => r.outcome)).toEqual(['interrupted', 'completed']);
    expect((await bossJobs(db.pool, ARCHIVE)).map((j) => j.state)).toEqual(['completed']);
    expect(
      await count(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1`, [`${ARCHIVE}.failed`]),
    ).toBe(0);
    await waitFor('the paused worker to say its run was taken over', async () =>
      a.stderrSoFar().includes('run interrupted (taken_over)'),
    );
    process.stdout.write(`archival takeover after SIGSTOP: ${takeoverMs} ms (heartbeat_seconds 10)\n`);
  });

  it('detection, frozen inside a batch: its transaction is ended, the other worker finishes, each task gets one transition and one entry', async () => {
    const now = await databaseNow(db.pool);
    const template = await insertTemplate(db.pool);
    const ids: string[] = [];
    for (let i = 0; i < 30; i++)
      ids.push(
        await insertTask(db.pool, {
          template,
          state: 'waiting_for_retry',
          enteredAt: minutesBefore(now, 300 - i),
        }),
      );
    // The second batch waits on a pending entry another session is writing for its first task.
    const blocker = await blockEntryFor(await db.connect(), ids[5]!);
    const env = {
      TASKER__staleness_detection__batch_statement_timeout_ms: '60000',
      TASKER__worker__shutdown_timeout_seconds: '70',
    };
    await installFor(db.url, { ...WORKER_ENV, ...env });
    const a = worker(env);
    await waitForWorkers(db.pool, 1);
    const id = await enqueue(['detect-stale', '--batch-size', '5'], env);
    expect(await runningAttempt(id, 0)).toBe(a);
    await waitFor(
      'the second batch to wait on the held entry',
      async () =>
        (await count(
          `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE wait_event_type = 'Lock' AND query LIKE '%detect_stale_tasks_page%' AND datname = current_database()`,
        )) > 0,
    );
    a.kill('SIGSTOP'); // frozen with the batch's statement in flight
    await blocker.release(); // the statement completes; its transaction then idles, frozen
    const stoppedAt = Date.now();
    const b = worker(env);
    expect(await runningAttempt(id, 1)).toBe(b);
    const takeoverMs = Date.now() - stoppedAt;
    await waitFor(
      'the run to complete',
      async () => (await bossJobs(db.pool, DETECT)).some((j) => j.id === id && j.state === 'completed'),
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    a.kill('SIGCONT');
    const { rows } = await db.pool.query(
      `SELECT t AS task,
              (SELECT count(*)::int FROM tasker_task_transitions x WHERE x.task_uuid = t AND x.to_state = 'error') AS errors,
              (SELECT count(*)::int FROM tasker_tasks_dlq d WHERE d.task_uuid = t) AS entries
         FROM unnest($1::uuid[]) t`,
      [ids],
    );
    expect(rows.filter((r) => r.errors !== 1 || r.entries !== 1)).toEqual([]);
    await commitsAllHeld('tasker_tasks_dlq', 30);
    await waitFor('the paused worker to record its run as interrupted', async () =>
      (await runsOf(db.pool, DETECT)).every((r) => r.outcome !== null),
    );
    expect((await runsOf(db.pool, DETECT)).map((r) => r.outcome)).toEqual(['interrupted', 'completed']);
    process.stdout.write(`detection takeover after SIGSTOP inside a batch: ${takeoverMs} ms\n`);
  });
});

it('a rolling change of heartbeat_seconds: a worker still configured with the old one keeps its healthy run', async () => {
  // migrate installed heartbeat_seconds 10 (a run is lost after 10 s without a heartbeat); an old
  // worker still says 60 (it used to heartbeat every 20 s). A new worker recovers every second.
  await finishedGraphs(100);
  const old = worker({
    TASKER__worker__heartbeat_seconds: '60',
    TASKER__archive__pause_between_batches_ms: '1000',
  });
  await waitForWorkers(db.pool, 1);
  const id = await enqueue(['archive', '--retention-days', '1', '--batch-size', '5']);
  expect(await runningAttempt(id, 0)).toBe(old);
  worker(); // heartbeat_seconds 10, recovery every second
  await waitFor(
    'the run to complete',
    async () => (await bossJobs(db.pool, ARCHIVE)).some((j) => j.id === id && j.state === 'completed'),
    { timeoutMs: 90_000, intervalMs: 500 },
  );
  const [job] = await bossJobs(db.pool, ARCHIVE);
  expect(job).toMatchObject({ retry_count: 0 }); // never requeued
  await waitFor('the run to have its outcome', async () =>
    (await runsOf(db.pool, ARCHIVE)).every((r) => r.outcome),
  );
  expect((await runsOf(db.pool, ARCHIVE)).map((r) => [r.outcome, r.worker.endsWith(`:${old.pid}`)])).toEqual([
    ['completed', true],
  ]);
  expect(await count('SELECT count(*)::int AS n FROM tasker_tasks_archive')).toBe(100);
});

it('an archival run longer than its expiry is handed on before it, not failed', async () => {
  // Expiry 60 s; one batch can take 5 s (batch_statement_timeout_ms): the run stops starting
  // batches 15 s before, hands the rest on, and the next run finishes.
  const env = { TASKER__worker__job_expire_seconds: '60', TASKER__archive__pause_between_batches_ms: '700' };
  await installFor(db.url, { ...WORKER_ENV, ...env });
  await finishedGraphs(350);
  worker(env);
  await waitForWorkers(db.pool, 1);
  const id = await enqueue(['archive', '--retention-days', '1', '--batch-size', '5'], env);
  await waitFor(
    'every graph to be archived',
    async () => (await count('SELECT count(*)::int AS n FROM tasker_tasks_archive')) === 350,
    { timeoutMs: 150_000, intervalMs: 1000 },
  );
  await waitFor('every run to be completed', async () => {
    const jobs = await bossJobs(db.pool, ARCHIVE);
    return jobs.length >= 2 && jobs.every((j) => j.state === 'completed');
  });
  const jobs = await bossJobs(db.pool, ARCHIVE);
  expect(jobs[0]).toMatchObject({
    id,
    retry_count: 0,
    output: expect.objectContaining({ handed_on_to: jobs[1]!.id }),
  });
  expect(
    await count(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1`, [`${ARCHIVE}.failed`]),
  ).toBe(0);
  await waitFor('the runs to have outcomes', async () =>
    (await runsOf(db.pool, ARCHIVE)).every((r) => r.outcome),
  );
  const runs = await runsOf(db.pool, ARCHIVE);
  expect(runs.every((r) => r.outcome === 'completed')).toBe(true);
  const first = runs[0]!;
  expect(first.finished_at!.getTime() - first.started_at.getTime()).toBeLessThan(60_000);
  await installFor(db.url, WORKER_ENV);
}, 150_000); // by design about a minute (the 60 s expiry); the default 60 s timeout cut it on loaded machines
