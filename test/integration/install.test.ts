/**
 * Installing is `migrate`'s alone: it writes the queues' retry settings, the schedules and the
 * settings row from its configuration. A worker only checks them: it refuses to start when
 * something it needs is missing (naming each gap) and logs what differs from its own
 * configuration, writing nothing, so during a rolling deploy the last worker to start does not
 * decide for everyone.
 */
import { beforeAll, expect, it } from '@jest/globals';
import { runCli } from '../helpers/cli-process.ts';
import { createTestDatabase, useTestDatabase } from '../helpers/db.ts';
import {
  FAST_WORKER_ENV,
  installFor,
  startWorkerProcess,
  waitForWorkers,
  workerPort,
} from '../helpers/workers.ts';

const DETECT = 'tasker.detect-stale-tasks';
const RELEASE_ENV = {
  TASKER__worker__retry_limit: '4',
  TASKER__staleness_detection__detection_interval_seconds: '120',
  TASKER__staleness_detection__thresholds__waiting_for_retry_minutes: '45',
};

const db = useTestDatabase();

/** What every worker shares: the detection queue's settings, its schedule, the settings row. */
async function shared() {
  const queue = await db.pool.query('SELECT retry_limit FROM pgboss.queue WHERE name = $1', [DETECT]);
  const schedule = await db.pool.query('SELECT cron FROM pgboss.schedule WHERE name = $1', [DETECT]);
  const settings = await db.pool.query('SELECT waiting_for_retry_minutes FROM tasker_lifecycle_settings');
  return { queue: queue.rows, schedule: schedule.rows, settings: settings.rows };
}

beforeAll(async () => {
  const migrate = await runCli(['migrate'], { DATABASE_URL: db.url, ...FAST_WORKER_ENV, ...RELEASE_ENV });
  expect(migrate.code).toBe(0);
});

it('`migrate` writes the queue settings, schedules and settings row from its configuration', async () => {
  expect(await shared()).toEqual({
    queue: [{ retry_limit: 4 }],
    schedule: [{ cron: '*/2 * * * *' }],
    settings: [{ waiting_for_retry_minutes: 45 }],
  });
});

it('a worker with another configuration writes none of it, and logs each difference', async () => {
  const before = await shared();
  const worker = startWorkerProcess(db.url, {
    TASKER__worker__retry_limit: '1',
    TASKER__staleness_detection__detection_interval_seconds: '60',
    TASKER__staleness_detection__thresholds__waiting_for_retry_minutes: '10',
  });
  try {
    await workerPort(worker); // logged once it has started
    await waitForWorkers(db.pool, 1);
    expect(await shared()).toEqual(before);
    const said = worker
      .stderrSoFar()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line));
    expect(said.map((l) => l.install_difference).filter(Boolean)).toEqual(
      expect.arrayContaining([
        `queue ${DETECT} retryLimit: the database has 4, this configuration says 1`,
        `schedule of ${DETECT}: the database has "*/2 * * * *", this configuration says "* * * * *"`,
        'tasker_lifecycle_settings.waiting_for_retry_minutes: the database has 45, this configuration says 10',
      ]),
    );
    // What it says it runs is what is in force: the installed schedule.
    expect(said.find((l) => l.message === 'worker started').schedules[DETECT]).toBe('*/2 * * * *');
  } finally {
    worker.kill('SIGTERM');
    expect((await worker.done).code).toBe(0);
  }
});

it('a worker refuses to start, naming each gap, where what it needs is missing', async () => {
  await db.pool.query(`DELETE FROM tasker_lifecycle_sql_objects WHERE file = 'functions/dlq_and_more.sql'`);
  await db.pool.query(`UPDATE pgboss.queue SET policy = 'standard' WHERE name = $1`, [DETECT]);
  try {
    const run = await runCli(['worker'], { DATABASE_URL: db.url, ...FAST_WORKER_ENV, ...RELEASE_ENV });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('the database lacks what this build needs');
    expect(run.stderr).toContain('functions/dlq_and_more.sql was never applied');
    expect(run.stderr).toContain(`queue ${DETECT} has policy standard; this build needs stately`);
  } finally {
    await db.pool.query(`UPDATE pgboss.queue SET policy = 'stately' WHERE name = $1`, [DETECT]);
    await installFor(db.url, RELEASE_ENV);
  }
  expect((await runCli(['migrate', '--json'], { DATABASE_URL: db.url, ...RELEASE_ENV })).code).toBe(0);
});

it('a worker on a database `migrate` never ran on says to run it', async () => {
  const empty = await createTestDatabase({ template: false });
  try {
    const run = await runCli(['worker'], { DATABASE_URL: empty.url, ...FAST_WORKER_ENV });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/pg-boss is not installed.*run `tasker-lifecycle migrate` first/s);
  } finally {
    await empty.drop();
  }
});

it('a worker on a newer pg-boss schema than its build says the build is older than the database', async () => {
  const { rows } = await db.pool.query('SELECT version FROM pgboss.version');
  await db.pool.query('UPDATE pgboss.version SET version = version + 1');
  try {
    const run = await runCli(['worker'], { DATABASE_URL: db.url, ...FAST_WORKER_ENV, ...RELEASE_ENV });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      `the database's pg-boss schema is version ${rows[0].version + 1}, newer than this build's pg-boss (schema ${rows[0].version})`,
    );
    expect(run.stderr).toContain('This build is older than the database');
    expect(run.stderr).not.toContain('run `tasker-lifecycle migrate` first');
  } finally {
    await db.pool.query('UPDATE pgboss.version SET version = $1', [rows[0].version]);
  }
});
