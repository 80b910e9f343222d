/**
 * The operations kit against a real Prometheus (Debian's package): two worker processes scraped
 * every second by /usr/bin/prometheus on a loopback port, loading ops/prometheus/alerts.yml. After
 * the workers detect, enrich, archive, fail once and reject once, every query of every panel of
 * ops/grafana/dashboard.json returns data through Prometheus's HTTP API, and every alert evaluates
 * without error to the state this history calls for (and its expression returns data exactly when
 * it is pending or firing). Then both workers stop and TaskerWorkersAbsent goes pending.
 * Bounded: about a minute; every process it starts is killed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from '@jest/globals';
import pg from 'pg';
import { loadConfig } from '../../src/config/load.ts';
import { type EmbeddedServer, freePort, startEmbeddedPostgres } from '../../src/db/embedded.ts';
import { createPool } from '../../src/db/pool.ts';
import { databaseNow } from '../../src/db/queries/server.ts';
import { migrate } from '../../src/install/sql.ts';
import { projectRoot } from '../../src/paths.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { createBoss } from '../../src/worker/boss.ts';
import { startBoss } from '../../src/worker/process.ts';
import { insertFinishedGraphs } from '../helpers/archive-factories.ts';
import { type CliProcess, runCli } from '../helpers/cli-process.ts';
import { hoursBefore, insertTask, insertTemplate, minutesBefore } from '../helpers/factories.ts';
import { waitFor } from '../helpers/wait.ts';
import {
  FAST_WORKER_ENV,
  holdDetectionAtStart,
  installFor,
  runsOf,
  startWorkerProcess,
  waitForWorkers,
  workerPort,
} from '../helpers/workers.ts';

const DETECT = 'tasker.detect-stale-tasks';
const WORKER_ENV = {
  // Detection's schedule off: this test starts every detection run itself. An hourly schedule
  // still fires at the top of the hour; when that falls between the workers' start and
  // Prometheus's first scrape, the 12 detections are in the counter's first sample, its increase
  // is 0, and TaskerStaleTasksSurge stays inactive (the likely cause of one CI failure).
  TASKER__staleness_detection__enabled: 'false',
  TASKER__staleness_detection__batch_statement_timeout_ms: '3000',
  TASKER__worker__retry_limit: '0',
};

/** What each alert should say after this history (two live workers, one failure, one rejection, 12 stale tasks). */
const EXPECTED_ALERT_STATES: Record<string, 'inactive' | 'pending' | 'firing'> = {
  TaskerWorkersAbsent: 'inactive',
  TaskerJobNotSucceeding: 'inactive',
  TaskerJobNeverSucceeded: 'inactive',
  TaskerJobFailing: 'firing',
  TaskerRunRejected: 'firing',
  TaskerDeadLetterQueueGrowing: 'firing',
  TaskerQueueBacklog: 'inactive',
  TaskerDlqBacklog: 'inactive',
  TaskerDlqOverdue: 'inactive',
  TaskerStaleTasksSurge: 'pending',
  TaskerStormBacklogGrowing: 'inactive',
  // The 12 errored tasks' entries, enriched during the test: their cause is new.
  TaskerNewFailureSignature: 'firing',
  TaskerMetricsGaugesStale: 'inactive',
  TaskerArchivalBatchTimeouts: 'inactive',
  // No web process is scraped here (its refusals are tested in test/web/web-refusals.test.ts).
  TaskerRequestsRefusedBurst: 'inactive',
};

/** A database of its own: on DATABASE_URL's server when set, else an embedded PostgreSQL. */
async function database(): Promise<{ url: string; close(): Promise<void> }> {
  if (process.env.DATABASE_URL) {
    const name = `tasker_e2e_prom_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const url = new URL(process.env.DATABASE_URL);
    url.pathname = `/${name}`;
    return {
      url: url.toString(),
      close: async () => {
        const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await c.end();
      },
    };
  }
  const server: EmbeddedServer = await startEmbeddedPostgres({
    dataDir: mkdtempSync(join(tmpdir(), 'tasker-e2e-prom-pg-')),
    persistent: false,
    settings: { fsync: 'off', synchronous_commit: 'off' },
  });
  return { url: server.url('postgres'), close: () => server.stop({ fast: true }) };
}

it('a real Prometheus scraping two workers: every dashboard query has data, every alert its expected state', async () => {
  const db = await database();
  const pool = createPool(db.url, { max: 4 });
  const workers: CliProcess[] = [];
  let prometheus: ChildProcess | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'tasker-e2e-prom-'));
  try {
    await migrate(pool);
    const config = loadConfig({ env: { TASKER_ENV: 'test' } }).config;
    await installFor(db.url, WORKER_ENV);
    const now = await databaseNow(pool);
    const template = await insertTemplate(pool);
    for (let i = 0; i < 12; i++)
      await insertTask(pool, {
        template,
        state: 'waiting_for_retry',
        enteredAt: minutesBefore(now, 300 - i),
      });
    await insertFinishedGraphs(pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: hoursBefore(now, 24 * 60),
      count: 3,
      steps: 2,
    });

    for (let i = 0; i < 2; i++) workers.push(startWorkerProcess(db.url, WORKER_ENV));
    const ports = await Promise.all(workers.map((w) => workerPort(w)));
    await waitForWorkers(pool, 2);

    const promPort = await freePort();
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        `rule_files: ['${join(projectRoot, 'ops', 'prometheus', 'alerts.yml')}']`,
        'scrape_configs:',
        '  - job_name: tasker-lifecycle',
        `    static_configs: [{ targets: [${ports.map((p) => `'127.0.0.1:${p}'`).join(', ')}] }]`,
        '',
      ].join('\n'),
    );
    let promLog = '';
    prometheus = spawn(
      '/usr/bin/prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    prometheus.stdout!.on('data', (d) => (promLog += d));
    prometheus.stderr!.on('data', (d) => (promLog += d));
    const api = async (path: string) => {
      const response = await fetch(`http://127.0.0.1:${promPort}/api/v1/${path}`);
      const body = (await response.json()) as { status: string; data: unknown; error?: string };
      if (body.status !== 'success') throw new Error(`${path}: ${body.error}`);
      return body.data;
    };
    const query = async (expr: string) =>
      ((await api(`query?query=${encodeURIComponent(expr)}`)) as { result: unknown[] }).result;
    await waitFor(
      'Prometheus to scrape both workers',
      async () =>
        (await query('sum(up{job="tasker-lifecycle"})').catch(() => [])).length === 1 &&
        Number(
          ((await query('sum(up{job="tasker-lifecycle"})')) as Array<{ value: [number, string] }>)[0]!
            .value[1],
        ) === 2,
      { timeoutMs: 60_000 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\nprometheus printed:\n${promLog}`);
    });

    // The history: detect (12 stale tasks), enrich (event runs), archive, fail once, reject once.
    const env = { DATABASE_URL: db.url, ...FAST_WORKER_ENV, ...WORKER_ENV };
    expect((await runCli(['enqueue', 'detect-stale', '--wait'], env)).code).toBe(0);
    expect((await runCli(['enqueue', 'archive', '--wait'], env)).code).toBe(0);
    const lockClient = new pg.Client({ connectionString: db.url });
    await lockClient.connect();
    const holder = await holdDetectionAtStart(lockClient);
    try {
      expect((await runCli(['enqueue', 'detect-stale'], env)).code).toBe(0);
      await waitFor('the held detection run to fail', async () =>
        (await runsOf(pool, DETECT)).some((r) => r.outcome === 'failed'),
      );
    } finally {
      await holder.release();
      await lockClient.end();
    }
    const client = createBoss(config, db.url, 'client', silentLogger());
    await startBoss(client);
    await client.send(DETECT, { trigger: 'adhoc', options: { batch_size: 0 } }, { singletonKey: 'run' });
    await client.stop({ graceful: false });
    await waitFor('the rejected run', async () =>
      (await runsOf(pool, DETECT)).some((r) => r.outcome === 'rejected'),
    );

    // Every panel's query returns data (Grafana's $__rate_interval as 1m).
    const dashboard = JSON.parse(
      readFileSync(join(projectRoot, 'ops', 'grafana', 'dashboard.json'), 'utf8'),
    ) as {
      panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
    };
    const exprs = dashboard.panels.flatMap((p) =>
      (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr.replaceAll('$__rate_interval', '1m') })),
    );
    expect(exprs.length).toBeGreaterThan(20);
    await waitFor(
      'every dashboard query to return data',
      async () => {
        for (const e of exprs) if ((await query(e.expr)).length === 0) return false;
        return true;
      },
      { timeoutMs: 60_000, intervalMs: 2000 },
    ).catch(async (err: Error) => {
      const empty = [];
      for (const e of exprs) if ((await query(e.expr)).length === 0) empty.push(e);
      throw new Error(`${err.message}: no data for ${JSON.stringify(empty, null, 2)}`);
    });

    // Every alert: evaluated without error, in the state this history calls for.
    type Rule = { name: string; query: string; state: string; health: string; lastError?: string };
    const alertRules = async () =>
      ((await api('rules?type=alert')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap(
        (g) => g.rules,
      );
    const states = async () => Object.fromEntries((await alertRules()).map((r) => [r.name, r.state]));
    await waitFor(
      'every alert in its expected state',
      async () => {
        const got = await states();
        return Object.entries(EXPECTED_ALERT_STATES).every(([name, state]) => got[name] === state);
      },
      { timeoutMs: 60_000, intervalMs: 1000 },
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(await states())}`);
    });
    const rules = await alertRules();
    expect(rules.map((r) => r.name).sort()).toEqual(Object.keys(EXPECTED_ALERT_STATES).sort());
    for (const rule of rules) {
      expect({ name: rule.name, health: rule.health, error: rule.lastError ?? '' }).toEqual({
        name: rule.name,
        health: 'ok',
        error: '',
      });
      const active = EXPECTED_ALERT_STATES[rule.name] !== 'inactive';
      expect({ name: rule.name, returnsData: (await query(rule.query)).length > 0 }).toEqual({
        name: rule.name,
        returnsData: active,
      });
    }

    // No live worker: the absence alert goes pending (it fires after 5 minutes; the unit tests cover that).
    for (const w of workers) w.kill('SIGTERM');
    for (const w of workers) expect((await w.done).code).toBe(0);
    await waitFor(
      'TaskerWorkersAbsent pending',
      async () => (await states()).TaskerWorkersAbsent === 'pending',
      {
        timeoutMs: 30_000,
      },
    );
  } finally {
    for (const w of workers) w.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.done.catch(() => undefined)));
    if (prometheus && prometheus.exitCode === null) {
      const exited = new Promise((resolve) => prometheus!.once('close', resolve));
      prometheus.kill('SIGTERM');
      await exited;
    }
    await pool.end();
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
