import type { Db } from '../pool.ts';

/**
 * The gauges' lease and stored readings (migrations/0220_gauge_readings.sql): one row, read and
 * written by its primary key only. Each worker runs claimGaugeLease once per
 * metrics.gauges_interval_seconds; the one that holds the lease reads the gauges and stores them
 * with storeGaugeReadings.
 */

export interface GaugeLease<R> {
  /** Whether the caller holds the lease now (it took or renewed it). */
  held: boolean;
  /** The lease's generation (the caller's when held). */
  generation: number;
  /** Who held the lease before this statement, and until when (null: never held). */
  previous_holder: string | null;
  previous_expires_at: Date | null;
  /** The stored readings and when they were read (null: none yet). */
  read_at: Date | null;
  readings: R | null;
  /** The database's clock at this statement. */
  now: Date;
}

/**
 * Takes the lease for `holder` if it is free, expired or already the holder's (renewing it for
 * leaseSeconds), and returns the stored readings either way, in one statement. The outer SELECT
 * sees the row as it was before the UPDATE (one snapshot), so previous_* is who held it.
 */
export async function claimGaugeLease<R>(
  db: Db,
  holder: string,
  leaseSeconds: number,
): Promise<GaugeLease<R>> {
  const { rows } = await db.query<{
    claimed: number | null;
    generation: number;
    holder: string | null;
    lease_expires_at: Date | null;
    read_at: Date | null;
    readings: R | null;
    now: Date;
  }>(
    `WITH claim AS (
       UPDATE tasker_gauge_readings
          SET holder = $1,
              lease_expires_at = now() + make_interval(secs => $2),
              generation = generation + CASE WHEN holder IS DISTINCT FROM $1 THEN 1 ELSE 0 END
        WHERE id = 1 AND (holder = $1 OR holder IS NULL OR lease_expires_at <= now())
        RETURNING generation
     )
     SELECT (SELECT generation FROM claim) AS claimed, r.generation, r.holder, r.lease_expires_at,
            r.read_at, r.readings, now() AS now
       FROM tasker_gauge_readings r
      WHERE r.id = 1`,
    [holder, leaseSeconds],
  );
  const row = rows[0];
  if (!row) throw new Error('tasker_gauge_readings has no row: run `tasker-lifecycle migrate`');
  return {
    held: row.claimed !== null,
    generation: Number(row.claimed ?? row.generation),
    previous_holder: row.holder,
    previous_expires_at: row.lease_expires_at,
    read_at: row.read_at,
    readings: row.readings,
    now: row.now,
  };
}

/**
 * Stores readings read at readAt, if `holder` still holds the lease of `generation` (a holder
 * frozen past its lease finds it taken and stores nothing). Returns whether it stored them.
 */
export async function storeGaugeReadings(
  db: Db,
  holder: string,
  generation: number,
  readAt: Date,
  readings: unknown,
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE tasker_gauge_readings SET read_at = $4, readings = $3
      WHERE id = 1 AND holder = $1 AND generation = $2`,
    [holder, generation, JSON.stringify(readings), readAt],
  );
  return rowCount === 1;
}

/** Ends `holder`'s lease (a worker stopping): the next worker to look takes it at once. */
export async function releaseGaugeLease(db: Db, holder: string): Promise<void> {
  await db.query(
    'UPDATE tasker_gauge_readings SET lease_expires_at = now() WHERE id = 1 AND holder = $1 AND lease_expires_at > now()',
    [holder],
  );
}

/** Who holds the lease (for status and tests). */
export async function gaugeLease(db: Db): Promise<{
  holder: string | null;
  generation: number;
  lease_expires_at: Date | null;
  read_at: Date | null;
  now: Date;
}> {
  const { rows } = await db.query(
    'SELECT holder, generation, lease_expires_at, read_at, now() AS now FROM tasker_gauge_readings WHERE id = 1',
  );
  return rows[0];
}
