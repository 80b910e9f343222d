/**
 * `migrate` in a database where the workflow engine is writing (issue 21): the indexes on the
 * engine's tables are built CONCURRENTLY (migrations/indexes/), every other schema change takes its
 * lock under a short lock_timeout, and a long engine transaction makes migrate give up, naming it,
 * having changed nothing half-way. Real processes and connections: the engine's writer has its own
 * connection, `migrate` runs as the CLI does.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { MigrateSchema } from '../../src/config/schema.ts';
import { MigrateBlockedError } from '../../src/errors.ts';
import { readIndexFiles } from '../../src/install/index-files.ts';
import { migrate, readMigrations } from '../../src/install/sql.ts';
import { migrationsDir } from '../../src/paths.ts';
import { runCli } from '../helpers/cli-process.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';
import {
  ENGINE_ONLY,
  loadEngineTasks,
  longestLockWait,
  startEngineWriter,
  startLockWaitSampler,
  waitsDuring,
} from '../helpers/engine-writer.ts';

const INDEXES = readIndexFiles(migrationsDir);
const INDEX_FILES = INDEXES.map((f) => f.file).sort();

/** An engine-first database: the engine's tables and functions, none of this system's objects. */
async function engineDatabase(inFlight: number, finished: number): Promise<TestDatabase> {
  const db = await createTestDatabase({ template: false });
  await db.pool.query(ENGINE_ONLY);
  await loadEngineTasks(db.pool, inFlight, finished);
  return db;
}

/** Each index's definition and validity, by name (null: absent). */
async function indexes(db: TestDatabase, names = INDEXES.map((f) => f.name)) {
  const { rows } = await db.pool.query<{ name: string; definition: string | null; valid: boolean | null }>(
    `SELECT n AS name, pg_get_indexdef(i.indexrelid) AS definition, i.indisvalid AS valid
       FROM unnest($1::text[]) n LEFT JOIN pg_index i ON i.indexrelid = to_regclass(n) ORDER BY n`,
    [names],
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.definition === null ? null : { valid: r.valid }]));
}

/** An engine session with a transaction open on tasker_task_transitions (one row updated, not committed). */
async function openEngineTransaction(db: TestDatabase, applicationName: string) {
  const client = new pg.Client({ connectionString: db.url, application_name: applicationName });
  await client.connect();
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  await client.query('BEGIN');
  await client.query(
    `UPDATE tasker_task_transitions SET updated_at = now()
      WHERE task_transition_uuid = (SELECT task_transition_uuid FROM tasker_task_transitions LIMIT 1)`,
  );
  return {
    pid: rows[0]!.pid,
    async end() {
      await client.query('ROLLBACK');
      await client.end();
    },
  };
}

const FAST_GIVE_UP = {
  TASKER__migrate__lock_timeout_ms: '100',
  TASKER__migrate__lock_retries: '2',
  TASKER__migrate__lock_retry_delay_ms: '50',
  TASKER__migrate__lock_retry_delay_max_ms: '100',
};

describe("an engine-first database with 200,000 tasks and none of this system's indexes, the engine writing", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await engineDatabase(150_000, 50_000);
  }, 180_000);
  afterAll(async () => {
    await db.drop();
  });

  it('migrate keeps no engine write waiting 1 s (a plain CREATE INDEX in a transaction held the writer for its whole build)', async () => {
    const writer = await startEngineWriter(db.url);
    const sampler = await startLockWaitSampler(db.url, 'engine-writer');
    try {
      await sleep(500);
      const start = performance.now();
      const run = await runCli(['migrate', '--json'], { DATABASE_URL: db.url });
      const end = performance.now();
      const during = waitsDuring(writer.samples(), start, end);
      const migrateMs = end - start;
      expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
      const result = JSON.parse(run.stdout);
      expect(result.indexes.map((i: { file: string }) => i.file).sort()).toEqual(INDEX_FILES);
      expect(await indexes(db)).toEqual(Object.fromEntries(INDEXES.map((f) => [f.name, { valid: true }])));

      // The old way, for comparison: one of the same indexes built in a transaction, as 0031 did.
      const other = await db.connect();
      const baselineStart = performance.now();
      await other.query('BEGIN');
      await other.query(
        `CREATE INDEX idx_baseline ON tasker_task_transitions (created_at)
           INCLUDE (task_uuid, to_state, sort_key, task_transition_uuid)
           WHERE most_recent = true AND to_state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')`,
      );
      const buildMs = performance.now() - baselineStart;
      await other.query('COMMIT');
      await sleep(200);
      const baselineEnd = performance.now();
      const baseline = waitsDuring(writer.samples(), baselineStart, baselineEnd);
      await other.query('DROP INDEX idx_baseline');
      const samples = await sampler.stop();
      const lockWait = longestLockWait(samples, start, end);
      const baselineLockWait = longestLockWait(samples, baselineStart, baselineEnd);
      console.log(
        `migrate beside the engine writer: ${(migrateMs / 1000).toFixed(1)} s; the writer's ${during.count} transactions meanwhile: longest ${during.longestMs.toFixed(0)} ms, p99 ${during.p99Ms.toFixed(0)} ms; its longest lock wait (sampled every 20 ms) ${lockWait.ms.toFixed(0)} ms${lockWait.blocker ? ` behind ${lockWait.blocker}` : ''}. ` +
          `A plain CREATE INDEX in a transaction (${buildMs.toFixed(0)} ms): longest ${baseline.longestMs.toFixed(0)} ms, lock wait ${baselineLockWait.ms.toFixed(0)} ms`,
      );
      expect(during.count).toBeGreaterThan(50); // the writer kept writing through migrate
      // What migrate can make the engine wait for is its locks: never 1 s. (The wall-clock figure
      // also holds commits that wait for the disk: a checkpoint of other tests' CREATE DATABASE.)
      // The wall-clock longest is printed above but not held to 1 s here: on a loaded CI machine a
      // commit can wait that long for the disk or a core with no lock involved (seen once).
      expect(lockWait.ms).toBeLessThan(1000);
      // The writer's figure does see a lock held: the plain build kept it waiting most of the build.
      expect(baseline.longestMs).toBeGreaterThan(buildMs * 0.5);
      // …and migrate, which built three such indexes, never held it as long as one plain build did.
      expect(during.longestMs).toBeLessThan(baseline.longestMs);
    } finally {
      await sampler.stop().catch(() => undefined);
      await writer.stop();
    }
  }, 180_000);
});

describe('a long engine transaction holding a lock on tasker_task_transitions', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await engineDatabase(2_000, 1_000);
  });
  afterAll(async () => {
    await db.drop();
  });

  it('migrate gives up within its timeout, naming the blocker, with no index and no migration half-way; it succeeds once the transaction ends', async () => {
    const engine = await openEngineTransaction(db, 'engine-long-transaction');
    let ended = false;
    try {
      await sleep(300); // older than migrate.lock_timeout_ms (100 ms here)
      const started = Date.now();
      const refused = await runCli(['migrate'], { DATABASE_URL: db.url, ...FAST_GIVE_UP });
      const tookMs = Date.now() - started;
      expect(refused.code).toBe(1);
      for (const part of [
        'indexes/idx_task_transitions_finished.sql',
        'migrate gave up after 3 attempts',
        `pid ${engine.pid}`,
        'application_name "engine-long-transaction"',
        'state "idle in transaction"',
        'transaction open',
        'query "UPDATE tasker_task_transitions SET updated_at = now()',
        `SELECT pg_terminate_backend(${engine.pid})`,
        'No index was left half-built. Nothing after it was applied.',
      ]) {
        expect(refused.stderr).toContain(part);
      }
      expect(tookMs).toBeLessThan(15_000); // node's start, then 3 attempts 50-100 ms apart
      expect(await indexes(db)).toEqual(Object.fromEntries(INDEXES.map((f) => [f.name, null])));
      const { rows } = await db.pool.query(
        `SELECT (SELECT count(*) FROM tasker_lifecycle_migrations)::int AS recorded,
                (SELECT count(*) FROM tasker_lifecycle_sql_objects)::int AS objects,
                to_regclass('tasker_tasks_dlq') AS dlq`,
      );
      expect(rows).toEqual([{ recorded: 0, objects: 0, dlq: null }]);

      await engine.end();
      ended = true;
      const again = await runCli(['migrate', '--json'], { DATABASE_URL: db.url, ...FAST_GIVE_UP });
      expect(again.stderr).toBe('');
      expect(again.code).toBe(0);
      expect(JSON.parse(again.stdout)).toMatchObject({ engineTables: 'adopted' });
      expect(await indexes(db)).toEqual(Object.fromEntries(INDEXES.map((f) => [f.name, { valid: true }])));
      const { rows: recorded } = await db.pool.query(
        'SELECT version FROM tasker_lifecycle_migrations ORDER BY 1',
      );
      expect(recorded.map((r) => r.version)).toEqual(readMigrations().map((m) => m.version));
    } finally {
      if (!ended) await engine.end();
    }
  }, 60_000);

  it('a build that fails part way leaves an INVALID index, which the next migrate detects, drops and builds again', async () => {
    await db.pool.query('DROP INDEX idx_task_transitions_in_flight');
    // Younger than lock_timeout_ms when migrate looks, so the build starts; the build then waits
    // for it longer than index_build_lock_timeout_ms and fails, and so does the drop of its index.
    const engine = await openEngineTransaction(db, 'engine-short-transaction');
    const settings = MigrateSchema.parse({
      lock_timeout_ms: 10_000,
      index_build_lock_timeout_ms: 300,
      lock_retries: 0,
    });
    let ended = false;
    try {
      const failed = migrate(db.pool, migrationsDir, { settings });
      await expect(failed).rejects.toThrow(MigrateBlockedError);
      await expect(failed).rejects.toThrow(
        /indexes\/idx_task_transitions_in_flight\.sql .*gave up after 1 attempt.*the end of another transaction.*engine-short-transaction.*It left the INVALID index idx_task_transitions_in_flight .*the next migrate drops it and builds again/,
      );
      expect(await indexes(db, ['idx_task_transitions_in_flight'])).toEqual({
        idx_task_transitions_in_flight: { valid: false },
      });
      await engine.end();
      ended = true;
      const result = await migrate(db.pool, migrationsDir, { settings });
      expect(result.indexes).toEqual([
        {
          file: 'indexes/idx_task_transitions_in_flight.sql',
          steps: [
            'dropped idx_task_transitions_in_flight (INVALID: left by a build that failed or was cancelled)',
            'built idx_task_transitions_in_flight (rebuilt)',
          ],
        },
      ]);
      expect(await indexes(db)).toEqual(Object.fromEntries(INDEXES.map((f) => [f.name, { valid: true }])));
    } finally {
      if (!ended) await engine.end();
    }
  }, 60_000);
});

describe('a long engine transaction holding a lock on tasker_tasks, the indexes built already', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await engineDatabase(2_000, 1_000);
    for (const f of INDEXES) await db.pool.query(f.statement);
  });
  afterAll(async () => {
    await db.drop();
  });

  it("a migration that needs the table's lock gives it up after lock_timeout_ms, is rolled back and retried, then gives up naming the session; the next migrate applies it", async () => {
    const client = new pg.Client({ connectionString: db.url, application_name: 'engine-holding-tasks' });
    await client.connect();
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    await client.query('BEGIN');
    await client.query(
      'UPDATE tasker_tasks SET updated_at = now() WHERE task_uuid = (SELECT task_uuid FROM tasker_tasks LIMIT 1)',
    );
    const settings = MigrateSchema.parse({ lock_timeout_ms: 150, lock_retries: 2, lock_retry_delay_ms: 50 });
    try {
      await expect(migrate(db.pool, migrationsDir, { settings })).rejects.toThrow(
        new RegExp(
          `^migration 0002_dlq\\.sql: migrate gave up after 3 attempts .*: it waited longer than 150 ms \\(migrate\\.lock_timeout_ms\\) for ShareRowExclusiveLock on tasker_tasks, held by pid ${rows[0]!.pid} \\(application_name "engine-holding-tasks", state "idle in transaction", transaction open .*query "UPDATE tasker_tasks SET updated_at = now\\(\\).*It was rolled back: nothing of it is applied\\.$`,
        ),
      );
      const { rows: recorded } = await db.pool.query(
        `SELECT array_agg(version ORDER BY version) AS versions, to_regclass('tasker_tasks_dlq') AS dlq FROM tasker_lifecycle_migrations`,
      );
      expect(recorded).toEqual([{ versions: [1], dlq: null }]); // 0001 adopted; 0002 rolled back whole
    } finally {
      await client.query('ROLLBACK');
      await client.end();
    }
    const log: string[] = [];
    const result = await migrate(db.pool, migrationsDir, { settings, log: (line) => log.push(line) });
    expect(result.applied[0]).toBe('0002_dlq.sql');
    expect(result.indexes).toEqual([]);
    // The released CREATE INDEX IF NOT EXISTS of these indexes were left out, not run to build nothing.
    expect(log.filter((line) => line.includes('not run, the index exists'))).toEqual([
      expect.stringMatching(/^0005_archive\.sql: .*CREATE INDEX IF NOT EXISTS idx_task_transitions_finished/),
      expect.stringMatching(
        /^0031_engine_adopted_indexes\.sql: .*CREATE INDEX IF NOT EXISTS idx_task_transitions_in_flight/,
      ),
      expect.stringMatching(
        /^0060_detection_bounded_by_thresholds\.sql: .*CREATE INDEX IF NOT EXISTS idx_tasks_unfinished_by_template/,
      ),
    ]);
  });
});

describe('indexes of earlier builds', () => {
  let db: TestDatabase;
  let fromScratch: TestDatabase;
  const definitions = async (d: TestDatabase) =>
    (
      await d.pool.query<{ name: string; def: string }>(
        `SELECT c.relname AS name, pg_get_indexdef(c.oid) AS def FROM pg_class c
          WHERE c.relname = ANY ($1::text[]) OR c.relname LIKE '%\\_next' ORDER BY 1`,
        [INDEXES.map((f) => f.name)],
      )
    ).rows;
  beforeAll(async () => {
    db = await createTestDatabase();
    fromScratch = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
    await fromScratch.drop();
  });

  it("a database with 0031's and 0060's definitions gets the files' definitions, swapped in beside the old ones; migrate again does nothing", async () => {
    const old = readFileSync(join(migrationsDir, '0031_engine_adopted_indexes.sql'), 'utf8');
    await db.pool.query(`DROP INDEX idx_task_transitions_in_flight; ${old}`);
    await db.pool.query(`DROP INDEX idx_tasks_unfinished_by_template;
      CREATE INDEX idx_tasks_unfinished_by_template ON tasker_tasks (named_task_uuid, created_at) INCLUDE (task_uuid)
       WHERE NOT complete`);
    expect(await definitions(db)).not.toEqual(await definitions(fromScratch));
    const result = await migrate(db.pool);
    expect(result.indexes).toEqual([
      {
        file: 'indexes/idx_task_transitions_in_flight.sql',
        steps: [
          "built idx_task_transitions_in_flight_next (idx_task_transitions_in_flight's definition differs from the file)",
          'dropped idx_task_transitions_in_flight (idx_task_transitions_in_flight_next replaces it)',
          'renamed idx_task_transitions_in_flight_next to idx_task_transitions_in_flight',
        ],
      },
      {
        file: 'indexes/idx_tasks_unfinished_by_template.sql',
        steps: [
          "built idx_tasks_unfinished_by_template_next (idx_tasks_unfinished_by_template's definition differs from the file)",
          'dropped idx_tasks_unfinished_by_template (idx_tasks_unfinished_by_template_next replaces it)',
          'renamed idx_tasks_unfinished_by_template_next to idx_tasks_unfinished_by_template',
        ],
      },
    ]);
    expect(await definitions(db)).toEqual(await definitions(fromScratch));
    expect(await migrate(db.pool)).toMatchObject({ applied: [], objectsApplied: [], indexes: [] });
  });

  it('a swap that stopped after building <name>_next is finished by the next migrate', async () => {
    const file = INDEXES.find((f) => f.name === 'idx_task_transitions_in_flight')!;
    await db.pool.query(`DROP INDEX idx_task_transitions_in_flight;
      ${readFileSync(join(migrationsDir, '0031_engine_adopted_indexes.sql'), 'utf8')}`);
    await db.pool.query(
      `CREATE INDEX idx_task_transitions_in_flight_next ON tasker_task_transitions ${file.tail}`,
    );
    expect((await migrate(db.pool)).indexes).toEqual([
      {
        file: 'indexes/idx_task_transitions_in_flight.sql',
        steps: [
          'dropped idx_task_transitions_in_flight (idx_task_transitions_in_flight_next, built by an earlier migrate, replaces it)',
          'renamed idx_task_transitions_in_flight_next to idx_task_transitions_in_flight',
        ],
      },
    ]);
    expect(await definitions(db)).toEqual(await definitions(fromScratch));
  });
});

describe('migrate --plan', () => {
  it('on a fresh database: every statement with its locks, the index files after 0001, pg-boss and the settings; nothing changed', async () => {
    const db = await createTestDatabase({ template: false });
    try {
      const run = await runCli(['migrate', '--plan', '--json'], { DATABASE_URL: db.url });
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      const plan = JSON.parse(run.stdout);
      expect(plan.changes).toBe(true);
      const dlqTable = plan.steps.find((s: { statement: string }) =>
        s.statement.startsWith('CREATE TABLE tasker_tasks_dlq '),
      );
      expect(dlqTable).toMatchObject({
        source: 'migrations/0002_dlq.sql',
        transaction: true,
        rewrites: false,
        locks: [
          { table: 'tasker_tasks_dlq', mode: 'ACCESS EXCLUSIVE', created: true },
          {
            table: 'tasker_tasks',
            mode: 'SHARE ROW EXCLUSIVE',
            engine: true,
            created: true,
            blocks: 'writes',
          },
        ],
      });
      const sources: string[] = plan.steps.map((s: { source: string }) => s.source);
      // Every migration, the index files after them, then pg-boss and the settings.
      for (const m of readMigrations()) expect(sources).toContain(`migrations/${m.file}`);
      const lastMigration = sources.lastIndexOf('migrations/0150_archive_holds.sql');
      for (const f of INDEX_FILES) expect(sources.indexOf(f)).toBeGreaterThan(lastMigration);
      expect(sources.slice(-8)).toEqual([...Array(7).fill('pg-boss'), 'settings']);
      const { rows } = await db.pool.query(
        `SELECT count(*)::int AS relations, to_regnamespace('pgboss') AS boss
           FROM pg_class WHERE relnamespace = 'public'::regnamespace`,
      );
      expect(rows).toEqual([{ relations: 0, boss: null }]);
    } finally {
      await db.drop();
    }
  });

  it("beside an engine: the indexes built CONCURRENTLY first, then the statements that take the engine's locks, named", async () => {
    const db = await engineDatabase(100, 10);
    try {
      const run = await runCli(['migrate', '--plan'], { DATABASE_URL: db.url });
      expect(run.code).toBe(0);
      const text = run.stdout;
      const firstIndex = text.indexOf('CREATE INDEX CONCURRENTLY idx_task_transitions_finished');
      expect(firstIndex).toBeGreaterThan(0);
      expect(firstIndex).toBeLessThan(text.indexOf('migrations/0002_dlq.sql'));
      expect(text).toContain(
        "SHARE UPDATE EXCLUSIVE on tasker_task_transitions (the engine's table: blocks no read or write)",
      );
      expect(text).toContain(
        "SHARE ROW EXCLUSIVE on tasker_tasks (the engine's table: blocks writes until the transaction commits)",
      );
      // 0005's CREATE INDEX IF NOT EXISTS of the same index is left out: it would only lock the table.
      expect(text).toMatch(
        /CREATE INDEX IF NOT EXISTS idx_task_transitions_finished ON tasker_task_transitions [^\n]*\n\s+no table lock; rewrites a table: no\n\s+not run: idx_task_transitions_finished exists/,
      );
      expect(text).not.toMatch(/Steps whose lock[\s\S]*(0005|0031|0060)_/);
      expect(text).toMatch(
        /Steps whose lock keeps the engine's writes waiting[^\n]*\n {2}migrations\/0002_dlq\.sql: SHARE ROW EXCLUSIVE on tasker_tasks/,
      );
      expect(await indexes(db)).toEqual(Object.fromEntries(INDEXES.map((f) => [f.name, null])));
    } finally {
      await db.drop();
    }
  });

  it('on an up-to-date database: nothing to do', async () => {
    const db = await createTestDatabase();
    try {
      await runCli(['migrate'], { DATABASE_URL: db.url }); // pg-boss and the settings row too
      const text = await runCli(['migrate', '--plan'], { DATABASE_URL: db.url });
      expect(text.code).toBe(0);
      expect(text.stdout).toContain(
        'Nothing to do: the database is up to date with this build and configuration.',
      );
      const json = await runCli(['migrate', '--plan', '--json'], { DATABASE_URL: db.url });
      expect(JSON.parse(json.stdout)).toMatchObject({ changes: false });
    } finally {
      await db.drop();
    }
  });
});

it('a migrate that waits for another longer than migrate.schema_lock_wait_seconds gives up, naming it', async () => {
  const db = await createTestDatabase();
  const holder = await db.connect();
  try {
    await holder.query("SET application_name = 'the-other-migrate'");
    await holder.query('SELECT pg_advisory_lock(7411001, 1)');
    const { rows } = await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const run = await runCli(['migrate'], {
      DATABASE_URL: db.url,
      TASKER__migrate__schema_lock_wait_seconds: '1',
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      `another migrate holds the migration lock: pid ${rows[0]!.pid} (application_name "the-other-migrate"`,
    );
    expect(run.stderr).toContain('Waited 1.');
  } finally {
    await db.drop();
  }
});
