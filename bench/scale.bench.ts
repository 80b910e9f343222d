/**
 * scale (issue 25): 10, 50 and 100 worker processes through a real PgBouncer (transaction pooling,
 * as test/e2e/scale-out.test.ts) on one PostgreSQL, each scraped like Prometheus does (every
 * worker's /metrics every SCRAPE_SECONDS). For each count it prints, over an idle window:
 * transactions per second on PostgreSQL (pg_stat_database.xact_commit of the database: every
 * pg-boss fetch, heartbeat, cron and supervise pass, recovery pass and gauge read is one), per
 * worker; the workers' CPU (% of a core, median) and RSS (MiB, median); PostgreSQL's server
 * connections for the database; then the time from each schedule tick (enrichment's sweep, every
 * minute on the real clock) to its run starting, and that each tick ran exactly once (one pg-boss
 * job, one recorded run).
 *
 * "before" runs the workers of the build before issue 25 (commit BEFORE, extracted with git
 * archive; every worker read the DLQ, backlog and group gauges on every scrape), "after" this
 * build (one worker reads them per metrics.gauges_interval_seconds under a lease; the others read
 * one row). The fetch interval, heartbeats and the rest are the shipped defaults in both.
 *
 * SCALE_COUNTS=10,50 and SCALE_BUILDS=after limit the run. Slow: minutes per count at 100.
 */
import { execSync } from 'node:child_process';
import { existsSync, mkdtempSync, symlinkSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../src/paths.ts';
import { noActiveRun } from '../test/helpers/boss-clock.ts';
import { type CliProcess, runCli, startCli } from '../test/helpers/cli-process.ts';
import { startPgBouncer } from '../test/helpers/pgbouncer.ts';
import { cpuTicks, rssKib } from '../test/helpers/proc.ts';
import { waitFor } from '../test/helpers/wait.ts';
import type { BenchServer } from './db.ts';

/** main before issue 25. */
const BEFORE = '37cbbcc';
const COUNTS = (process.env.SCALE_COUNTS ?? '10,50,100').split(',').map(Number);
const BUILDS = (process.env.SCALE_BUILDS ?? 'before,after').split(',');
const IDLE_WINDOW_MS = 30_000;
const SCRAPE_SECONDS = 15;
const TICKS = 2;
const BOUNCER_POOL_SIZE = 20;
const START_BATCH = 10;
const SWEEP = 'tasker.enrich-dlq-snapshots';

const WORKER_ENV = {
  TASKER__metrics__port: '0',
  TASKER__metrics__host: '"127.0.0.1"',
  TASKER__logging__format: '"json"',
  TASKER__logging__level: '"info"',
  TASKER__archive__enabled: 'false',
  // The shipped schedule (every 5 minutes), not the test environment's every minute: the idle
  // window holds what an idle cluster does (enrichment's sweep every minute, whose runs are the
  // ticks measured).
  TASKER__staleness_detection__detection_interval_seconds: '300',
};

interface Row {
  build: string;
  workers: number;
  tx_per_s: number;
  tx_per_s_per_worker: number;
  cpu_percent_median: number;
  rss_mib_median: number;
  server_connections: number;
  tick_to_start_s: number[];
  exactly_once: boolean;
  load: string;
}

function buildRoot(build: string): string {
  if (build === 'after') return projectRoot;
  const dir = mkdtempSync(join(tmpdir(), 'tasker-scale-before-'));
  execSync(`git archive ${BEFORE} | tar -x -C ${JSON.stringify(dir)}`, { cwd: projectRoot });
  symlinkSync(join(projectRoot, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

export default async function scale(server: BenchServer): Promise<void> {
  console.log(`${server.description}; PgBouncer transaction mode, default_pool_size ${BOUNCER_POOL_SIZE}`);
  const rows: Row[] = [];
  for (const build of BUILDS) {
    const root = buildRoot(build);
    try {
      for (const n of COUNTS) rows.push(await phase(server, build, root, n));
    } finally {
      if (root !== projectRoot && existsSync(root)) execSync(`rm -rf ${JSON.stringify(root)}`);
    }
  }
  console.log(
    '\nbuild   workers  tx/s  tx/s/worker  cpu%/worker  RSS MiB/worker  server conns  tick->start s  each tick once  load (1/5/15)',
  );
  for (const r of rows) {
    console.log(
      `${r.build.padEnd(7)} ${String(r.workers).padStart(7)} ${r.tx_per_s.toFixed(1).padStart(5)} ${r.tx_per_s_per_worker.toFixed(2).padStart(12)} ${r.cpu_percent_median.toFixed(2).padStart(12)} ${r.rss_mib_median.toFixed(0).padStart(15)} ${String(r.server_connections).padStart(13)}  ${r.tick_to_start_s
        .map((s) => s.toFixed(1))
        .join(', ')
        .padStart(13)}  ${String(r.exactly_once).padStart(14)}  ${r.load}`,
    );
  }
  for (const n of COUNTS) {
    const before = rows.find((r) => r.build === 'before' && r.workers === n);
    const after = rows.find((r) => r.build === 'after' && r.workers === n);
    if (before && after)
      console.log(
        `${n} workers: tx/s after / before = ${(after.tx_per_s / before.tx_per_s).toFixed(2)}; per worker ${after.tx_per_s_per_worker.toFixed(2)} vs ${before.tx_per_s_per_worker.toFixed(2)}`,
      );
  }
}

async function phase(server: BenchServer, build: string, root: string, n: number): Promise<Row> {
  const db = await server.createDatabase({ migrated: false });
  const direct = new URL(db.url);
  const bouncer = await startPgBouncer({
    serverPort: Number(direct.port),
    user: direct.username || 'postgres',
    password: direct.password || 'postgres',
    poolSize: BOUNCER_POOL_SIZE,
  });
  const database = direct.pathname.slice(1);
  const urls = { DATABASE_URL: bouncer.url(database), DATABASE_DIRECT_URL: db.url };
  const workers: CliProcess[] = [];
  let scraping = true;
  try {
    const migrated = await runCli(['migrate'], { ...urls, ...WORKER_ENV }, root);
    if (migrated.code !== 0) throw new Error(`migrate (${build}) failed: ${migrated.stderr}`);
    // Started START_BATCH at a time (a hundred Node processes starting at once on 2 cores time
    // out their first connections); a worker that exits fails the benchmark with its log.
    const startedPort = (w: CliProcess) => {
      const line = w
        .stderrSoFar()
        .split('\n')
        .find((l) => l.includes('"worker started"'));
      return line ? (JSON.parse(line).http_port as number) : undefined;
    };
    const exited: CliProcess[] = [];
    while (workers.length < n) {
      const batch = Array.from({ length: Math.min(START_BATCH, n - workers.length) }, () =>
        startCli(['worker'], { ...urls, ...WORKER_ENV }, root),
      );
      for (const w of batch) void w.done.then(() => exited.push(w));
      workers.push(...batch);
      await waitFor(
        `${workers.length} of ${n} workers started (${build})`,
        async () => {
          const dead = exited.find((w) => workers.includes(w));
          if (dead) throw new Error(`a worker exited at start:\n${dead.stderrSoFar().slice(-2000)}`);
          return workers.every((w) => startedPort(w) !== undefined);
        },
        { timeoutMs: 300_000, intervalMs: 1000 },
      ).catch((err: Error) => {
        const dead = exited.find((w) => workers.includes(w));
        throw dead ? new Error(`a worker exited at start:\n${dead.stderrSoFar().slice(-2000)}`) : err;
      });
    }
    const ports = workers.map((w) => startedPort(w)!);
    await noActiveRun(db.pool);
    // Prometheus: every worker scraped every SCRAPE_SECONDS, spread over the interval.
    void (async () => {
      while (scraping) {
        for (const port of ports) {
          if (!scraping) break;
          await fetch(`http://127.0.0.1:${port}/metrics`)
            .then((r) => r.text())
            .catch(() => undefined);
          await sleep((SCRAPE_SECONDS * 1000) / ports.length);
        }
      }
    })();
    await sleep(SCRAPE_SECONDS * 1000); // settle: every worker started its loops and was scraped once

    const xacts = async () =>
      (
        await db.pool.query<{ n: number }>(
          'SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = current_database()',
        )
      ).rows[0]!.n;
    const connections = async () =>
      (
        await db.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
              AND application_name NOT IN ('')`,
        )
      ).rows[0]!.n;
    await db.pool.query('SELECT pg_stat_clear_snapshot()');
    const x0 = await xacts();
    const cpu0 = workers.map((w) => cpuTicks(w.pid));
    const t0 = performance.now();
    let peakConnections = 0;
    while (performance.now() - t0 < IDLE_WINDOW_MS) {
      peakConnections = Math.max(peakConnections, await connections());
      await sleep(2000);
    }
    const seconds = (performance.now() - t0) / 1000;
    // Our own statements in the window (the samples above) are left out.
    const samples = Math.ceil(IDLE_WINDOW_MS / 2000);
    await sleep(1500); // pg_stat_database is flushed by each backend at most once a second
    const x1 = await xacts();
    const txPerS = (x1 - x0 - samples - 1) / seconds;
    const cpu = workers.map((w, i) => ((cpuTicks(w.pid) - cpu0[i]!) / 100 / seconds) * 100);
    const rss = workers.map((w) => rssKib(w.pid) / 1024);

    // Ticks: enrichment's sweep is scheduled every minute; on the real clock, each minute after
    // every worker started is a tick. From the minute to its run's start, and one run per minute.
    const { rows: since } = await db.pool.query<{ at: Date }>(
      `SELECT date_trunc('minute', now()) + interval '1 minute' AS at`,
    );
    const first = since[0]!.at;
    const ticks = await waitFor(
      `${TICKS} scheduled sweeps after ${first.toISOString()}`,
      async () => {
        const { rows } = await db.pool.query<{
          tick: Date;
          jobs: number;
          runs: number;
          started_at: Date | null;
        }>(
          `SELECT date_trunc('minute', j.created_on) AS tick, count(DISTINCT j.id)::int AS jobs,
                  count(r.run_id)::int AS runs, min(r.started_at) AS started_at
             FROM pgboss.job j LEFT JOIN tasker_job_runs r ON r.pgboss_job_id = j.id
            WHERE j.name = $1 AND j.data->>'trigger' = 'schedule' AND j.created_on >= $2
            GROUP BY 1 ORDER BY 1`,
          [SWEEP, first],
        );
        const done = rows.filter((r) => r.started_at !== null);
        return done.length >= TICKS ? rows : undefined;
      },
      { timeoutMs: 300_000, intervalMs: 1000 },
    );
    await noActiveRun(db.pool);
    const latencies = ticks
      .filter((t) => t.started_at !== null)
      .map((t) => (t.started_at!.getTime() - t.tick.getTime()) / 1000);
    const once = ticks.every((t) => t.jobs === 1 && t.runs <= 1);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const row: Row = {
      build,
      workers: n,
      tx_per_s: txPerS,
      tx_per_s_per_worker: txPerS / n,
      cpu_percent_median: median(cpu),
      rss_mib_median: median(rss),
      server_connections: peakConnections,
      tick_to_start_s: latencies,
      exactly_once: once,
      load: loadavg()
        .map((l) => l.toFixed(1))
        .join('/'),
    };
    console.log(JSON.stringify(row));
    return row;
  } finally {
    scraping = false;
    for (const w of workers) w.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.done.catch(() => undefined)));
    await bouncer.stop();
    await db.drop();
  }
}
