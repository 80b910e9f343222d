/**
 * A rolling upgrade from the previous release to this build, with real processes of both builds on
 * one database: the previous release's `migrate` and two of its workers; this build's `migrate`
 * while they run (one of them restarted after it, to show they keep restarting); two workers of this
 * build joining; both builds' CLIs queueing runs while stale tasks and finished graphs keep
 * arriving, and the schedules ticking; then the old workers stopped with SIGTERM.
 *
 * It holds when nothing is dead-lettered, no run of detection or archival overlaps another and no
 * run is doubled, every stale task has exactly one error transition and one investigation (enriched),
 * every finished graph is once live or archived, no old worker logs an error, and both builds ran
 * runs. Detection runs at most 2 batches, so passes are handed on (with this build's `resume`) and
 * an old worker may take the rest.
 *
 * The previous release is extracted with `git archive` into a temporary directory (the repository's
 * work tree is not touched) and uses this checkout's node_modules when its lockfile is the same,
 * else its own `npm ci`. Slow (about two minutes): run by `npm run test:e2e`, not `npm test`.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import pg from 'pg';
import { type EmbeddedServer, startEmbeddedPostgres } from '../../src/db/embedded.ts';
import { databaseNow } from '../../src/db/queries/server.ts';
import { projectRoot } from '../../src/paths.ts';
import { insertFinishedGraphs } from '../helpers/archive-factories.ts';
import { type CliProcess, runCli, startCli } from '../helpers/cli-process.ts';
import {
  hoursBefore,
  insertTask,
  insertTemplate,
  minutesBefore,
  type Template,
} from '../helpers/factories.ts';
import { extractPreviousRelease } from '../helpers/previous-release.ts';
import { waitFor } from '../helpers/wait.ts';
import { FAST_WORKER_ENV } from '../helpers/workers.ts';

const DETECT = 'tasker.detect-stale-tasks';
const ARCHIVE = 'tasker.archive-finished-tasks';
/** Waves of work while both builds run, and what each brings. */
const WAVES = 5;
const STALE_PER_WAVE = 25;
const GRAPHS_PER_WAVE = 40;

/** Both builds' workers: fast pg-boss intervals, and detection passes handed on every 2 batches of 10. */
const ENV = {
  ...FAST_WORKER_ENV,
  TASKER__staleness_detection__max_batches_per_run: '2',
  TASKER__archive__archive_batch_size: '20',
};

interface Build {
  label: 'old' | 'new';
  root: string;
}

let oldRoot: string;
let db: { url: string; close(): Promise<void> };
let pool: pg.Pool;

beforeAll(async () => {
  oldRoot = extractPreviousRelease();
  db = await database();
  pool = new pg.Pool({ connectionString: db.url, max: 4 });
}, 600_000);

afterAll(async () => {
  await pool?.end();
  await db?.close();
  if (oldRoot) rmSync(oldRoot, { recursive: true, force: true });
}, 60_000);

it('the previous release keeps working while this build migrates and joins: nothing dead-lettered, no run doubled, every task once', async () => {
  const OLD: Build = { label: 'old', root: oldRoot };
  const NEW: Build = { label: 'new', root: projectRoot };
  const env = { ...ENV, DATABASE_URL: db.url };
  const workers: { build: Build; process: CliProcess }[] = [];
  const start = (build: Build) => {
    const process = startCli(['worker'], env, build.root);
    workers.push({ build, process });
    return process;
  };
  const cli = async (build: Build, args: string[]) => {
    const result = await runCli(args, env, build.root);
    return { build: build.label, args: args.join(' '), ...result };
  };
  const enqueued: Awaited<ReturnType<typeof cli>>[] = [];
  const stale: string[] = [];
  const graphs: string[] = [];
  let template: Template | undefined;
  const addWork = async () => {
    template ??= await insertTemplate(pool, { namespace: 'upgrade', name: 'upgrade_test' });
    const now = await databaseNow(pool);
    for (let i = 0; i < STALE_PER_WAVE; i++)
      stale.push(
        await insertTask(pool, { template, state: 'waiting_for_retry', enteredAt: minutesBefore(now, 30) }),
      );
    graphs.push(
      ...(await insertFinishedGraphs(pool, {
        named_task_uuid: template.named_task_uuid,
        state: 'complete',
        finishedAt: hoursBefore(now, 24 * 40),
        count: GRAPHS_PER_WAVE,
        steps: 3,
      })),
    );
  };

  try {
    // The previous release, as it runs today.
    const oldMigrate = await cli(OLD, ['migrate']);
    expect(oldMigrate.stderr).not.toMatch(/"level":"error"/);
    expect(oldMigrate.code).toBe(0);
    start(OLD);
    start(OLD);
    await waitForLiveWorkers(2);
    await addWork();
    enqueued.push(await cli(OLD, ['enqueue', 'detect-stale']), await cli(OLD, ['enqueue', 'archive']));

    // This build's release step, while the old workers work.
    const newMigrate = await cli(NEW, ['migrate']);
    expect(newMigrate.code).toBe(0);
    // An old worker restarts after it (a deploy, a crash): it starts on the migrated database.
    const first = workers[0]!.process;
    first.kill('SIGTERM');
    expect((await first.done).code).toBe(0);
    start(OLD);
    await waitForLiveWorkers(2);
    await addWork();
    // A request of this build's (this run only: its extras beside it), while only old workers run.
    await waitFor(
      "this build's --this-run-only request queued and run by an old worker",
      async () => {
        const r = await cli(NEW, [
          'enqueue',
          'detect-stale',
          '--max-batches',
          '1',
          '--this-run-only',
          '--wait',
          '--timeout-seconds',
          '60',
        ]);
        enqueued.push(r);
        return r.code === 0;
      },
      { timeoutMs: 90_000, intervalMs: 1_000 },
    );
    // This build's workers join.
    start(NEW);
    start(NEW);
    await waitForLiveWorkers(4);

    // Both builds serve runs: queued from both CLIs, handed on by both, and the schedules' ticks.
    for (let wave = 2; wave < WAVES; wave++) {
      await addWork();
      const by = wave % 2 === 0 ? NEW : OLD;
      const other = by === NEW ? OLD : NEW;
      enqueued.push(
        await cli(by, ['enqueue', 'detect-stale']),
        await cli(other, ['enqueue', 'archive']),
        // A run of 1 batch only, from this build: an old worker may be the one that takes it.
        await cli(NEW, ['enqueue', 'detect-stale', '--max-batches', '1', '--this-run-only']),
      );
      await new Promise((resolve) => setTimeout(resolve, 4_000));
    }
    // Until every stale task has its investigation, enriched, and every finished graph is archived.
    await waitFor(
      'every stale task detected and enriched, every finished graph archived',
      async () => {
        const left = await workLeft(stale, graphs);
        if (left.undetected > 0) await cli(NEW, ['enqueue', 'detect-stale']);
        if (left.live_graphs > 0) await cli(OLD, ['enqueue', 'archive']);
        return left.undetected + left.unenriched + left.live_graphs === 0;
      },
      { timeoutMs: 90_000, intervalMs: 3_000 },
    );
    // A scheduled tick served while both builds ran (cron: once a minute).
    await waitFor(
      'a scheduled detection run',
      async () => (await runs()).some((r) => r.trigger === 'schedule'),
      {
        timeoutMs: 70_000,
        intervalMs: 1_000,
      },
    );

    // The old workers stop cleanly.
    const olds = workers.filter((w) => w.build.label === 'old' && w.process !== first);
    for (const w of olds) w.process.kill('SIGTERM');
    for (const w of olds) expect((await w.process.done).code).toBe(0);

    // Nothing dead-lettered, and no run rejected or failed.
    const { rows: deadLetters } = await pool.query(
      `SELECT name, state, data, output FROM pgboss.job WHERE name LIKE '%.failed'`,
    );
    expect(deadLetters).toEqual([]);
    const all = await runs();
    expect(all.filter((r) => r.outcome === 'rejected' || r.outcome === 'failed')).toEqual([]);
    // Runs of detection, and of archival, never overlap; no pg-boss job is completed twice.
    for (const job of [DETECT, ARCHIVE]) {
      const byStart = all.filter((r) => r.job_name === job && r.trigger !== 'cli');
      for (let i = 1; i < byStart.length; i++) {
        const before = byStart[i - 1]!;
        const next = byStart[i]!;
        if (before.finished_at === null || before.finished_at > next.started_at)
          throw new Error(`${job}: run ${next.run_id} started before run ${before.run_id} ended`);
      }
    }
    const completedPerJob = new Map<string, number>();
    for (const r of all.filter((r) => r.outcome === 'completed' && r.pgboss_job_id))
      completedPerJob.set(r.pgboss_job_id!, (completedPerJob.get(r.pgboss_job_id!) ?? 0) + 1);
    expect([...completedPerJob].filter(([, n]) => n > 1)).toEqual([]);
    // Every stale task: one error transition, one investigation.
    const { rows: perTask } = await pool.query(
      `SELECT t.task_uuid,
              (SELECT count(*)::int FROM tasker_task_transitions x WHERE x.task_uuid = t.task_uuid AND x.to_state = 'error') AS errors,
              (SELECT count(*)::int FROM tasker_tasks_dlq d WHERE d.task_uuid = t.task_uuid) AS entries
         FROM unnest($1::uuid[]) AS t(task_uuid)`,
      [stale],
    );
    expect(perTask.filter((r) => r.errors !== 1 || r.entries !== 1)).toEqual([]);
    // Every finished graph: once, live or archived.
    const { rows: perGraph } = await pool.query(
      `SELECT g.task_uuid,
              (SELECT count(*)::int FROM tasker_tasks t WHERE t.task_uuid = g.task_uuid)
            + (SELECT count(*)::int FROM tasker_tasks_archive a WHERE a.task_uuid = g.task_uuid) AS copies
         FROM unnest($1::uuid[]) AS g(task_uuid)`,
      [graphs],
    );
    expect(perGraph.filter((r) => r.copies !== 1)).toEqual([]);
    // No old worker logged an error (nor a new one).
    for (const w of workers) {
      const errors = w.process
        .stderrSoFar()
        .split('\n')
        .filter((l) => l.includes('"level":"error"'));
      expect({ build: w.build.label, pid: w.process.pid, errors }).toEqual({
        build: w.build.label,
        pid: w.process.pid,
        errors: [],
      });
    }
    // Both builds ran runs, from schedules and from both CLIs' requests.
    const buildOf = new Map(workers.map((w) => [w.process.pid, w.build.label]));
    const ranBy = (label: string) =>
      all.filter((r) => buildOf.get(Number(r.worker.split(':').pop())) === label);
    expect(ranBy('old').length).toBeGreaterThan(0);
    expect(ranBy('new').length).toBeGreaterThan(0);
    expect(new Set(ranBy('old').map((r) => r.job_name)).size).toBeGreaterThan(1);
    expect(new Set(ranBy('new').map((r) => r.job_name)).size).toBeGreaterThan(1);
    expect(enqueued.filter((e) => e.code !== 0 && e.code !== 2)).toEqual([]);
    // Old workers ran requests this build sent with extras beside them.
    const { rows: extrasRuns } = await pool.query<{ worker: string }>(
      `SELECT r.worker FROM tasker_job_runs r JOIN tasker_run_request_extras x ON x.pgboss_job_id = r.pgboss_job_id`,
    );
    expect(
      extrasRuns.filter((r) => buildOf.get(Number(r.worker.split(':').pop())) === 'old').length,
    ).toBeGreaterThan(0);
    console.log(
      `upgrade: ${all.length} runs (${ranBy('old').length} by the previous release, ${ranBy('new').length} by this build; ` +
        `${all.filter((r) => r.trigger === 'schedule').length} scheduled); ${stale.length} stale tasks, ${graphs.length} graphs; ` +
        `${enqueued.length} enqueues (${enqueued.filter((e) => e.code === 2).length} refused: a run already waiting)`,
    );
  } finally {
    for (const w of workers) w.process.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.process.done));
  }
}, 300_000);

async function waitForLiveWorkers(count: number): Promise<void> {
  await waitFor(
    `${count} live worker(s)`,
    async () => {
      const { rows } = await pool.query(
        `SELECT count(*)::int AS n FROM pgboss.instance WHERE stopped_on IS NULL AND application_name = 'tasker-lifecycle-worker'`,
      );
      return rows[0].n === count;
    },
    { timeoutMs: 60_000 },
  );
}

interface RunRow {
  run_id: string;
  job_name: string;
  trigger: string;
  worker: string;
  started_at: Date;
  finished_at: Date | null;
  outcome: string | null;
  pgboss_job_id: string | null;
}

async function runs(): Promise<RunRow[]> {
  const { rows } = await pool.query<RunRow>(
    'SELECT run_id, job_name, trigger, worker, started_at, finished_at, outcome, pgboss_job_id FROM tasker_job_runs ORDER BY started_at, run_id',
  );
  return rows;
}

async function workLeft(stale: string[], graphs: string[]) {
  const { rows } = await pool.query(
    `SELECT (SELECT count(*)::int FROM unnest($1::uuid[]) s(u)
              WHERE NOT EXISTS (SELECT 1 FROM tasker_tasks_dlq d WHERE d.task_uuid = s.u)) AS undetected,
            (SELECT count(*)::int FROM tasker_tasks_dlq d
              WHERE d.task_uuid = ANY($1::uuid[]) AND NOT (d.task_snapshot ? 'enrichment')) AS unenriched,
            (SELECT count(*)::int FROM tasker_tasks t WHERE t.task_uuid = ANY($2::uuid[])) AS live_graphs`,
    [stale, graphs],
  );
  return rows[0] as { undetected: number; unenriched: number; live_graphs: number };
}

/** A database of its own: on DATABASE_URL's server when set, else an embedded PostgreSQL. */
async function database(): Promise<{ url: string; close(): Promise<void> }> {
  if (process.env.DATABASE_URL) {
    const name = `tasker_e2e_upgrade_${randomBytes(4).toString('hex')}`;
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
    dataDir: mkdtempSync(join(tmpdir(), 'tasker-e2e-upgrade-pg-')),
    persistent: false,
    settings: { fsync: 'off', synchronous_commit: 'off' },
  });
  return { url: server.url('postgres'), close: () => server.stop({ fast: true }) };
}
