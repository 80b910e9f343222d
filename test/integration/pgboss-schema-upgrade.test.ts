/**
 * A pg-boss schema upgrade is a stop-the-world step (docs/operating.md "Upgrades"): pg-boss starts
 * only on its own schema version, so a worker of the previous build cannot start once a newer
 * build's `migrate` upgraded the schema. `migrate` refuses such an upgrade while workers are alive
 * (naming them, changing nothing) unless the operator passes --upgrade-pgboss-schema; a worker of
 * this build on an older schema says to run `migrate` with this build and to stop the old workers
 * first. (A worker on a newer schema: test/integration/install.test.ts.)
 *
 * Both builds here have the same pg-boss, so the database is made to look older by setting
 * pgboss.version one below this build's schema version. pg-boss's step to its version (46:
 * ADD COLUMN IF NOT EXISTS, CREATE OR REPLACE, CREATE INDEX CONCURRENTLY IF NOT EXISTS) finds
 * everything there and is idempotent, so `migrate` really runs pg-boss's upgrade path on it.
 */
import { hostname } from 'node:os';
import { afterEach, expect, it } from '@jest/globals';
import { PGBOSS_SCHEMA_VERSION } from '../../src/db/queries/boss-jobs.ts';
import { runCli } from '../helpers/cli-process.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { FAST_WORKER_ENV, installFor, startWorkerProcess, waitForWorkers } from '../helpers/workers.ts';

const db = useTestDatabase();
const OLDER = PGBOSS_SCHEMA_VERSION - 1;

async function schemaVersion(): Promise<number> {
  const { rows } = await db.pool.query('SELECT version::int AS v FROM pgboss.version');
  return rows[0].v;
}

afterEach(async () => {
  if ((await db.pool.query(`SELECT to_regclass('pgboss.version') AS t`)).rows[0].t)
    await db.pool.query('UPDATE pgboss.version SET version = $1', [PGBOSS_SCHEMA_VERSION]);
});

it("migrate refuses to upgrade pg-boss's schema while a worker is alive, naming it and changing nothing; --upgrade-pgboss-schema, or no worker left, lets it", async () => {
  await installFor(db.url);
  const worker = startWorkerProcess(db.url);
  try {
    await waitForWorkers(db.pool, 1);
    await db.pool.query('UPDATE pgboss.version SET version = $1', [OLDER]);
    const migrationsBefore = await db.pool.query(
      'SELECT count(*)::int AS n FROM tasker_lifecycle_migrations',
    );

    const refused = await runCli(['migrate'], { DATABASE_URL: db.url, ...FAST_WORKER_ENV });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(
      `migrate refuses to upgrade pg-boss's schema from version ${OLDER} to ${PGBOSS_SCHEMA_VERSION}`,
    );
    expect(refused.stderr).toContain(`${hostname()}:${worker.pid} (pg-boss `);
    expect(refused.stderr).toContain('this upgrade is a stop-the-world step');
    expect(refused.stderr).toContain('Stop those workers first');
    expect(refused.stderr).toContain('--upgrade-pgboss-schema');
    expect(refused.stderr).toContain('Nothing was changed');
    expect(await schemaVersion()).toBe(OLDER);
    expect((await db.pool.query('SELECT count(*)::int AS n FROM tasker_lifecycle_migrations')).rows).toEqual(
      migrationsBefore.rows,
    );

    const forced = await runCli(['migrate', '--upgrade-pgboss-schema'], {
      DATABASE_URL: db.url,
      ...FAST_WORKER_ENV,
    });
    expect(forced.stderr).not.toMatch(/"level":"error"/);
    expect(forced.code).toBe(0);
    expect(forced.stdout).toContain(
      `upgraded pg-boss's schema from version ${OLDER} to ${PGBOSS_SCHEMA_VERSION}: workers of the previous build cannot start on it`,
    );
    expect(await schemaVersion()).toBe(PGBOSS_SCHEMA_VERSION);
  } finally {
    worker.kill('SIGTERM');
    expect((await worker.done).code).toBe(0);
  }
  // With every worker stopped, the upgrade needs no flag.
  await db.pool.query('UPDATE pgboss.version SET version = $1', [OLDER]);
  const upgraded = await runCli(['migrate', '--json'], { DATABASE_URL: db.url, ...FAST_WORKER_ENV });
  expect(upgraded.code).toBe(0);
  expect(JSON.parse(upgraded.stdout)).toMatchObject({
    pgboss_schema_version: PGBOSS_SCHEMA_VERSION,
    pgboss_schema_upgraded_from: OLDER,
  });
});

it('a worker of this build on an older pg-boss schema says to run migrate with this build, which upgrades it, and to stop the old workers first', async () => {
  await installFor(db.url);
  await db.pool.query('UPDATE pgboss.version SET version = $1', [OLDER]);
  const run = await runCli(['worker'], { DATABASE_URL: db.url, ...FAST_WORKER_ENV });
  expect(run.code).toBe(1);
  expect(run.stderr).toContain(
    `the database's pg-boss schema is version ${OLDER}, older than this build's pg-boss (schema ${PGBOSS_SCHEMA_VERSION}): run \`tasker-lifecycle migrate\` with this build (it upgrades pg-boss's schema: stop the old workers first`,
  );
});
