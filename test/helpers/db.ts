import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from '@jest/globals';
import pg from 'pg';
import { createPool } from '../../src/db/pool.ts';

/**
 * A fresh database for one test file, copied from the migrated template that global-setup built.
 * Dropped by drop(); KEEP_FAILED_DB=1 keeps it (the name is printed) to look at afterwards.
 */
export interface TestDatabase {
  name: string;
  url: string;
  pool: pg.Pool;
  /** A new client on this database (for tests that need several separate connections). */
  connect(): Promise<pg.Client>;
  drop(): Promise<void>;
}

export async function createTestDatabase(options: { template?: boolean } = {}): Promise<TestDatabase> {
  const adminUrl = requireEnv('TEST_ADMIN_URL');
  const template = options.template === false ? 'template0' : requireEnv('TEST_TEMPLATE_DB');
  const name = `tasker_t${process.env.JEST_WORKER_ID ?? '0'}_${randomBytes(4).toString('hex')}`;
  await withAdmin(adminUrl, (c) => c.query(`CREATE DATABASE ${name} TEMPLATE ${template}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const pool = createPool(url.toString(), { max: 20 });
  const clients: pg.Client[] = [];
  return {
    name,
    url: url.toString(),
    pool,
    async connect() {
      const client = new pg.Client({ connectionString: url.toString() });
      await client.connect();
      clients.push(client);
      return client;
    },
    async drop() {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
      await pool.end();
      if (process.env.KEEP_FAILED_DB === '1') {
        console.log(`kept test database ${name}`);
        return;
      }
      await withAdmin(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}

async function withAdmin<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

function requireEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests with npm test (jest globalSetup sets it)`);
  return value;
}

/** Every table a test writes: the engine's, the DLQ, the archive and the run history (not settings or migrations, see resetTables). */
const TEST_TABLES = [
  'tasker_tasks_dlq',
  'tasker_dlq_groups',
  'tasker_dlq_group_hours',
  'tasker_task_transitions',
  'tasker_workflow_step_transitions',
  'tasker_workflow_step_edges',
  'tasker_workflow_steps',
  'tasker_tasks',
  'tasker_named_tasks',
  'tasker_task_namespaces',
  'tasker_named_steps',
  'tasker_tasks_archive',
  'tasker_workflow_steps_archive',
  'tasker_workflow_step_edges_archive',
  'tasker_task_transitions_archive',
  'tasker_workflow_step_transitions_archive',
  'tasker_tasks_dlq_archive',
  'tasker_job_runs',
  'tasker_archive_holds',
  'tasker_run_request_extras',
  // the archive's monthly rollup (0210), emptied with the archive it counts
  'tasker_archive_months',
  'tasker_archive_month_templates',
  'tasker_archive_exports',
];

/**
 * Empties every table tests write, between tests of one file, and puts tasker_lifecycle_settings
 * back to its migrated defaults (a test that applied other settings must not leak them).
 */
export async function resetTables(db: pg.Pool): Promise<void> {
  await db.query(`TRUNCATE ${TEST_TABLES.join(', ')} CASCADE`);
  await resetSettings(db);
  // The gauges' lease and readings (0220): free, nothing read, as a fresh migration leaves them.
  await db.query(
    'UPDATE tasker_gauge_readings SET holder = NULL, generation = 0, lease_expires_at = NULL, read_at = NULL, readings = NULL',
  );
}

/** tasker_lifecycle_settings as a fresh migration leaves it: one row of column defaults. */
export async function resetSettings(db: pg.Pool): Promise<void> {
  await db.query(
    'DELETE FROM tasker_lifecycle_settings; INSERT INTO tasker_lifecycle_settings DEFAULT VALUES',
  );
}

/**
 * A fresh database for the test file that calls this at its top level: created before its first
 * test and dropped after its last (jest hooks). The returned object stands for it from then on.
 */
export function useTestDatabase(options: { template?: boolean } = {}): TestDatabase {
  let current: TestDatabase | undefined;
  beforeAll(async () => {
    current = await createTestDatabase(options);
  });
  afterAll(async () => {
    await current?.drop();
  });
  const get = () => {
    if (!current) throw new Error('the test database exists only inside tests and hooks');
    return current;
  };
  return {
    get name() {
      return get().name;
    },
    get url() {
      return get().url;
    },
    get pool() {
      return get().pool;
    },
    connect: () => get().connect(),
    drop: () => get().drop(),
  };
}
