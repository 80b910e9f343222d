import type { Db } from '../pool.ts';

/** Server-level reads that belong to no table. */

/** The database's clock: one reading per run, so every row of a run is judged against one instant. */
export async function databaseNow(db: Db): Promise<Date> {
  const { rows } = await db.query<{ now: Date }>('SELECT now() AS now');
  return rows[0]!.now;
}

export interface ReplicationState {
  /** Whether the server is a standby replaying WAL (false: it is a primary, not a replica). */
  in_recovery: boolean;
  /**
   * Seconds its replay is behind: 0 when it has replayed everything it received, else the time
   * since the last transaction it replayed was committed on the primary (pg_last_xact_replay_timestamp).
   */
  lag_seconds: number | null;
}

/** A replica's lag, from its own functions (no table read). */
export async function replicationState(db: Db): Promise<ReplicationState> {
  const { rows } = await db.query<ReplicationState>(
    `SELECT pg_is_in_recovery() AS in_recovery,
            CASE WHEN NOT pg_is_in_recovery() THEN NULL
                 WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
                 ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::float8
             END AS lag_seconds`,
  );
  return rows[0]!;
}
