import { isAbsolute, join } from 'node:path';
import pg from 'pg';
import type { Config } from '../config/schema.ts';
import { projectRoot } from '../paths.ts';

// bigint (count(*), sums) and numeric (averages, percentages) come back as strings by default. The
// values this system reads are far below 2^53, so numbers are the useful type.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number.parseInt(v, 10));
pg.types.setTypeParser(pg.types.builtins.NUMERIC, (v) => Number.parseFloat(v));

export type Db = pg.Pool | pg.PoolClient | pg.Client;

/** What a pool needs to report trouble; the winston logger fits. */
export interface PoolLogger {
  warn(message: string, meta?: Record<string, unknown>): unknown;
}

/** The URL to connect to: database.url, or the embedded PostgreSQL's when that is empty. */
export function databaseUrl(config: Pick<Config, 'database'>): string {
  if (config.database.url !== '') return config.database.url;
  return `postgres://postgres:postgres@127.0.0.1:${config.database.embedded_port}/tasker`;
}

/**
 * The URL for work that needs a session of its own across statements (migrations hold a session
 * advisory lock): database.direct_url, else the same as databaseUrl. Where database.url points at
 * PgBouncer in transaction pooling mode, direct_url must point at PostgreSQL itself.
 */
export function directDatabaseUrl(config: Pick<Config, 'database'>): string {
  if (config.database.direct_url !== '') return config.database.direct_url;
  return databaseUrl(config);
}

export function isEmbedded(config: Pick<Config, 'database'>): boolean {
  return config.database.url === '';
}

export function embeddedDataDir(config: Pick<Config, 'database'>): string {
  const dir = config.database.embedded_data_dir;
  return isAbsolute(dir) ? dir : join(projectRoot, dir);
}

export interface CreatePoolOptions {
  max?: number;
  applicationName?: string;
  logger?: PoolLogger;
}

/**
 * A pool whose idle-client errors (a restarted server, a dropped connection) are logged instead of
 * crashing the process; the next query takes a fresh connection.
 */
export function createPool(url: string, options: CreatePoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'tasker-lifecycle',
    connectionTimeoutMillis: 10_000,
  });
  pool.on('error', (err) => {
    options.logger?.warn('database connection lost while idle; it will be replaced', { error: err.message });
  });
  // A connection cut while checked out between two statements (a transaction's client, after its
  // failed query and before its release) emits 'error' on the client, where the pool does not
  // listen: unheard, it ends the process. The statement in flight fails on its own, and the pool
  // discards the broken client when it is released.
  pool.on('connect', (client) => {
    client.on('error', (err) => {
      options.logger?.warn('database connection lost while in use', { error: err.message });
    });
  });
  return pool;
}

/**
 * Runs fn inside one transaction on one client from the pool. While the client is checked out, a
 * lost connection (a server restart) arrives as an 'error' event that pg-pool no longer listens
 * for; unheard, it would crash the process. It is heard here: the query in flight fails with it,
 * and the dead client is discarded instead of going back to the pool.
 */
export async function withTransaction<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let lost: Error | undefined;
  const onError = (err: Error) => {
    lost = err;
  };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined); // the original error is the one worth reporting
    throw err;
  } finally {
    client.removeListener('error', onError);
    client.release(lost);
  }
}

/**
 * Runs fn in one transaction with statement_timeout set for that transaction only (SET LOCAL), so
 * a statement that runs longer is cancelled (SQLSTATE 57014) and the transaction rolled back whole.
 */
export async function withStatementTimeout<T>(
  pool: pg.Pool,
  statementTimeoutMs: number,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  return withTransaction(pool, async (client) => {
    await client.query(`SELECT set_config('statement_timeout', $1, true)`, [`${statementTimeoutMs}ms`]);
    return fn(client);
  });
}
