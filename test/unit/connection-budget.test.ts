/**
 * database.max_connections_per_process: one number that bounds a process's connections, split
 * between pg-boss's pool and this system's; the old per-pool keys still override a share but must
 * fit in the budget; DATABASE_DIRECT_URL names the session-capable URL migrations use.
 */
import { describe, expect, it } from '@jest/globals';
import { JOBS } from '../../jobs/index.ts';
import { loadConfig } from '../../src/config/load.ts';
import { connectionShares } from '../../src/config/schema.ts';
import { databaseUrl, directDatabaseUrl } from '../../src/db/pool.ts';
import { ConfigError } from '../../src/errors.ts';
import { workerConfigProblems } from '../../src/worker/process.ts';

function database(env: Record<string, string>) {
  return loadConfig({ env: { TASKER_ENV: 'test', ...env } }).config.database;
}

function problemsOf(env: Record<string, string>): string[] {
  try {
    database(env);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('connection budget', () => {
  it("defaults to 7 per process: 3 for pg-boss, 4 for this system (a worker's three jobs and recovery)", () => {
    const d = database({});
    expect(d.max_connections_per_process).toBe(7);
    expect(connectionShares(d)).toEqual({ pool: 4, boss: 3 });
  });

  it.each([
    [4, { pool: 1, boss: 3 }],
    [6, { pool: 3, boss: 3 }],
    [9, { pool: 6, boss: 3 }],
    [12, { pool: 8, boss: 4 }],
    [14, { pool: 10, boss: 4 }],
  ])('a budget of %i splits as %o (never more than the budget)', (budget, shares) => {
    const d = database({ TASKER__database__max_connections_per_process: String(budget) });
    expect(connectionShares(d)).toEqual(shares);
    expect(shares.pool + shares.boss).toBe(budget);
  });

  it('pool_max and boss_pool_max override a share when they fit in the budget', () => {
    const d = database({
      TASKER__database__max_connections_per_process: '13',
      TASKER__database__pool_max: '10',
      TASKER__database__boss_pool_max: '3',
    });
    expect(connectionShares(d)).toEqual({ pool: 10, boss: 3 });
    expect(connectionShares(database({ TASKER__database__boss_pool_max: '5' }))).toEqual({
      pool: 2,
      boss: 5,
    });
  });

  it('refuses old keys that do not fit, naming the values and the fix', () => {
    const [problem] = problemsOf({ TASKER__database__pool_max: '10', TASKER__database__boss_pool_max: '4' });
    expect(problem).toContain(
      'database.pool_max (10) + database.boss_pool_max (4) = 14 is more than database.max_connections_per_process (7)',
    );
    expect(problem).toContain('raise max_connections_per_process to 14');
    const [alone] = problemsOf({ TASKER__database__pool_max: '5' });
    expect(alone).toContain('database.pool_max (5) + database.boss_pool_max (3) = 8 is more than');
    const [noRoom] = problemsOf({ TASKER__database__boss_pool_max: '7' });
    expect(noRoom).toContain(
      "database.boss_pool_max (7) leaves no connection of database.max_connections_per_process (7) for this system's pool",
    );
  });

  it('refuses a budget below 4 (pg-boss needs 3, this system 1)', () => {
    const [problem] = problemsOf({ TASKER__database__max_connections_per_process: '3' });
    expect(problem).toContain('database.max_connections_per_process = 3');
  });

  it('refuses a worker whose pool cannot hold a batch of each job and recovery, naming the fix', () => {
    const config = loadConfig({
      env: { TASKER_ENV: 'test', TASKER__database__max_connections_per_process: '6' },
    }).config;
    expect(workerConfigProblems(config, JOBS)).toEqual([
      "a worker's pool needs 4 connections (one per job it runs, one for recovery and run history); database.max_connections_per_process (6) gives it 3: raise max_connections_per_process (or pool_max)",
    ]);
    expect(workerConfigProblems(loadConfig({ env: { TASKER_ENV: 'test' } }).config, JOBS)).toEqual([]);
  });
});

describe('direct URL', () => {
  it('is database.url unless DATABASE_DIRECT_URL (database.direct_url) is set', () => {
    const pooled = 'postgres://app@127.0.0.1:6432/tasker';
    const direct = 'postgres://app@127.0.0.1:5432/tasker';
    expect(directDatabaseUrl({ database: database({ DATABASE_URL: pooled }) })).toBe(pooled);
    const both = { database: database({ DATABASE_URL: pooled, DATABASE_DIRECT_URL: direct }) };
    expect(databaseUrl(both)).toBe(pooled);
    expect(directDatabaseUrl(both)).toBe(direct);
    const [problem] = problemsOf({ DATABASE_DIRECT_URL: 'mysql://x' });
    expect(problem).toContain('database.direct_url');
    expect(problem).toContain('expected a postgres:// or postgresql:// URL');
  });
});
