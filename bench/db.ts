import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { type EmbeddedServer, startEmbeddedPostgres } from '../src/db/embedded.ts';
import { createPool } from '../src/db/pool.ts';
import { migrate } from '../src/install/sql.ts';

/** The server benchmarks run on, and fresh migrated databases on it. */
export interface BenchServer {
  /** A new database, migrated unless `migrated` is false; drop() removes it. */
  createDatabase(options?: { migrated?: boolean }): Promise<BenchDatabase>;
  description: string;
  stop(): Promise<void>;
}

export interface BenchDatabase {
  url: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

/** The server settings every benchmark prints: those that move its figures most. */
const BENCH_SETTINGS = [
  'shared_buffers',
  'work_mem',
  'max_wal_size',
  'wal_buffers',
  'synchronous_commit',
  'fsync',
  'autovacuum',
  'checkpoint_timeout',
];

export async function startBenchDatabase(): Promise<BenchServer> {
  let adminUrl = process.env.DATABASE_URL;
  let embedded: EmbeddedServer | undefined;
  let description = 'DATABASE_URL server';
  if (!adminUrl) {
    embedded = await startEmbeddedPostgres({
      dataDir: mkdtempSync(join(tmpdir(), 'tasker-bench-pg-')),
      persistent: false,
      // PostgreSQL's own defaults (durability included), as a server nobody tuned runs:
      // benchmark figures should mean what they say. BENCH_PG_SETTINGS='{"name": "value"}' adds
      // settings, e.g. '{"shared_buffers": "512MB", "max_wal_size": "4GB"}' for a tuned server.
      settings: { max_connections: 100, ...JSON.parse(process.env.BENCH_PG_SETTINGS ?? '{}') },
    });
    adminUrl = embedded.url('postgres');
    description = 'embedded PostgreSQL';
  }
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  const version = (await admin.query('SHOW server_version')).rows[0].server_version;
  const settings = await admin.query<{ name: string; setting: string; source: string }>(
    `SELECT name, current_setting(name) AS setting, source FROM pg_settings
      WHERE name = ANY ($1) ORDER BY array_position($1, name)`,
    [BENCH_SETTINGS],
  );
  return {
    description: `${description}, server ${version}; ${settings.rows
      .map((r) => `${r.name} ${r.setting}${r.source === 'default' ? '' : ` (${r.source})`}`)
      .join(', ')}`,
    async createDatabase(options: { migrated?: boolean } = {}) {
      const name = `tasker_bench_${randomBytes(4).toString('hex')}`;
      await admin.query(`CREATE DATABASE ${name}`);
      const url = new URL(adminUrl);
      url.pathname = `/${name}`;
      const pool = createPool(url.toString(), { max: 20 });
      if (options.migrated !== false) await migrate(pool);
      return {
        url: url.toString(),
        pool,
        async drop() {
          await pool.end();
          await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        },
      };
    },
    async stop() {
      await admin.end();
      await embedded?.stop();
    },
  };
}

/** Milliseconds taken by fn, and its result. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; result: T }> {
  const start = performance.now();
  const result = await fn();
  return { ms: performance.now() - start, result };
}
