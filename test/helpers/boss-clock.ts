import type pg from 'pg';
import { waitFor } from './wait.ts';

/**
 * A movable pg-boss clock for multi-worker tests and benchmarks: cron has minute resolution, so
 * schedule ticks come from moving pgboss.job_now() a minute at a time (as
 * test/integration/worker-schedules.test.ts does).
 */

/** pgboss.job_now() = now() + an offset the caller moves a minute at a time (see the file comment). */
export async function installMovableClock(db: pg.Pool): Promise<void> {
  await db.query(`CREATE TABLE test_boss_clock (offset_seconds integer NOT NULL)`);
  await db.query(`INSERT INTO test_boss_clock VALUES (0)`);
  await db.query(
    `CREATE OR REPLACE FUNCTION pgboss.job_now() RETURNS timestamptz LANGUAGE sql STABLE AS
       $$ SELECT now() + (SELECT offset_seconds FROM test_boss_clock) * interval '1 second' $$`,
  );
}

/** Waits (up to 2 minutes) until no run of our jobs is active; names the ones that are, if any stay. */
export async function noActiveRun(db: pg.Pool): Promise<void> {
  await waitFor(
    'no run active',
    async () => {
      const { rows } = await db.query(
        `SELECT name, id, data->>'trigger' AS trigger, started_on, pgboss.job_now() - started_on AS running_for
           FROM pgboss.job WHERE name LIKE 'tasker.%' AND state = 'active'`,
      );
      if (rows.length > 0) throw new Error(`active: ${JSON.stringify(rows)}`);
      return true;
    },
    { timeoutMs: 120_000, intervalMs: 500 },
  );
}

/** Moves pg-boss's clock to 2 s past its next minute, once no run is active; returns that minute. */
export async function nextTick(db: pg.Pool): Promise<Date> {
  await noActiveRun(db);
  await db.query(
    `UPDATE test_boss_clock SET offset_seconds = offset_seconds + 62 - floor(extract(second FROM pgboss.job_now()))::int`,
  );
  const { rows } = await db.query(`SELECT date_trunc('minute', pgboss.job_now()) AS minute`);
  return rows[0].minute;
}
