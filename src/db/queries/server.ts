import type { Db } from '../pool.ts';

/** Server-level reads that belong to no table. */

/** The database's clock: one reading per run, so every row of a run is judged against one instant. */
export async function databaseNow(db: Db): Promise<Date> {
  const { rows } = await db.query<{ now: Date }>('SELECT now() AS now');
  return rows[0]!.now;
}
