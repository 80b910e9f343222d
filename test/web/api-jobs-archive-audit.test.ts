/**
 * Jobs, the archive and the audit log through a real `web` process: job states, an enqueued run
 * (202, 409 while one waits) followed to its end by a real worker, retrying a dead-lettered run,
 * looking up and restoring an archived graph, and the audit log from the API and the CLI (one row
 * per change, with who, what, before and after).
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import { loadConfig } from '../../src/config/load.ts';
import { withTransaction } from '../../src/db/pool.ts';
import { archiveBatch } from '../../src/db/queries/archive.ts';
import { databaseNow } from '../../src/db/queries/server.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { createBoss } from '../../src/worker/boss.ts';
import { insertFinishedGraph } from '../helpers/archive-factories.ts';
import { cli } from '../helpers/cli.ts';
import { useTestDatabase } from '../helpers/db.ts';
import {
  hoursBefore,
  insertDlqEntry,
  insertTask,
  insertTemplate,
  minutesBefore,
} from '../helpers/factories.ts';
import { waitFor } from '../helpers/wait.ts';
import { bossJobs, startWorkerProcess } from '../helpers/workers.ts';
import { auditRows, tokenWith, useWebProcess } from './web-process.ts';

const db = useTestDatabase();
const web = useWebProcess(db);
let token: string;

beforeEach(async () => {
  await db.pool.query(
    `DELETE FROM pgboss.job WHERE name IN ('tasker.detect-stale-tasks', 'tasker.archive-finished-tasks', 'tasker.detect-stale-tasks.failed', 'tasker.archive-finished-tasks.failed')`,
  );
  token = await tokenWith(db.pool, 'ops', ['*']);
});

describe('jobs', () => {
  it('enqueue: 202 with the run id and where to follow it; 409 while one waits; one audit row', async () => {
    const r = await web.request('POST', '/v1/jobs/tasker.detect-stale-tasks/runs', {
      token,
      body: { options: { dry_run: true, batch_size: 50 } },
    });
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ job: 'tasker.detect-stale-tasks', job_id: expect.any(String) });
    expect(r.headers.get('location')).toBe(`/v1/jobs/tasker.detect-stale-tasks/runs/${r.body.job_id}`);
    const queued = await bossJobs(db.pool, 'tasker.detect-stale-tasks');
    expect(queued).toEqual([
      expect.objectContaining({
        id: r.body.job_id,
        state: 'created',
        data: { trigger: 'adhoc', options: { dry_run: true, batch_size: 50 } },
      }),
    ]);
    const again = await web.request('POST', '/v1/jobs/tasker.detect-stale-tasks/runs', { token, body: {} });
    expect(again.status).toBe(409);
    expect(again.body.error.message).toContain('already waiting');
    expect(await bossJobs(db.pool, 'tasker.detect-stale-tasks')).toHaveLength(1);
    const audit = await auditRows(db.pool, 'job.enqueue');
    expect(audit).toEqual([
      expect.objectContaining({
        actor: 'ops',
        target_kind: 'job',
        target_id: r.body.job_id,
        after: {
          job: 'tasker.detect-stale-tasks',
          job_id: r.body.job_id,
          options: { dry_run: true, batch_size: 50 },
        },
      }),
    ]);
    const follow = await web.request('GET', r.body.follow, { token });
    expect(follow.body).toMatchObject({
      job: 'tasker.detect-stale-tasks',
      job_id: r.body.job_id,
      state: 'created',
      runs: [],
    });
    const states = await web.request('GET', '/v1/jobs', { token });
    expect(states.body.find((j: { job: string }) => j.job === 'tasker.detect-stale-tasks').queue.queued).toBe(
      1,
    );
  });

  it('enqueue archive takes the throttle (batch_target_ms, duty_cycle_percent) as given', async () => {
    const options = { dry_run: true, batch_target_ms: 200, duty_cycle_percent: 25 };
    const r = await web.request('POST', '/v1/jobs/tasker.archive-finished-tasks/runs', {
      token,
      body: { options },
    });
    expect(r.status).toBe(202);
    expect(await bossJobs(db.pool, 'tasker.archive-finished-tasks')).toEqual([
      expect.objectContaining({ id: r.body.job_id, data: { trigger: 'adhoc', options } }),
    ]);
  });

  it.each([
    ['tasker.detect-stale-tasks', { options: { batch_size: 0 } }, 'options.batch_size'],
    ['tasker.detect-stale-tasks', { options: { colour: 'red' } }, 'options.colour'],
    ['tasker.archive-finished-tasks', { options: { retention_days: -1 } }, 'options.retention_days'],
    ['tasker.archive-finished-tasks', { options: { duty_cycle_percent: 0 } }, 'options.duty_cycle_percent'],
    ['tasker.archive-finished-tasks', { options: { batch_target_ms: 5 } }, 'options.batch_target_ms'],
    [
      'tasker.archive-finished-tasks',
      { options: { finished_before: 'yesterday' } },
      'options.finished_before',
    ],
    ['tasker.detect-stale-tasks', { options: {}, extra: 1 }, 'extra'],
    ['tasker.enrich-dlq-snapshots', { options: {} }, 'job'],
  ])('enqueue %s %j: 400 naming the field, nothing queued', async (job, body, field) => {
    const r = await web.request('POST', `/v1/jobs/${job}/runs`, { token, body });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(new RegExp(`^${field.replace('.', '\\.')}\\b`));
    const { rows } = await db.pool.query(`SELECT count(*) AS n FROM pgboss.job WHERE name LIKE '%-tasks'`);
    expect(rows[0].n).toBe(0);
    expect(await auditRows(db.pool, 'job.enqueue')).toHaveLength(0);
  });

  it('follows an enqueued run to its end through a real worker: state, counts', async () => {
    const t = await insertTemplate(db.pool);
    const now = await databaseNow(db.pool);
    await insertTask(db.pool, {
      template: t,
      state: 'waiting_for_dependencies',
      enteredAt: minutesBefore(now, 120),
    });
    const r = await web.request('POST', '/v1/jobs/tasker.detect-stale-tasks/runs', {
      token,
      body: { options: { dry_run: true } },
    });
    expect(r.status).toBe(202);
    const worker = startWorkerProcess(db.url);
    try {
      const done = await waitFor(
        'the run to complete',
        async () => {
          const f = await web.request('GET', r.body.follow, { token });
          return f.body.state === 'completed' && f.body.runs.length > 0 && f.body.runs[0].outcome
            ? f.body
            : undefined;
        },
        { timeoutMs: 60_000 },
      );
      expect(done.runs[0]).toMatchObject({
        job_name: 'tasker.detect-stale-tasks',
        trigger: 'adhoc',
        outcome: 'completed',
      });
      expect(done.runs[0].counts).toMatchObject({ dry_run: true });
      const states = await web.request('GET', '/v1/jobs', { token });
      const detect = states.body.find((j: { job: string }) => j.job === 'tasker.detect-stale-tasks');
      expect(detect.last_runs[0]).toMatchObject({ pgboss_job_id: r.body.job_id, outcome: 'completed' });
      expect(detect.schedule).toEqual(expect.any(String));
    } finally {
      worker.kill('SIGTERM');
      await worker.done;
    }
  }, 90_000);

  it('an unknown run is 404', async () => {
    const r = await web.request(
      'GET',
      '/v1/jobs/tasker.detect-stale-tasks/runs/0199c2a4-5e1f-7b3a-9d2e-4f6a8b0c1d2e',
      {
        token,
      },
    );
    expect(r.status).toBe(404);
  });

  it('lists a dead-lettered run with its error and retries it once (202, then 409; 404 unknown)', async () => {
    const boss = createBoss(
      loadConfig({ env: { TASKER_ENV: 'test' } }).config,
      db.url,
      'client',
      silentLogger(),
    );
    await boss.start();
    const data = { trigger: 'adhoc', options: { dry_run: true } };
    let deadId: string;
    try {
      deadId = (await boss.send('tasker.archive-finished-tasks.failed', data))!;
    } finally {
      await boss.stop({ graceful: false });
    }
    await db.pool.query(
      `UPDATE pgboss.job SET source_output = '{"message":"statement timeout"}'::jsonb, source_retry_count = 3 WHERE id = $1`,
      [deadId],
    );
    const states = await web.request('GET', '/v1/jobs', { token });
    const archive = states.body.find((j: { job: string }) => j.job === 'tasker.archive-finished-tasks');
    expect(archive.dead_lettered).toBe(1);
    expect(archive.dead_lettered_runs).toEqual([
      expect.objectContaining({ id: deadId, data, error: { message: 'statement timeout' }, retry_count: 3 }),
    ]);

    const r = await web.request(
      'POST',
      `/v1/jobs/tasker.archive-finished-tasks/dead-letters/${deadId}/retry`,
      {
        token,
      },
    );
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({
      job: 'tasker.archive-finished-tasks',
      dead_job_id: deadId,
      job_id: expect.any(String),
    });
    expect(await bossJobs(db.pool, 'tasker.archive-finished-tasks')).toEqual([
      expect.objectContaining({ id: r.body.job_id, state: 'created', data }),
    ]);
    expect(await bossJobs(db.pool, 'tasker.archive-finished-tasks.failed')).toEqual([
      expect.objectContaining({
        id: deadId,
        state: 'completed',
        output: { retried_as: r.body.job_id, retried_by: 'ops' },
      }),
    ]);
    const again = await web.request(
      'POST',
      `/v1/jobs/tasker.archive-finished-tasks/dead-letters/${deadId}/retry`,
      {
        token,
      },
    );
    expect(again.status).toBe(409);
    const unknown = await web.request(
      'POST',
      '/v1/jobs/tasker.archive-finished-tasks/dead-letters/0199c2a4-5e1f-7b3a-9d2e-4f6a8b0c1d2e/retry',
      { token },
    );
    expect(unknown.status).toBe(404);
    expect(await auditRows(db.pool, 'job.retry')).toEqual([
      expect.objectContaining({
        actor: 'ops',
        target_id: deadId,
        after: expect.objectContaining({ retried_as: r.body.job_id }),
      }),
    ]);
  });
});

describe('cancelling a run', () => {
  it('this_run_only rides with the request; cancel stops a waiting run (audited), then 409; unknown 404', async () => {
    const job = 'tasker.archive-finished-tasks';
    const r = await web.request('POST', `/v1/jobs/${job}/runs`, {
      token,
      body: { this_run_only: true, options: { max_batches: 3 } },
    });
    expect(r.status).toBe(202);
    expect(await bossJobs(db.pool, job)).toEqual([
      expect.objectContaining({
        id: r.body.job_id,
        state: 'created',
        // In the previous release's format (its workers refuse a field they do not know); this
        // run only is recorded beside it, where this build's workers read it.
        data: { trigger: 'adhoc', options: { max_batches: 3 } },
      }),
    ]);
    const extras = await db.pool.query(
      'SELECT extras FROM tasker_run_request_extras WHERE pgboss_job_id = $1',
      [r.body.job_id],
    );
    expect(extras.rows).toEqual([{ extras: { this_run_only: true } }]);
    const cancelled = await web.request('POST', `/v1/jobs/${job}/runs/${r.body.job_id}/cancel`, { token });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toEqual({
      job,
      requested_id: r.body.job_id,
      job_id: r.body.job_id,
      previous_state: 'created',
      also_cancelled: [],
      links: 1,
    });
    expect((await bossJobs(db.pool, job)).map((j) => j.state)).toEqual(['cancelled']);
    const followed = await web.request('GET', `/v1/jobs/${job}/runs/${r.body.job_id}`, { token });
    expect(followed.body.chain).toMatchObject({
      status: 'cancelled',
      first_job_id: r.body.job_id,
      head_job_id: r.body.job_id,
    });
    expect(await auditRows(db.pool, 'job.cancel')).toEqual([
      expect.objectContaining({
        actor: 'ops',
        actor_kind: 'token',
        target_id: r.body.job_id,
        before: { state: 'created' },
        after: { state: 'cancelled' },
      }),
    ]);
    const again = await web.request('POST', `/v1/jobs/${job}/runs/${r.body.job_id}/cancel`, { token });
    expect(again.status).toBe(409);
    expect(again.body.error.message).toContain('has already ended (cancelled');
    const unknown = await web.request(
      'POST',
      `/v1/jobs/${job}/runs/0199c2a4-5e1f-7b3a-9d2e-4f6a8b0c1d2e/cancel`,
      { token },
    );
    expect(unknown.status).toBe(404);
    expect(await auditRows(db.pool, 'job.cancel')).toHaveLength(1);
  });
});

describe('restoring past retention', () => {
  it('says the next run would archive it again; hold_days keeps archival off until the hold ends', async () => {
    const t = await insertTemplate(db.pool);
    const now = await databaseNow(db.pool);
    const archiveAt = (at: Date) =>
      withTransaction(db.pool, (c) =>
        archiveBatch(c, {
          now: at,
          dryRun: false,
          retentionDays: 30,
          batchSize: 10,
          policies: {
            archive_completed: true,
            archive_failed: true,
            archive_cancelled: true,
            archive_resolved_manually: true,
            archive_dlq_resolved: true,
          },
        }),
      );
    const [held, unheld] = [
      await insertFinishedGraph(db.pool, {
        named_task_uuid: t.named_task_uuid,
        state: 'complete',
        finishedAt: hoursBefore(now, 24 * 40),
      }),
      await insertFinishedGraph(db.pool, {
        named_task_uuid: t.named_task_uuid,
        state: 'error',
        finishedAt: hoursBefore(now, 24 * 45),
      }),
    ];
    expect((await archiveAt(now)).tasks_archived).toBe(2);

    const plain = await web.request('POST', `/v1/archive/tasks/${unheld}/restore`, { token });
    expect(plain.status).toBe(200);
    expect(plain.body).toMatchObject({ past_retention: true, held_until: null, state: 'error' });
    expect(plain.body.archival).toMatch(
      /^it finished 45 d( \d+ h)? ago \(error\), past the retention of 30 days: the next archival run archives it again$/,
    );

    const bad = await web.request('POST', `/v1/archive/tasks/${held}/restore`, {
      token,
      body: { hold_days: 0 },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/^hold_days: /);
    const holding = await web.request('POST', `/v1/archive/tasks/${held}/restore`, {
      token,
      body: { hold_days: 2 },
    });
    expect(holding.status).toBe(200);
    const until = new Date(holding.body.held_until);
    expect(until.getTime() - now.getTime()).toBeGreaterThanOrEqual(2 * 86_400_000 - 60_000);
    expect(holding.body).toMatchObject({ past_retention: true });
    expect(holding.body.archival).toMatch(/^held out of archival until /);
    expect(await auditRows(db.pool, 'archive.restore')).toEqual([
      expect.objectContaining({ target_id: unheld }),
      expect.objectContaining({
        target_id: held,
        after: expect.objectContaining({ held_until: holding.body.held_until }),
      }),
    ]);

    // Either side of the hold's end: the unheld task goes back at once, the held one after the hold.
    const justBefore = new Date(until.getTime() - 60_000);
    const first = await archiveAt(justBefore);
    expect(first.task_uuids).toEqual([unheld]);
    const after = await archiveAt(new Date(until.getTime() + 60_000));
    expect(after.task_uuids).toEqual([held]);
  });
});

describe('archive', () => {
  it('looks up an archived graph by task uuid and restores it (audited); then 404', async () => {
    const t = await insertTemplate(db.pool);
    const now = await databaseNow(db.pool);
    const task = await insertFinishedGraph(db.pool, {
      named_task_uuid: t.named_task_uuid,
      state: 'complete',
      finishedAt: hoursBefore(now, 24 * 40),
    });
    await withTransaction(db.pool, (c) =>
      archiveBatch(c, {
        now,
        dryRun: false,
        retentionDays: 30,
        batchSize: 10,
        policies: {
          archive_completed: true,
          archive_failed: true,
          archive_cancelled: true,
          archive_resolved_manually: true,
          archive_dlq_resolved: true,
        },
      }),
    );
    const live = await web.request('GET', `/v1/dlq/task/${task}`, { token });
    expect(live.status).toBe(404);

    const graph = await web.request('GET', `/v1/archive/tasks/${task}`, { token });
    expect(graph.status).toBe(200);
    expect(graph.body.task).toMatchObject({ task_uuid: task, archived_at: expect.any(String) });
    expect([
      graph.body.transitions.length,
      graph.body.steps.length,
      graph.body.edges.length,
      graph.body.step_transitions.length,
    ]).toEqual([4, 5, 4, 15]);

    const restored = await web.request('POST', `/v1/archive/tasks/${task}/restore`, { token });
    expect(restored.status).toBe(200);
    expect(restored.body).toMatchObject({
      task_uuid: task,
      tasks_restored: 1,
      steps_restored: 5,
      edges_restored: 4,
    });
    const { rows } = await db.pool.query('SELECT count(*) AS n FROM tasker_tasks WHERE task_uuid = $1', [
      task,
    ]);
    expect(rows[0].n).toBe(1);
    expect(await auditRows(db.pool, 'archive.restore')).toEqual([
      expect.objectContaining({
        actor: 'ops',
        target_kind: 'task',
        target_id: task,
        before: { location: 'archive' },
      }),
    ]);

    expect((await web.request('GET', `/v1/archive/tasks/${task}`, { token })).status).toBe(404);
    const again = await web.request('POST', `/v1/archive/tasks/${task}/restore`, { token });
    expect(again.status).toBe(404);
    expect(again.body.error.message).toContain('live tables');
    expect(await auditRows(db.pool, 'archive.restore')).toHaveLength(1);
  });
});

describe('audit log', () => {
  it('records CLI changes (resolve, add, enqueue) with the --by name, and lists by actor and since', async () => {
    const env = { DATABASE_URL: db.url };
    const t = await insertTemplate(db.pool);
    const now = await databaseNow(db.pool);
    const task = await insertTask(db.pool, {
      template: t,
      state: 'error',
      enteredAt: minutesBefore(now, 10),
    });
    const entry = await insertDlqEntry(db.pool, {
      task,
      reason: 'staleness_timeout',
      at: minutesBefore(now, 30),
    });
    const resolved = await cli(
      ['dlq', 'resolve', entry, '--status', 'cancelled', '--notes', 'duplicate', '--by', 'alice'],
      env,
    );
    expect(resolved.code).toBe(0);
    const added = await cli(['dlq', 'add', task, '--notes', 'look again', '--by', 'bob', '--json'], env);
    expect(added.code).toBe(0);
    const enqueued = await cli(['enqueue', 'detect-stale', '--dry-run', '--by', 'carol', '--json'], env);
    expect(enqueued.code).toBe(0);
    const refused = await cli(['enqueue', 'detect-stale', '--by', 'carol'], env);
    expect(refused.code).toBe(2);

    const rows = await auditRows(db.pool);
    expect(rows.map((r) => [r.actor, r.actor_kind, r.action, r.target_id])).toEqual([
      ['test', 'cli', 'token.create', 'ops'],
      ['alice', 'cli', 'dlq.resolve', entry],
      ['bob', 'cli', 'dlq.add', added.json().dlq_entry_uuid],
      ['carol', 'cli', 'job.enqueue', enqueued.json().job_id],
    ]);
    expect(rows[1]).toMatchObject({
      before: expect.objectContaining({ resolution_status: 'pending' }),
      after: expect.objectContaining({
        resolution_status: 'cancelled',
        resolution_notes: 'duplicate',
        resolved_by: 'alice',
      }),
    });

    const byAlice = await web.request('GET', '/v1/audit?actor=alice', { token });
    expect(byAlice.body.map((r: { action: string }) => r.action)).toEqual(['dlq.resolve']);
    const all = await web.request('GET', '/v1/audit?limit=2', { token });
    expect(all.body.map((r: { actor: string }) => r.actor)).toEqual(['carol', 'bob']);
    const paged = await web.request('GET', `/v1/audit?limit=2&before_id=${all.body[1].audit_id}`, { token });
    expect(paged.body.map((r: { actor: string }) => r.actor)).toEqual(['alice', 'test']);
    const future = await web.request(
      'GET',
      `/v1/audit?since=${new Date(Date.now() + 3_600_000).toISOString()}`,
      {
        token,
      },
    );
    expect(future.body).toEqual([]);
    const bad = await web.request('GET', '/v1/audit?since=yesterday', { token });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/^since\b/);

    const cliAudit = await cli(['audit', '--actor', 'bob', '--json'], env);
    expect(cliAudit.json().map((r: { action: string }) => r.action)).toEqual(['dlq.add']);
    const cliSince = await cli(['audit', '--since', '2999-01-01'], env);
    expect(cliSince.stdout).toContain('no audit rows match');
    const table = await cli(['audit'], env);
    expect(table.stdout).toContain('resolution_status: "pending" -> "cancelled"');
  });

  it('--since takes a span back from now: 1h leaves out a change made 2 hours ago', async () => {
    const now = await databaseNow(db.pool);
    await db.pool.query(
      `INSERT INTO tasker_audit_log (at, actor, actor_kind, action, target_kind, target_id)
       VALUES ($1, 'early', 'cli', 'dlq.add', 'dlq_entry', 'e1'), ($2, 'late', 'cli', 'dlq.add', 'dlq_entry', 'e2')`,
      [hoursBefore(now, 2), minutesBefore(now, 30)],
    );
    const run = await cli(['audit', '--since', '1h', '--json'], { DATABASE_URL: db.url });
    expect(run.code).toBe(0);
    // The token made for this test at now, and the change 30 minutes ago; not the one 2 hours ago.
    expect(run.json().map((r: { actor: string }) => r.actor)).toEqual(['test', 'late']);
    const bad = await cli(['audit', '--since', 'lately'], { DATABASE_URL: db.url });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(
      '--since "lately": expected a time with a zone such as 2026-05-01T00:00:00Z',
    );
  });
});
