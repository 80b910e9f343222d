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
  /**
   * Session defaults (database.*_timeout_ms), sent as startup parameters when `startupParameters`
   * is on; the idle-in-transaction timeout is also set in every transaction of withTransaction
   * (which PgBouncer passes on). Absent: the server's.
   */
  timeouts?: SessionTimeouts & { startupParameters: boolean };
}

/**
 * Defaults every session of a pool starts with, sent as startup parameters, so that one slow
 * query or one held lock cannot keep a process's connections: a statement or a lock wait that
 * runs longer is cancelled (57014, 55P03), a transaction left idle (its process frozen) is ended
 * and its locks released (25P03). Batches set their own statement and lock timeouts per
 * transaction. PgBouncer (1.18) does not forward startup parameters: behind it these are set on
 * the server side instead (docs/scaling.md).
 */
export interface SessionTimeouts {
  statementMs: number;
  lockMs: number;
  idleInTransactionMs: number;
}

const poolTimeouts = new WeakMap<pg.Pool, SessionTimeouts>();

/**
 * A pool whose idle-client errors (a restarted server, a dropped connection) are logged instead of
 * crashing the process; the next query takes a fresh connection.
 */
export function createPool(url: string, options: CreatePoolOptions = {}): pg.Pool {
  const t = options.timeouts;
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'tasker-lifecycle',
    connectionTimeoutMillis: 10_000,
    ...(t?.startupParameters
      ? {
          statement_timeout: t.statementMs,
          lock_timeout: t.lockMs,
          idle_in_transaction_session_timeout: t.idleInTransactionMs,
        }
      : {}),
  });
  if (t) poolTimeouts.set(pool, t);
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

/** The session timeouts the configuration gives every pool to database.url. */
export function sessionTimeouts(d: Config['database']): SessionTimeouts & { startupParameters: boolean } {
  return {
    statementMs: d.statement_timeout_ms,
    lockMs: d.lock_timeout_ms,
    idleInTransactionMs: d.idle_in_transaction_timeout_ms,
    startupParameters: d.session_timeouts,
  };
}

/** The session timeouts a pool was created with (createPool), if any. */
export function timeoutsOf(pool: pg.Pool): SessionTimeouts | undefined {
  return poolTimeouts.get(pool);
}

export interface TransactionOptions {
  /**
   * statement_timeout and lock_timeout of this transaction only (SET LOCAL), in milliseconds: a
   * batch's own, in place of the session's defaults. A statement that runs or waits longer is
   * cancelled (57014, 55P03) and the transaction rolled back whole.
   */
  statementTimeoutMs?: number;
  /**
   * The last thing before COMMIT, inside the transaction: a batch proves here that its run is still
   * its own (attemptHoldsRun); throwing rolls the whole transaction back.
   */
  beforeCommit?: (client: pg.PoolClient) => Promise<void>;
}

/**
 * Runs fn inside one transaction on one client from the pool. While the client is checked out, a
 * lost connection (a server restart) arrives as an 'error' event that pg-pool no longer listens
 * for; unheard, it would crash the process. It is heard here: the query in flight fails with it,
 * and the dead client is discarded instead of going back to the pool. The transaction is ended by
 * the server if it sits idle longer than the pool's idle-in-transaction timeout (its process
 * frozen): set again here, so that it holds behind PgBouncer too.
 */
export async function withTransaction<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  const client = await pool.connect();
  let lost: Error | undefined;
  const onError = (err: Error) => {
    lost = err;
  };
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const idle = timeoutsOf(pool)?.idleInTransactionMs;
    if (options.statementTimeoutMs !== undefined || idle !== undefined) {
      const statement = options.statementTimeoutMs === undefined ? null : `${options.statementTimeoutMs}ms`;
      await client.query(
        `SELECT set_config('statement_timeout', coalesce($1, current_setting('statement_timeout')), true),
                set_config('lock_timeout', coalesce($1, current_setting('lock_timeout')), true),
                set_config('idle_in_transaction_session_timeout',
                           coalesce($2, current_setting('idle_in_transaction_session_timeout')), true)`,
        [statement, idle === undefined ? null : `${idle}ms`],
      );
    }
    const result = await fn(client);
    await options.beforeCommit?.(client);
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
 * Runs fn in one transaction with statement_timeout (and lock_timeout) set for that transaction
 * only (SET LOCAL), so a statement that runs or waits longer is cancelled (SQLSTATE 57014, 55P03)
 * and the transaction rolled back whole; beforeCommit as withTransaction's.
 */
export async function withStatementTimeout<T>(
  pool: pg.Pool,
  statementTimeoutMs: number,
  fn: (client: pg.PoolClient) => Promise<T>,
  beforeCommit?: (client: pg.PoolClient) => Promise<void>,
): Promise<T> {
  return withTransaction(pool, fn, { statementTimeoutMs, ...(beforeCommit ? { beforeCommit } : {}) });
}
