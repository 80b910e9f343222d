import type { Db } from '../pool.ts';

/**
 * Who holds the locks `migrate` waits for (src/install/lock-safe-ddl.ts), from pg_locks,
 * pg_blocking_pids and pg_stat_activity, so that a schema change that gives up can name the
 * session in its way: its pid, application_name, state, how long its transaction has been open,
 * and its query. Catalog reads only.
 */

/** A session holding a lock another one waits for (or would wait for). */
export interface LockHolder {
  pid: number;
  application_name: string;
  /** pg_stat_activity.state: active, idle in transaction, … */
  state: string | null;
  /** Milliseconds its transaction has been open; null outside a transaction. */
  transaction_ms: number | null;
  /** Its current or last query, at most 300 characters. */
  query: string | null;
  /** The lock it holds on the table, where that is known (pre-checks), e.g. RowExclusiveLock. */
  mode: string | null;
}

/** What one session is waiting for, and who is in its way. */
export interface LockWait {
  /** pg_locks.locktype of the lock waited for: relation, virtualxid, transactionid, tuple, … */
  locktype: string;
  /** The lock mode asked for, e.g. ShareRowExclusiveLock. */
  mode: string;
  /** The relation, for relation and tuple locks. */
  relation: string | null;
  holders: LockHolder[];
}

const HOLDER_COLUMNS = `
  b.pid, coalesce(b.application_name, '') AS application_name, b.state,
  round(extract(epoch FROM clock_timestamp() - b.xact_start) * 1000)::float8 AS transaction_ms,
  left(regexp_replace(b.query, '\\s+', ' ', 'g'), 300) AS query`;

/**
 * The lock the session `pid` is waiting for, if any, with the sessions holding it or queued ahead
 * of it (pg_blocking_pids). Null when it waits for no lock.
 */
export async function lockWaitOf(db: Db, pid: number): Promise<LockWait | null> {
  const { rows } = await db.query<{
    locktype: string;
    mode: string;
    relation: string | null;
    holders: LockHolder[] | null;
  }>(
    `SELECT w.locktype, w.mode, w.relation::regclass::text AS relation,
            (SELECT json_agg(h ORDER BY h.pid)
               FROM (SELECT ${HOLDER_COLUMNS}, NULL::text AS mode
                       FROM unnest(pg_blocking_pids(w.pid)) AS bp(pid)
                       JOIN pg_stat_activity b ON b.pid = bp.pid) h) AS holders
       FROM pg_locks w
      WHERE w.pid = $1 AND NOT w.granted
      LIMIT 1`,
    [pid],
  );
  const row = rows[0];
  if (!row) return null;
  return { locktype: row.locktype, mode: row.mode, relation: row.relation, holders: row.holders ?? [] };
}

/**
 * Sessions other than `exceptPid` holding a lock on `table` (or one of its indexes) in a
 * transaction open longer than `olderThanMs`: what CREATE INDEX CONCURRENTLY would wait for.
 */
export async function longTransactionsOnTable(
  db: Db,
  table: string,
  olderThanMs: number,
  exceptPid: number,
): Promise<LockHolder[]> {
  const { rows } = await db.query<LockHolder>(
    `SELECT ${HOLDER_COLUMNS},
            string_agg(DISTINCT l.mode, ', ' ORDER BY l.mode) AS mode
       FROM pg_locks l
       JOIN pg_stat_activity b ON b.pid = l.pid
      WHERE l.locktype = 'relation' AND l.granted AND l.pid <> $3
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND (l.relation = to_regclass($1)
             OR l.relation IN (SELECT indexrelid FROM pg_index WHERE indrelid = to_regclass($1)))
        AND b.xact_start < clock_timestamp() - make_interval(secs => $2::float8 / 1000)
      GROUP BY b.pid, b.application_name, b.state, b.xact_start, b.query
      ORDER BY b.xact_start`,
    [table, olderThanMs, exceptPid],
  );
  return rows;
}

/** This session's backend pid. */
export async function backendPid(db: Db): Promise<number> {
  const { rows } = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return rows[0]!.pid;
}

/**
 * This transaction's (SET LOCAL) or, outside one, this session's lock_timeout and
 * statement_timeout, in milliseconds.
 */
export async function setLockAndStatementTimeouts(
  db: Db,
  lockTimeoutMs: number,
  statementTimeoutMs: number,
  local: boolean,
): Promise<void> {
  await db.query(`SELECT set_config('lock_timeout', $1, $3), set_config('statement_timeout', $2, $3)`, [
    `${lockTimeoutMs}ms`,
    `${statementTimeoutMs}ms`,
    local,
  ]);
}

/** This session's lock_timeout and statement_timeout as set now (to put them back afterwards). */
export async function currentLockAndStatementTimeouts(
  db: Db,
): Promise<{ lock_timeout: string; statement_timeout: string }> {
  const { rows } = await db.query<{ lock_timeout: string; statement_timeout: string }>(
    `SELECT current_setting('lock_timeout') AS lock_timeout,
            current_setting('statement_timeout') AS statement_timeout`,
  );
  return rows[0]!;
}

/** Puts this session's lock_timeout and statement_timeout back (values from the function above). */
export async function restoreLockAndStatementTimeouts(
  db: Db,
  saved: { lock_timeout: string; statement_timeout: string },
): Promise<void> {
  await db.query(`SELECT set_config('lock_timeout', $1, false), set_config('statement_timeout', $2, false)`, [
    saved.lock_timeout,
    saved.statement_timeout,
  ]);
}
