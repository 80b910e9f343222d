/**
 * A run's claim on its pg-boss job, piece by piece, on real pg-boss rows: the commit fence, the
 * recovery pass's second look under the row's lock (and its timeouts), requeues that merge only
 * identical requests, a run giving itself back before pg-boss's expiry, and what counts as an
 * interruption rather than a failure. The multi-process versions are in takeover.test.ts.
 */
import { afterAll, beforeAll, beforeEach, expect, it } from '@jest/globals';
import pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { JOBS } from '../../jobs/index.ts';
import { loadConfig } from '../../src/config/load.ts';
import { withTransaction } from '../../src/db/pool.ts';
import {
  attemptsHoldRun,
  findLostRuns,
  PGBOSS_SCHEMA_VERSION,
  requeueRun,
} from '../../src/db/queries/boss-jobs.ts';
import { saveRequestExtras } from '../../src/db/queries/run-request-extras.ts';
import { ClaimLostError } from '../../src/errors.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { RunObserver } from '../../src/telemetry/run-events.ts';
import { createBoss } from '../../src/worker/boss.ts';
import { startBoss } from '../../src/worker/process.ts';
import { recoverLostRuns } from '../../src/worker/recovery.ts';
import { interruptionOf, RunClaim } from '../../src/worker/run-claim.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { FAST_WORKER_ENV, installFor } from '../helpers/workers.ts';

const ARCHIVE = 'tasker.archive-finished-tasks';
const db = useTestDatabase();
const config = loadConfig({ env: { TASKER_ENV: 'test', ...FAST_WORKER_ENV } }).config;
let boss: PgBoss;

beforeAll(async () => {
  await installFor(db.url); // heartbeat_seconds 10: each job row carries 20, a run is lost after 10
  boss = createBoss(config, db.url, 'client', silentLogger());
  await startBoss(boss);
});
afterAll(async () => {
  await boss.stop({ graceful: false });
});
beforeEach(async () => {
  await db.pool.query(`DELETE FROM pgboss.job WHERE name LIKE 'tasker.%'`);
});

/** Sends a run request and takes it as a worker would: active, attempt retryCount. */
async function activeRun(options?: Record<string, unknown>) {
  const id = await boss.send(
    ARCHIVE,
    { trigger: 'adhoc', ...(options ? { options } : {}) },
    { singletonKey: 'run' },
  );
  const [job] = await boss.fetch(ARCHIVE, { includeMetadata: true });
  expect(job?.id).toBe(id);
  return { name: ARCHIVE, id: job!.id, retryCount: job!.retryCount };
}

const heartbeatAgo = (id: string, seconds: number) =>
  db.pool.query(
    `UPDATE pgboss.job SET heartbeat_on = pgboss.job_now() - $2 * interval '1 second' WHERE id = $1`,
    [id, seconds],
  );

const state = async (id: string) =>
  (await db.pool.query('SELECT state, retry_count FROM pgboss.job WHERE id = $1', [id])).rows[0];

it('the pg-boss schema these queries were written for is the installed pg-boss’s', async () => {
  expect(await boss.schemaVersion()).toBe(PGBOSS_SCHEMA_VERSION);
});

it('a run is lost by its own job row’s heartbeat setting: rows either side of half of it', async () => {
  const run = await activeRun();
  await heartbeatAgo(run.id, 9); // the row says 20: lost after 10
  expect(await findLostRuns(db.pool, [ARCHIVE])).toEqual([]);
  await heartbeatAgo(run.id, 11);
  expect(await findLostRuns(db.pool, [ARCHIVE])).toEqual([
    expect.objectContaining({ id: run.id, lost_after_seconds: 10 }),
  ]);
});

it('recovery does not requeue a run whose worker heartbeat after the look, and the run is not handed out twice', async () => {
  const run = await activeRun();
  await heartbeatAgo(run.id, 3600);
  const [lost] = await findLostRuns(db.pool, [ARCHIVE]);
  expect(lost?.id).toBe(run.id);
  // The live worker's heartbeat lands between the look and the requeue.
  expect(await boss.touch(ARCHIVE, [run])).toMatchObject({ affected: 1 });
  const outcome = await requeueRun(db.pool, {
    ...run,
    delaySeconds: 0,
    extendLimit: true,
    data: { trigger: 'adhoc' },
    output: { message: 'interrupted' },
    onlyIfHeartbeatOlderThanSeconds: lost!.lost_after_seconds,
    timeoutMs: 5000,
  });
  expect(outcome).toEqual({ placed: 'alive' });
  expect(await state(run.id)).toEqual({ state: 'active', retry_count: 0 });
  expect(await boss.fetch(ARCHIVE)).toEqual([]);
});

it('the commit fence: a batch commits only while its attempt holds the run', async () => {
  const run = await activeRun();
  const held = () => withTransaction(db.pool, (c) => attemptsHoldRun(c, [run]));
  expect(await held()).toBe(true);
  // Taken for lost and requeued: the old attempt holds nothing, the next fetch is a new attempt.
  await requeueRun(db.pool, {
    ...run,
    delaySeconds: 0,
    extendLimit: true,
    data: { trigger: 'adhoc' },
    output: { message: 'interrupted' },
    timeoutMs: 5000,
  });
  expect(await held()).toBe(false);
  const [again] = await boss.fetch(ARCHIVE);
  expect(again).toMatchObject({ id: run.id, retryCount: 1 });
  expect(await held()).toBe(false);
  expect(await withTransaction(db.pool, (c) => attemptsHoldRun(c, [{ ...run, retryCount: 1 }]))).toBe(true);
  // A batch written under the fence rolls back whole when it fails.
  await db.pool.query('CREATE TABLE IF NOT EXISTS fenced_batch (n int)');
  const claim = {
    fence: async (c: pg.PoolClient) => {
      if (!(await attemptsHoldRun(c, [run]))) throw new ClaimLostError('gone');
    },
  };
  await expect(
    withTransaction(db.pool, (c) => c.query('INSERT INTO fenced_batch VALUES (1)'), {
      beforeCommit: claim.fence,
    }),
  ).rejects.toThrow(ClaimLostError);
  expect((await db.pool.query('SELECT count(*)::int AS n FROM fenced_batch')).rows[0].n).toBe(0);
});

it('a requeue merges only into an identical request; a scheduled tick gives way; another request is not merged into', async () => {
  const lostRun = async (options: Record<string, unknown>, waiting: Record<string, unknown> | null) => {
    await db.pool.query(`DELETE FROM pgboss.job WHERE name LIKE 'tasker.%'`);
    // A failed run waiting to retry (the retry slot), the lost run (active), a waiting request.
    const retrying = await activeRun({ retention_days: 90 });
    await boss.fail(ARCHIVE, [retrying], { message: 'failed' });
    expect((await state(retrying.id)).state).toBe('retry');
    const run = await activeRun(options);
    const waitingId = waiting ? await boss.send(ARCHIVE, waiting, { singletonKey: 'run' }) : null;
    const outcome = await requeueRun(db.pool, {
      ...run,
      delaySeconds: 0,
      extendLimit: true,
      data: { trigger: 'adhoc', options },
      output: { message: 'interrupted' },
      timeoutMs: 5000,
    });
    return { run, waitingId, outcome };
  };
  const same = await lostRun({ retention_days: 5 }, { trigger: 'adhoc', options: { retention_days: 5 } });
  expect(same.outcome).toEqual({ placed: 'merged', into: same.waitingId });

  const tick = await lostRun({ retention_days: 5 }, { trigger: 'schedule' });
  expect(tick.outcome).toEqual({ placed: 'replaced', replaced: tick.waitingId });
  expect(await state(tick.run.id)).toMatchObject({ state: 'created' });
  expect(await state(tick.waitingId!)).toMatchObject({ state: 'cancelled' });

  // Same options, but the waiting request is "this run only" (kept beside the job, where the
  // previous release's workers do not read it): not the same request.
  {
    await db.pool.query(`DELETE FROM pgboss.job WHERE name LIKE 'tasker.%'`);
    const retrying = await activeRun({ retention_days: 90 });
    await boss.fail(ARCHIVE, [retrying], { message: 'failed' });
    const run = await activeRun({ retention_days: 5 });
    const waitingId = (await boss.send(
      ARCHIVE,
      { trigger: 'adhoc', options: { retention_days: 5 } },
      { singletonKey: 'run' },
    ))!;
    await saveRequestExtras(db.pool, {
      pgbossJobId: waitingId,
      jobName: ARCHIVE,
      extras: { this_run_only: true },
    });
    const outcome = await requeueRun(db.pool, {
      ...run,
      delaySeconds: 0,
      extendLimit: true,
      data: { trigger: 'adhoc', options: { retention_days: 5 } },
      output: { message: 'interrupted' },
      timeoutMs: 5000,
    });
    expect(outcome).toMatchObject({ placed: 'dropped' });
    expect(await state(waitingId)).toMatchObject({ state: 'created' });
  }

  const other = await lostRun({ retention_days: 5 }, { trigger: 'adhoc', options: { namespace: 'billing' } });
  expect(other.outcome).toMatchObject({ placed: 'dropped' });
  expect(await state(other.waitingId!)).toMatchObject({ state: 'created' }); // untouched
  const { rows } = await db.pool.query('SELECT state, output FROM pgboss.job WHERE id = $1', [other.run.id]);
  expect(rows[0]).toMatchObject({
    state: 'cancelled',
    output: { dropped: true, request: { trigger: 'adhoc', options: { retention_days: 5 } } },
  });
});

it('a run still going just before its expiry gives its run back: pg-boss’s own fail then finds nothing, and the fence refuses', async () => {
  const run = await activeRun();
  const claim = new RunClaim({
    pool: db.pool,
    logger: silentLogger(),
    attempts: [run],
    data: [{ trigger: 'adhoc' }],
    shutdown: new AbortController().signal,
    claimSignals: [],
    expiresInMs: 3_500, // gives back 3 s before: after half a second
    longestBatchMs: 0,
    shutdownTimeoutMs: 25_000,
    requeueTimeoutMs: 5_000,
  });
  try {
    expect(claim.signal.aborted).toBe(true); // no room for a batch before the deadline
    const deadline = Date.now() + 5_000;
    while (!claim.surrendered && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(claim.surrendered).toMatchObject({ reason: 'expiry', outcome: { placed: 'retry' } });
    expect(await state(run.id)).toEqual({ state: 'retry', retry_count: 0 });
    // pg-boss's expiry (or shutdown) fail of this attempt changes nothing now.
    expect(await boss.fail(ARCHIVE, [run], { message: 'job timed out' })).toMatchObject({ affected: 0 });
    expect(await state(run.id)).toEqual({ state: 'retry', retry_count: 0 });
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1`, [
      `${ARCHIVE}.failed`,
    ]);
    expect(rows[0].n).toBe(0);
    await expect(
      withTransaction(db.pool, async () => undefined, { beforeCommit: claim.fence }),
    ).rejects.toThrow(ClaimLostError);
    const interruption = interruptionOf(
      new Error('batch 3 failed', { cause: new ClaimLostError('x') }),
      claim,
    );
    expect(interruption?.reason).toBe('expiry');
  } finally {
    claim.dispose();
  }
});

it('a recovery pass whose row is held fails within its lock timeout instead of hanging', async () => {
  const run = await activeRun();
  await heartbeatAgo(run.id, 3600);
  const holder = await db.connect();
  await holder.query('BEGIN');
  await holder.query('SELECT 1 FROM pgboss.job WHERE id = $1 FOR UPDATE', [run.id]);
  try {
    const t0 = Date.now();
    const fast = loadConfig({ env: { TASKER_ENV: 'test', TASKER__database__lock_timeout_ms: '500' } }).config;
    await expect(
      recoverLostRuns({
        config: fast,
        pool: db.pool,
        logger: silentLogger(),
        observer: new RunObserver(),
        jobs: JOBS,
      }),
    ).rejects.toMatchObject({ code: '55P03' });
    expect(Date.now() - t0).toBeLessThan(3_000);
  } finally {
    await holder.query('ROLLBACK');
  }
});

it('no free connection, a cut connection and a stopped server are interruptions; a statement timeout is a failure', async () => {
  const claim = new RunClaim({
    pool: db.pool,
    logger: silentLogger(),
    attempts: [],
    data: [],
    shutdown: new AbortController().signal,
    claimSignals: [],
    expiresInMs: 600_000,
    longestBatchMs: 0,
    shutdownTimeoutMs: 25_000,
    requeueTimeoutMs: 5_000,
  });
  try {
    const tiny = new pg.Pool({ connectionString: db.url, max: 1, connectionTimeoutMillis: 200 });
    const held = await tiny.connect();
    const waited = await tiny.connect().catch((e: Error) => e);
    held.release();
    await tiny.end();
    expect(interruptionOf(new Error('batch failed', { cause: waited }), claim)?.reason).toBe('no_connection');

    const victim = await db.connect();
    victim.on('error', () => undefined); // the cut arrives as an event too
    const pid = (await victim.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const cut = victim.query('SELECT pg_sleep(10)').catch((e: Error) => e);
    await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
    expect(interruptionOf(await cut, claim)?.reason).toBe('database');

    const timedOut = await withTransaction(db.pool, (c) => c.query('SELECT pg_sleep(1)'), {
      statementTimeoutMs: 100,
    }).catch((e: Error) => e);
    expect((timedOut as { code?: string }).code).toBe('57014');
    expect(interruptionOf(timedOut, claim)).toBeNull();
  } finally {
    claim.dispose();
  }
});
