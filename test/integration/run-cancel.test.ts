/**
 * A run does what the operator asked for and no more (issue 28, item 3): "this run only" stops at
 * max_batches instead of handing the rest on, and `cancel` stops a running run after the batch in
 * hand, with nothing handed on and an audit row. Real `worker` processes on a real database; every
 * wait is on database state.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import { databaseNow } from '../../src/db/queries/server.ts';
import { insertFinishedGraphs } from '../helpers/archive-factories.ts';
import { runCli } from '../helpers/cli-process.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { hoursBefore, insertTask, insertTemplate, minutesBefore } from '../helpers/factories.ts';
import { waitFor } from '../helpers/wait.ts';
import {
  bossJobs,
  FAST_WORKER_ENV,
  installFor,
  runsOf,
  startWorkerProcess,
  waitForWorkers,
} from '../helpers/workers.ts';

const DETECT = 'tasker.detect-stale-tasks';
const ARCHIVE = 'tasker.archive-finished-tasks';
// No schedules: every run here is started by the test. Archival pauses a minute between batches,
// so a cancelled run that did not stop would be seen doing its second batch.
const ENV = {
  ...FAST_WORKER_ENV,
  TASKER__staleness_detection__enabled: 'false',
  TASKER__archive__enabled: 'false',
  TASKER__archive__pause_between_batches_ms: '60000',
};

const db = useTestDatabase();

beforeEach(async () => {
  await installFor(db.url, ENV);
  await resetTables(db.pool);
  await db.pool.query(`DELETE FROM pgboss.job WHERE name LIKE 'tasker.%'`);
  await db.pool.query('TRUNCATE tasker_audit_log');
});

const cli = (args: string[]) => runCli(args, { DATABASE_URL: db.url, ...ENV, USER: 'oncall' });

async function staleTasks(n: number): Promise<string[]> {
  const now = await databaseNow(db.pool);
  const t = await insertTemplate(db.pool);
  const ids: string[] = [];
  for (let i = 0; i < n; i++)
    ids.push(
      await insertTask(db.pool, {
        template: t,
        state: 'waiting_for_retry',
        enteredAt: minutesBefore(now, 300 - i),
      }),
    );
  return ids;
}

async function errored(ids: string[]): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM tasker_task_transitions WHERE task_uuid = ANY ($1::uuid[]) AND most_recent AND to_state = 'error'`,
    [ids],
  );
  return rows[0]!.n;
}

describe('max batches', () => {
  it('--this-run-only stops at max batches with stale tasks left; without it the rest is handed on until done', async () => {
    const ids = await staleTasks(30);
    const worker = startWorkerProcess(db.url, ENV);
    try {
      await waitForWorkers(db.pool, 1);
      const once = await cli([
        'enqueue',
        'detect-stale',
        '--batch-size',
        '10',
        '--max-batches',
        '1',
        '--this-run-only',
        '--wait',
        '--json',
      ]);
      expect(once.code).toBe(0);
      expect(JSON.parse(once.stdout)).toMatchObject({
        state: 'completed',
        output: { tasks_detected: 10, batches: 1 },
      });
      expect(JSON.parse(once.stdout).output.handed_on_to).toBeUndefined();
      expect(await errored(ids)).toBe(10);
      expect((await bossJobs(db.pool, DETECT)).map((j) => j.state)).toEqual(['completed']);

      const chained = await cli([
        'enqueue',
        'detect-stale',
        '--batch-size',
        '10',
        '--max-batches',
        '1',
        '--wait',
        '--json',
      ]);
      expect(chained.code).toBe(0);
      expect(await errored(ids)).toBe(30);
      const jobs = await bossJobs(db.pool, DETECT);
      // The second request handed on link by link (two full batches, then the pages of errored
      // tasks past their lifetime) until its pass was through: each link goes on from the
      // previous one's cursor, judging against the time the pass started with.
      expect(jobs.length).toBeGreaterThanOrEqual(4);
      const links = jobs.slice(2);
      for (const [i, link] of links.entries())
        expect(link.data).toMatchObject({ continues: jobs[i + 1]!.id });
      // The cursor travels beside each link (the previous release's workers refuse a `resume`
      // option), never in its data.
      expect(links.filter((j) => 'resume' in ((j.data as { options?: object }).options ?? {}))).toEqual([]);
      const { rows: extras } = await db.pool.query<{
        extras: { options: { resume: { judged_at: string } } };
      }>('SELECT extras FROM tasker_run_request_extras WHERE pgboss_job_id = ANY($1::uuid[])', [
        links.map((j) => j.id),
      ]);
      expect(extras).toHaveLength(links.length);
      const resumes = extras.map((x) => x.extras.options.resume);
      expect(new Set(resumes.map((r) => r.judged_at)).size).toBe(1);
      expect(jobs.every((j) => j.state === 'completed')).toBe(true);
    } finally {
      worker.kill('SIGTERM');
      expect((await worker.done).code).toBe(0);
    }
  });
});

describe('cancel', () => {
  it('a running run stops after the batch in hand and hands nothing on; the CLI says so; audited', async () => {
    const now = await databaseNow(db.pool);
    const t = await insertTemplate(db.pool);
    const graphs = await insertFinishedGraphs(db.pool, {
      named_task_uuid: t.named_task_uuid,
      state: 'complete',
      finishedAt: hoursBefore(now, 24 * 40),
      count: 20,
    });
    const worker = startWorkerProcess(db.url, ENV);
    try {
      await waitForWorkers(db.pool, 1);
      const queued = await cli(['enqueue', 'archive', '--batch-size', '5', '--max-batches', '10', '--json']);
      expect(queued.code).toBe(0);
      const id = JSON.parse(queued.stdout).job_id as string;
      // Its first batch is done and it pauses (a minute) before the next.
      await waitFor(
        'the first batch',
        async () => (await runsOf(db.pool, ARCHIVE))[0]?.counts?.tasks_archived === 5,
      );

      const cancelled = await cli(['cancel', id]);
      expect(cancelled).toMatchObject({ code: 0 });
      expect(cancelled.stdout).toBe(
        `cancelled run ${id} of ${ARCHIVE}: it was running; it stops after the batch in hand and hands nothing on\n`,
      );
      // It stops within seconds, long before its pause would have ended.
      const [run] = await waitFor(
        'the run to end',
        async () => {
          const runs = await runsOf(db.pool, ARCHIVE);
          return runs[0]?.outcome ? runs : undefined;
        },
        { timeoutMs: 30_000 },
      );
      expect(run).toMatchObject({
        outcome: 'interrupted',
        counts: expect.objectContaining({ tasks_archived: 5, batches: 1 }),
      });
      const { rows: error } = await db.pool.query('SELECT error FROM tasker_job_runs WHERE run_id = $1', [
        run!.run_id,
      ]);
      expect(error[0].error).toContain('was not handed on');
      expect((await bossJobs(db.pool, ARCHIVE)).map((j) => [j.id, j.state])).toEqual([[id, 'cancelled']]);
      const { rows: live } = await db.pool.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM tasker_tasks WHERE task_uuid = ANY ($1::uuid[])',
        [graphs],
      );
      expect(live[0]!.n).toBe(15);
      const { rows: audit } = await db.pool.query(
        'SELECT actor, actor_kind, target_id, before FROM tasker_audit_log WHERE action = $1',
        ['job.cancel'],
      );
      expect(audit).toEqual([
        { actor: 'oncall', actor_kind: 'cli', target_id: id, before: { state: 'active' } },
      ]);
      const again = await cli(['cancel', id]);
      expect(again.code).toBe(2);
      expect(again.stderr).toContain('has already ended (cancelled');
    } finally {
      worker.kill('SIGTERM');
      expect((await worker.done).code).toBe(0);
    }
  });
});
