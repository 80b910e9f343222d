/**
 * Scale-out: 24 worker processes on one PostgreSQL started with max_connections = 200 (24 workers
 * at the default budget of 7 may hold 168), first straight to PostgreSQL with the default connection
 * budget (database.max_connections_per_process),
 * then through a real PgBouncer 1.18 in transaction pooling mode (migrations through
 * database.direct_url). In each phase: no "too many clients" anywhere (worker logs, CLI output,
 * the server's and PgBouncer's logs); every scheduled detection tick runs exactly once across the
 * 24 (pgboss.job and tasker_job_runs) and its NOTIFY events reach a listener connected straight
 * to PostgreSQL; an ad-hoc archival run (`enqueue archive --wait`) archives
 * every finished graph; all 24 exit 0 on SIGTERM. It prints, per phase, each worker's idle RSS and
 * CPU and the connection counts (idle and busy), the figures docs/benchmarks.md quotes.
 *
 * Cron has minute resolution, so the ticks come from moving pg-boss's clock (pgboss.job_now()) a
 * minute at a time, as test/integration/worker-schedules.test.ts does. Slow (a few minutes on two
 * shared cores): run by `npm run test:e2e`, not `npm test`.
 */
import { mkdtempSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { type EmbeddedServer, startEmbeddedPostgres } from '../../src/db/embedded.ts';
import { insertFinishedGraphs } from '../helpers/archive-factories.ts';
import { installMovableClock, nextTick, noActiveRun } from '../helpers/boss-clock.ts';
import { type CliProcess, runCli, startCli } from '../helpers/cli-process.ts';
import { insertTask, insertTemplate, minutesBefore } from '../helpers/factories.ts';
import { type RunningPgBouncer, startPgBouncer } from '../helpers/pgbouncer.ts';
import { cpuTicks, rssKib } from '../helpers/proc.ts';
import { waitFor } from '../helpers/wait.ts';

const WORKERS = 24;
const MAX_CONNECTIONS = 200;
const TICKS = 3;
const FINISHED_GRAPHS = 300;
const STALE_TASKS = 5;
/** Server connections PgBouncer may open to the database (the pool size docs/operating.md recommends). */
const BOUNCER_POOL_SIZE = 20;
const IDLE_WINDOW_MS = 20_000;
const DETECT = 'tasker.detect-stale-tasks';
const TOO_MANY = /too many clients|remaining connection slots|no more connections allowed/i;

/** Worker settings: schedules evaluated every 2 s so a moved clock shows quickly; the rest default. */
const WORKER_ENV = {
  TASKER__metrics__port: '0',
  TASKER__metrics__host: '"127.0.0.1"',
  TASKER__worker__cron_monitor_interval_seconds: '2',
  TASKER__worker__clock_monitor_interval_seconds: '2',
  TASKER__worker__shutdown_timeout_seconds: '30',
  TASKER__logging__format: '"json"',
  TASKER__logging__level: '"info"',
};

let server: EmbeddedServer;
const serverLog: string[] = [];
let monitor: pg.Pool;

beforeAll(async () => {
  server = await startEmbeddedPostgres({
    dataDir: mkdtempSync(join(tmpdir(), 'tasker-scale-pg-')),
    persistent: false,
    settings: { max_connections: MAX_CONNECTIONS, fsync: 'off', synchronous_commit: 'off' },
    onLog: (line) => serverLog.push(line),
  });
  monitor = new pg.Pool({
    connectionString: server.url('postgres'),
    max: 1,
    application_name: 'scale-test-monitor',
  });
  // An idle monitor connection ended under the pool (seen once: 57P01, the server's fast stop) is
  // reported, not thrown as an unhandled 'error' event; a query on a lost connection still fails.
  monitor.on('error', (err) =>
    console.warn(
      `scale-test monitor: idle connection lost: ${err.message}\n${serverLog.slice(-20).join('\n')}`,
    ),
  );
}, 120_000);

afterAll(async () => {
  await monitor?.end();
  await server?.stop({ fast: true });
}, 60_000);

interface PhaseFigures {
  phase: string;
  workers: number;
  idle_rss_mib: { min: number; median: number; max: number };
  idle_cpu_percent: { median: number; max: number };
  /** Connections PostgreSQL holds for the 24 workers (pg_stat_activity, this database). */
  server_connections: { idle: number; busy_peak: number };
  /** Client connections the 24 workers hold: to PostgreSQL (direct) or to PgBouncer. */
  client_connections: { idle: number; busy_peak: number };
  /** One worker's connections (kernel count): mean over workers and samples when idle, most ever. */
  per_worker_connections: { idle_mean: number; idle_max: number; busy_max: number };
  ticks: number;
  archived: number;
}

const figures: PhaseFigures[] = [];

afterAll(() => {
  if (figures.length > 0) console.log(`scale-out figures\n${JSON.stringify(figures, null, 2)}`);
});

describe('24 workers, one PostgreSQL with max_connections = 200', () => {
  it('straight to PostgreSQL with the default budget', async () => {
    const database = 'scale_direct';
    await createDatabase(database);
    const url = server.url(database);
    figures.push(await runPhase('direct', database, { DATABASE_URL: url }));
  }, 600_000);

  it('through PgBouncer in transaction pooling mode, migrations through direct_url', async () => {
    const database = 'scale_bouncer';
    await createDatabase(database);
    const bouncer = await startPgBouncer({
      serverPort: server.port,
      user: 'postgres',
      password: 'postgres',
      poolSize: BOUNCER_POOL_SIZE,
    });
    try {
      figures.push(
        await runPhase(
          'pgbouncer',
          database,
          { DATABASE_URL: bouncer.url(database), DATABASE_DIRECT_URL: server.url(database) },
          bouncer,
        ),
      );
      expect(bouncer.log()).not.toMatch(TOO_MANY);
      expect(bouncer.log()).not.toMatch(/prepared statement .* does not exist|ERROR/);
    } finally {
      await bouncer.stop();
    }
  }, 600_000);
});

async function runPhase(
  phase: string,
  database: string,
  urls: Record<string, string>,
  bouncer?: RunningPgBouncer,
): Promise<PhaseFigures> {
  const serverLogStart = serverLog.length;
  const outputs: string[] = [];
  const cli = async (args: string[]) => {
    const result = await runCli(args, { ...urls, ...WORKER_ENV });
    outputs.push(result.stdout, result.stderr);
    return result;
  };
  const migrated = await cli(['migrate']);
  expect({ phase, code: migrated.code, output: migrated.stderr }).toMatchObject({ phase, code: 0 });

  // Rows for the jobs, written straight to PostgreSQL: finished graphs 40 days old (retention 30)
  // for the ad-hoc archival run (stale tasks come later, once a listener listens).
  const direct = new pg.Pool({ connectionString: server.url(database), max: 2 });
  const workers: CliProcess[] = [];
  let busy: ReturnType<typeof startSampling> | undefined;
  let listener: pg.Client | undefined;
  try {
    const { rows: now } = await direct.query<{ now: Date }>('SELECT now()');
    const template = await insertTemplate(direct);
    await insertFinishedGraphs(direct, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: minutesBefore(now[0]!.now, 40 * 24 * 60),
      count: FINISHED_GRAPHS,
      steps: 3,
    });
    await installMovableClock(direct);

    for (let i = 0; i < WORKERS; i++) workers.push(startCli(['worker'], { ...urls, ...WORKER_ENV }));
    await waitFor(
      `${WORKERS} workers started (${phase})`,
      async () => {
        const started = workers.filter((w) => w.stderrSoFar().includes('"worker started"')).length;
        const dead = workers.find((w) => TOO_MANY.test(w.stderrSoFar()));
        if (dead) throw new Error(`a worker ran out of connections:\n${dead.stderrSoFar()}`);
        return started === WORKERS;
      },
      { timeoutMs: 240_000, intervalMs: 1000 },
    );
    await noActiveRun(direct);

    // Idle: RSS and CPU of each worker over a window with nothing to do, and the connections held.
    const cpuBefore = workers.map((w) => cpuTicks(w.pid));
    const sampled: Sampled = {
      database,
      bouncer,
      port: bouncer?.port ?? server.port,
      pids: workers.map((w) => w.pid),
    };
    const idleSamples = await sampleConnections(sampled, IDLE_WINDOW_MS);
    const cpuAfter = workers.map((w) => cpuTicks(w.pid));
    const cpuPercent = cpuAfter.map((t, i) => ((t - cpuBefore[i]!) / 100 / (IDLE_WINDOW_MS / 1000)) * 100);
    const rssMib = workers.map((w) => rssKib(w.pid) / 1024);

    // A listener straight to PostgreSQL (LISTEN needs a session: never through PgBouncer in
    // transaction mode) hears detection's NOTIFY, sent by a worker through database.url.
    listener = new pg.Client({
      connectionString: server.url(database),
      application_name: 'scale-test-listener',
    });
    await listener.connect();
    const heard: string[] = [];
    listener.on('notification', (n) => heard.push(JSON.parse(n.payload ?? '{}').task_uuid));
    await listener.query('LISTEN task_staleness_detected');
    // Stale tasks for the first tick's detection, once the listener listens.
    for (let i = 0; i < STALE_TASKS; i++) {
      await insertTask(direct, {
        template,
        state: 'waiting_for_retry',
        enteredAt: minutesBefore(now[0]!.now, 30),
      });
    }

    // Busy: the ticks (detection, enrichment of what it finds) and an ad-hoc archival run, sampled.
    busy = startSampling(sampled);
    const ticks: Date[] = [];
    for (let tick = 0; tick < TICKS; tick++) {
      const minute = await nextTick(direct);
      ticks.push(minute);
      await waitFor(
        `the scheduled detection run of ${minute.toISOString()} (${phase})`,
        async () => {
          const { rows } = await direct.query(
            `SELECT count(*) AS n FROM pgboss.job
              WHERE name = $1 AND data->>'trigger' = 'schedule' AND state = 'completed'
                AND date_trunc('minute', created_on) = $2`,
            [DETECT, minute],
          );
          return rows[0].n >= 1;
        },
        { timeoutMs: 90_000, intervalMs: 500 },
      );
    }
    const archival = await cli(['enqueue', 'archive', '--wait', '--json', '--timeout-seconds', '240']);
    expect({ phase, code: archival.code, output: archival.stderr }).toMatchObject({ phase, code: 0 });
    const archived = JSON.parse(archival.stdout).output.tasks_archived as number;
    // Every finished graph archived once: by this run (or, had a tick crossed midnight, partly by
    // the scheduled one before it).
    const { rows: archive } = await direct.query<{ runs: number; tasks: number; kept: number }>(
      `SELECT count(*)::int AS runs, coalesce(sum((counts->>'tasks_archived')::int), 0)::int AS tasks,
              (SELECT count(*)::int FROM tasker_tasks_archive) AS kept
         FROM tasker_job_runs WHERE job_name = 'tasker.archive-finished-tasks' AND outcome = 'completed'`,
    );
    expect(archive[0]).toEqual({ runs: expect.any(Number), tasks: FINISHED_GRAPHS, kept: FINISHED_GRAPHS });
    expect(archived).toBeGreaterThan(0);
    // Several cron passes of all 24 for a duplicate of the last tick to show, were there one.
    await new Promise((resolve) => setTimeout(resolve, 8000));
    const busySamples = await busy.stop();

    // Each tick's scheduled detection: one pgboss job, one recorded run, across the 24 workers.
    const { rows: perTick } = await direct.query<{ tick: Date; jobs: number; runs: number }>(
      `SELECT date_trunc('minute', j.created_on) AS tick, count(DISTINCT j.id)::int AS jobs, count(r.run_id)::int AS runs
         FROM pgboss.job j LEFT JOIN tasker_job_runs r ON r.pgboss_job_id = j.id
        WHERE j.name = $1 AND j.data->>'trigger' = 'schedule'
        GROUP BY 1 ORDER BY 1`,
      [DETECT],
    );
    for (const minute of ticks) {
      expect(perTick.find((t) => t.tick.getTime() === minute.getTime())).toEqual({
        tick: minute,
        jobs: 1,
        runs: 1,
      });
    }
    expect(perTick.every((t) => t.jobs === 1 && t.runs <= 1)).toBe(true);
    const { rows: detected } = await direct.query<{ n: number }>(
      `SELECT coalesce(sum((counts->>'tasks_detected')::int), 0)::int AS n FROM tasker_job_runs WHERE job_name = $1`,
      [DETECT],
    );
    expect(detected[0]!.n).toBe(STALE_TASKS); // acted on once, by one worker
    expect(new Set(heard).size).toBe(STALE_TASKS);
    expect(heard).toHaveLength(STALE_TASKS);

    // SIGTERM: all 24 exit 0.
    for (const w of workers) w.kill('SIGTERM');
    const results = await Promise.all(workers.map((w) => w.done));
    for (const r of results) outputs.push(r.stdout, r.stderr);
    expect(results.map((r) => r.code)).toEqual(workers.map(() => 0));
    workers.length = 0;

    const logs = [...outputs, ...serverLog.slice(serverLogStart)].join('\n');
    expect(logs.split('\n').filter((l) => TOO_MANY.test(l))).toEqual([]);
    // Nor a pool that ran dry inside a worker (its budget too small for what it does at once).
    expect(logs.split('\n').filter((l) => /timeout exceeded when trying to connect/.test(l))).toEqual([]);
    const errors = outputs
      .join('\n')
      .split('\n')
      .filter((l) => /"level":"error"/.test(l));
    expect(errors).toEqual([]);

    const stats = (xs: number[]) => {
      const sorted = [...xs].sort((a, b) => a - b);
      return {
        min: round(sorted[0]!),
        median: round(sorted[Math.floor(sorted.length / 2)]!),
        max: round(sorted.at(-1)!),
      };
    };
    const cpu = stats(cpuPercent);
    return {
      phase,
      workers: WORKERS,
      idle_rss_mib: stats(rssMib),
      idle_cpu_percent: { median: cpu.median, max: cpu.max },
      server_connections: {
        idle: Math.max(...idleSamples.map((s) => s.server)),
        busy_peak: Math.max(...busySamples.map((s) => s.server)),
      },
      client_connections: {
        idle: Math.max(...idleSamples.map((s) => s.clients)),
        busy_peak: Math.max(...busySamples.map((s) => s.clients)),
      },
      per_worker_connections: {
        idle_mean: round(mean(idleSamples.map((s) => mean(s.perWorker)))),
        idle_max: Math.max(...idleSamples.flatMap((s) => s.perWorker)),
        busy_max: Math.max(...busySamples.flatMap((s) => s.perWorker)),
      },
      ticks: ticks.length,
      archived,
    };
  } finally {
    await busy?.stop();
    await listener?.end();
    for (const w of workers) w.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.done.catch(() => undefined)));
    await direct.end();
  }
}

async function createDatabase(name: string): Promise<void> {
  await monitor.query(`DROP DATABASE IF EXISTS ${name}`); // fixed test identifiers, not input
  await monitor.query(`CREATE DATABASE ${name}`);
}

interface ConnectionSample {
  /** Backends on the server for this database, not counting this test's own. */
  server: number;
  /** The workers' client connections: to PostgreSQL (direct), to PgBouncer (bouncer). */
  clients: number;
  /** Each worker's open TCP connections to where it connects (the kernel's count, per process). */
  perWorker: number[];
}

interface Sampled {
  database: string;
  bouncer: RunningPgBouncer | undefined;
  /** The port the workers connect to. */
  port: number;
  pids: number[];
}

async function connectionSample({ database, bouncer, port, pids }: Sampled): Promise<ConnectionSample> {
  const perWorker = connectionsPerProcess(pids, port);
  const { rows } = await monitor.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()
        AND application_name NOT LIKE 'scale-test%' AND application_name <> ''`,
    [database],
  );
  const serverCount = rows[0]!.n;
  if (!bouncer) return { server: serverCount, clients: serverCount, perWorker };
  const admin = new pg.Client({ connectionString: bouncer.adminUrl });
  await admin.connect();
  try {
    const pools = await admin.query<{ database: string; cl_active: string; cl_waiting: string }>(
      'SHOW POOLS',
    );
    const mine = pools.rows.filter((p) => p.database === database);
    const clients = mine.reduce((n, p) => n + Number(p.cl_active) + Number(p.cl_waiting), 0);
    return { server: serverCount, clients, perWorker };
  } finally {
    await admin.end();
  }
}

async function sampleConnections(sampled: Sampled, windowMs: number): Promise<ConnectionSample[]> {
  const samples: ConnectionSample[] = [];
  const end = Date.now() + windowMs;
  while (Date.now() < end) {
    samples.push(await connectionSample(sampled));
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  return samples;
}

function startSampling(sampled: Sampled) {
  const samples: ConnectionSample[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      samples.push(await connectionSample(sampled));
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return samples;
    },
  };
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/**
 * Established TCP connections from each process to 127.0.0.1:port: the sockets in
 * /proc/net/tcp whose remote port is `port`, matched to each process's file descriptors.
 */
function connectionsPerProcess(pids: number[], port: number): number[] {
  const inodes = new Set<string>();
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[3] !== '01') continue; // 01: ESTABLISHED
    if (Number.parseInt(f[2]!.split(':')[1]!, 16) === port) inodes.add(f[9]!);
  }
  return pids.map((pid) => {
    let n = 0;
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && inodes.has(m[1]!)) n++;
      } catch {
        // closed between the listing and the read
      }
    }
    return n;
  });
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}
