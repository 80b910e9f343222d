import pg from 'pg';
import { JOBS } from '../../jobs/index.ts';
import { loadConfig } from '../../src/config/load.ts';
import { install } from '../../src/install/index.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { type CliProcess, startCli } from './cli-process.ts';
import { waitFor } from './wait.ts';

/**
 * Real `worker` processes for the multi-process tests, with pg-boss's intervals shortened so that
 * recovery (heartbeats, retries, schedules) happens in seconds rather than minutes.
 */
export const FAST_WORKER_ENV = {
  TASKER__metrics__port: '0',
  TASKER__worker__polling_interval_seconds: '0.5',
  TASKER__worker__cron_monitor_interval_seconds: '2',
  TASKER__worker__monitor_interval_seconds: '2',
  TASKER__worker__heartbeat_seconds: '10',
  TASKER__worker__recovery_interval_seconds: '1',
  TASKER__worker__retry_delay_seconds: '1',
  TASKER__worker__shutdown_timeout_seconds: '25',
  TASKER__logging__format: '"json"',
  TASKER__logging__level: '"info"',
};

/**
 * The release step before the workers a test starts: `migrate`'s install (this system's SQL,
 * pg-boss's schema, the queues with their retry settings, the schedules and the settings row),
 * with the configuration those workers get (TASKER_ENV=test, FAST_WORKER_ENV, then env). Workers
 * only check what is installed: a setting given to a worker alone is not in force.
 */
export async function installFor(url: string, env: Record<string, string> = {}): Promise<void> {
  const { config } = loadConfig({
    env: { TASKER_ENV: 'test', DATABASE_URL: url, ...FAST_WORKER_ENV, ...env },
  });
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  try {
    await install({
      config,
      pool,
      directPool: pool,
      directUrl: url,
      logger: silentLogger(),
      command: 'test',
      jobs: JOBS,
    });
  } finally {
    await pool.end();
  }
}

export function startWorkerProcess(databaseUrl: string, env: Record<string, string> = {}): CliProcess {
  return startCli(['worker'], { DATABASE_URL: databaseUrl, ...FAST_WORKER_ENV, ...env });
}

/** Waits until `count` workers have registered with pg-boss and are live. */
export async function waitForWorkers(db: pg.Pool, count: number): Promise<void> {
  await waitFor(`${count} live worker(s)`, async () => {
    const { rows } = await db.query(
      `SELECT count(*) AS n FROM pgboss.instance WHERE stopped_on IS NULL AND application_name = 'tasker-lifecycle-worker'`,
    );
    return rows[0].n >= count;
  });
}

export interface RunRow {
  run_id: string;
  job_name: string;
  trigger: string;
  worker: string;
  started_at: Date;
  finished_at: Date | null;
  outcome: string | null;
  counts: Record<string, unknown> | null;
  pgboss_job_id: string | null;
}

export async function runsOf(db: pg.Pool, job: string): Promise<RunRow[]> {
  const { rows } = await db.query<RunRow>(
    'SELECT run_id, job_name, trigger, worker, started_at, finished_at, outcome, counts, pgboss_job_id FROM tasker_job_runs WHERE job_name = $1 ORDER BY started_at',
    [job],
  );
  return rows;
}

/**
 * For workers (and the enqueue that sends their run's options) whose detection batch a test holds
 * on a lock (holdDetectionAtStart, an uncommitted DLQ entry): each batch is otherwise cancelled
 * after staleness_detection.batch_statement_timeout_ms (10 s), which would end the hold early.
 */
export const HELD_DETECTION_ENV = {
  TASKER__staleness_detection__batch_statement_timeout_ms: '600000',
  // A worker refuses a shutdown timeout shorter than its longest batch (src/worker/process.ts).
  TASKER__worker__shutdown_timeout_seconds: '610',
};

/**
 * Holds an exclusive lock on tasker_named_tasks, which every detection page (real or dry run, with
 * or without candidates) reads first for its smallest threshold, so the next detection run blocks
 * at its first statement until release(): a run whose length the test controls (run the worker
 * with HELD_DETECTION_ENV). tasker_task_namespaces would not do: a page with no candidates never
 * judges, so it never reads it. Enrichment reads tasker_named_tasks too, so hold it only while no
 * enrichment is due.
 */
export async function holdDetectionAtStart(client: pg.Client): Promise<{ release(): Promise<void> }> {
  await client.query('BEGIN');
  await client.query('LOCK TABLE tasker_named_tasks IN ACCESS EXCLUSIVE MODE');
  return { release: async () => void (await client.query('COMMIT')) };
}

/** The pg-boss job rows of a queue, oldest first. */
export async function bossJobs(db: pg.Pool, queue: string) {
  const { rows } = await db.query(
    'SELECT id, state, singleton_key, data, created_on, started_on, completed_on, retry_count, output FROM pgboss.job WHERE name = $1 ORDER BY created_on',
    [queue],
  );
  return rows;
}

/** The HTTP port a worker process logged at start (it was started with port 0). */
export async function workerPort(worker: CliProcess): Promise<number> {
  return waitFor('the worker to log its HTTP port', async () => {
    const line = worker
      .stderrSoFar()
      .split('\n')
      .find((l) => l.includes('"worker started"'));
    return line ? (JSON.parse(line).http_port as number) : undefined;
  });
}

/** Waits until a backend is blocked on a lock while running the detection batch. */
export async function waitForBlockedDetection(db: pg.Pool): Promise<void> {
  await waitFor('a detection batch waiting on a lock', async () => {
    const { rows } = await db.query(
      `SELECT count(*) AS n FROM pg_stat_activity
        WHERE wait_event_type = 'Lock' AND query LIKE '%detect_stale_tasks_page%' AND datname = current_database()`,
    );
    return rows[0].n > 0;
  });
}

/** Opens (and keeps open) a pending entry for a task, so a detection batch taking it blocks on it. */
export async function blockEntryFor(
  client: pg.Client,
  taskUuid: string,
): Promise<{ release(): Promise<void> }> {
  await client.query('BEGIN');
  await client.query(
    `INSERT INTO tasker_tasks_dlq (task_uuid, original_state, dlq_reason, task_snapshot) VALUES ($1, 'waiting_for_retry', 'manual_dlq', '{}')`,
    [taskUuid],
  );
  return { release: async () => void (await client.query('ROLLBACK')) };
}
