/**
 * A PostgreSQL restart while a worker is running a job: the worker logs, reconnects and carries
 * on. The run cut off by the restart is retried and finishes; every task ends exactly once. Uses a
 * PostgreSQL of its own (the shared test server must not restart under other test files).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import pg from 'pg';
import { type EmbeddedServer, freePort, startEmbeddedPostgres } from '../../src/db/embedded.ts';
import { createPool } from '../../src/db/pool.ts';
import { databaseNow } from '../../src/db/queries/server.ts';
import { migrate } from '../../src/install/sql.ts';
import { runCli } from '../helpers/cli-process.ts';
import { insertTask, insertTemplate, minutesBefore } from '../helpers/factories.ts';
import { waitFor } from '../helpers/wait.ts';
import {
  FAST_WORKER_ENV,
  HELD_DETECTION_ENV,
  holdDetectionAtStart,
  installFor,
  startWorkerProcess,
  workerPort,
} from '../helpers/workers.ts';
import { startWeb, tokenWith } from '../web/web-process.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'tasker-restart-pg-'));
let port: number;
let server: EmbeddedServer;
let url: string;

beforeAll(async () => {
  port = await freePort();
  server = await startEmbeddedPostgres({ dataDir, port, persistent: true });
  const admin = new pg.Client({ connectionString: server.url('postgres') });
  await admin.connect();
  await admin.query('CREATE DATABASE restart_test');
  await admin.end();
  url = server.url('restart_test');
  const pool = createPool(url, { max: 2 });
  await migrate(pool);
  await pool.end();
  await installFor(url, { TASKER__staleness_detection__enabled: 'false', ...HELD_DETECTION_ENV });
});
afterAll(async () => {
  await server.stop();
});

it('survives a restart of PostgreSQL in the middle of a run', async () => {
  let pool = createPool(url, { max: 4 });
  const now = await databaseNow(pool);
  const template = await insertTemplate(pool);
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) {
    ids.push(
      await insertTask(pool, { template, state: 'waiting_for_retry', enteredAt: minutesBefore(now, 60) }),
    );
  }
  const env = { TASKER__staleness_detection__enabled: 'false', ...HELD_DETECTION_ENV };
  const worker = startWorkerProcess(url, env);
  try {
    const httpPort = await workerPort(worker);
    const ready = async () => (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status === 200;
    await waitFor('the worker to be ready', ready);
    // Start a run and hold it at its first statement, then restart the server under it.
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    holder.on('error', () => undefined); // it dies with the server
    await holdDetectionAtStart(holder);
    expect(
      (await runCli(['enqueue', 'detect-stale'], { DATABASE_URL: url, ...FAST_WORKER_ENV, ...env })).code,
    ).toBe(0);
    await waitFor('the run to be active', async () => {
      const { rows } = await pool.query(
        `SELECT count(*) AS n FROM pgboss.job WHERE name = 'tasker.detect-stale-tasks' AND state = 'active'`,
      );
      return rows[0].n === 1;
    });
    await pool.end();
    await server.stop({ fast: true }); // the worker's sessions are cut, as in a real restart
    await waitFor(
      '/readyz to report the database gone',
      async () => (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status === 503,
    );
    expect((await fetch(`http://127.0.0.1:${httpPort}/healthz`)).status).toBe(200); // alive all along
    server = await startEmbeddedPostgres({ dataDir, port, persistent: true });
    await waitFor('the worker to be ready again', ready, { timeoutMs: 60_000 });
    pool = createPool(url, { max: 4 });
    // The cut-off run is an interruption: given back and resumed, each stale task ends once.
    await waitFor(
      'every stale task to be in error with one investigation',
      async () => {
        const { rows } = await pool.query(
          `SELECT count(*) FILTER (WHERE errors = 1 AND entries = 1) AS done, count(*) FILTER (WHERE errors > 1 OR entries > 1) AS twice
             FROM (SELECT (SELECT count(*) FROM tasker_task_transitions x WHERE x.task_uuid = t AND x.to_state = 'error') AS errors,
                          (SELECT count(*) FROM tasker_tasks_dlq d WHERE d.task_uuid = t) AS entries
                     FROM unnest($1::uuid[]) t) o`,
          [ids],
        );
        expect(rows[0].twice).toBe(0);
        return rows[0].done === ids.length;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    expect(worker.stderrSoFar()).toMatch(/"level":"(error|warn)"/); // it said what happened
    // Recorded as an interruption by the database, never as a failure (no alert on failed runs).
    // Both attempts' rows: the cut-off one's start may reach the database only after the restart
    // (the history writer retries), and its end after that.
    await waitFor(
      'both attempts to have their outcome',
      async () => {
        const { rows } = await pool.query(
          `SELECT count(*)::int AS n, count(outcome)::int AS ended FROM tasker_job_runs WHERE job_name = 'tasker.detect-stale-tasks'`,
        );
        return rows[0].n >= 2 && rows[0].ended === rows[0].n;
      },
      { timeoutMs: 90_000 },
    );
    const { rows: runs } = await pool.query(
      // Detection's runs only: enrichment's scheduled sweeps run meanwhile, and one that started
      // before the held run would otherwise come first.
      `SELECT outcome, split_part(error, ':', 1) AS reason FROM tasker_job_runs
        WHERE job_name = 'tasker.detect-stale-tasks' ORDER BY started_at`,
    );
    expect(runs.filter((r) => r.outcome === 'failed')).toEqual([]);
    expect(runs[0]).toEqual({ outcome: 'interrupted', reason: 'database' });
    expect(runs.at(-1)).toMatchObject({ outcome: 'completed' });
    const { rows: dead } = await pool.query(
      `SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'tasker.detect-stale-tasks.failed'`,
    );
    expect(dead[0].n).toBe(0);
  } finally {
    await pool.end().catch(() => undefined);
    worker.kill('SIGTERM');
    expect((await worker.done).code).toBe(0);
  }
}, 180_000);

it('the API answers 503 with a retry hint while the database is away, and 200 once it is back', async () => {
  let pool = createPool(url, { max: 1 });
  const token = await tokenWith(pool, 'restart-reader', ['dlq:stats']);
  await pool.end();
  const web = await startWeb(url);
  try {
    expect((await web.request('GET', '/v1/dlq/stats', { token })).status).toBe(200);
    await server.stop({ fast: true });
    const away = await web.request('GET', '/v1/dlq/stats', { token });
    expect({
      status: away.status,
      code: away.body.error?.code,
      retryAfter: away.headers.get('retry-after'),
    }).toEqual({
      status: 503,
      code: 'DATABASE_UNAVAILABLE',
      retryAfter: '5',
    });
    expect((await web.request('GET', '/readyz')).status).toBe(503);
    server = await startEmbeddedPostgres({ dataDir, port, persistent: true });
    await waitFor(
      'the API to answer again',
      async () => (await web.request('GET', '/v1/dlq/stats', { token })).status === 200,
      {
        timeoutMs: 30_000,
      },
    );
    pool = createPool(url, { max: 1 });
  } finally {
    await pool.end().catch(() => undefined);
    await web.stop();
  }
});
