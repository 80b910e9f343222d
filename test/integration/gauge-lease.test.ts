/**
 * The DLQ, backlog and group gauges are read by one worker at a time, under a lease in the
 * database (migrations/0220_gauge_readings.sql, src/telemetry/cluster-gauges.ts), with real worker
 * processes: when the holder is killed (SIGKILL) or frozen (SIGSTOP), the lease moves to another
 * worker at the first check after it expires. The lease lasts two thirds of an interval from the
 * holder's last check and each worker checks three times per interval, so the move comes within
 * one interval of the holder's stop. A frozen holder that wakes up neither takes it back nor
 * overwrites its successor's readings.
 *
 * Every check is one UPDATE of the lease row (claimGaugeLease); a statement-level trigger records
 * each one with the row as the statement left it and the statement's own clock (now()), so the
 * test counts checks instead of timing them.
 */
import { afterEach, beforeAll, beforeEach, expect, it } from '@jest/globals';
import { claimGaugeLease, storeGaugeReadings } from '../../src/db/queries/gauge-readings.ts';
import type { CliProcess } from '../helpers/cli-process.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { insertDlqEntry, insertTask, insertTemplate, minutesBefore } from '../helpers/factories.ts';
import { waitFor } from '../helpers/wait.ts';
import { installFor, startWorkerProcess, waitForWorkers } from '../helpers/workers.ts';

// Checks every second, the lease two seconds: as in production (15 s: checks every 5 s, lease
// 10 s), a stopped holder is replaced within one interval.
const INTERVAL_SECONDS = 3;
const WORKER_ENV = {
  TASKER__metrics__gauges_interval_seconds: String(INTERVAL_SECONDS),
  TASKER__staleness_detection__enabled: 'false',
  TASKER__archive__enabled: 'false',
};

const db = useTestDatabase();
const workers: CliProcess[] = [];

interface Check {
  at: Date;
  holder: string | null;
  generation: number;
  lease_expires_at: Date | null;
}

beforeAll(async () => {
  await installFor(db.url, WORKER_ENV);
  await db.pool.query(`
    CREATE TABLE lease_checks (at timestamptz, holder text, generation bigint, lease_expires_at timestamptz);
    CREATE FUNCTION record_lease_check() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF current_query() LIKE '%WITH claim AS%' THEN
        INSERT INTO lease_checks SELECT now(), holder, generation, lease_expires_at
          FROM tasker_gauge_readings WHERE id = 1;
      END IF;
      RETURN NULL;
    END $$;
    CREATE TRIGGER lease_checks AFTER UPDATE ON tasker_gauge_readings
      FOR EACH STATEMENT EXECUTE FUNCTION record_lease_check();`);
});
beforeEach(async () => {
  await resetTables(db.pool);
  await db.pool.query('TRUNCATE lease_checks');
});
afterEach(async () => {
  for (const w of workers) {
    w.kill('SIGCONT');
    w.kill('SIGTERM');
  }
  await Promise.all(workers.splice(0).map((w) => w.done));
});

async function lease(): Promise<{
  holder: string | null;
  generation: number;
  lease_expires_at: Date | null;
  readings: unknown;
}> {
  const { rows } = await db.pool.query(
    'SELECT holder, generation, lease_expires_at, read_at, readings FROM tasker_gauge_readings WHERE id = 1',
  );
  return rows[0];
}

function pidOf(holder: string | null): number {
  return Number(holder?.split(':')[1]);
}

async function checksAfter(at: Date): Promise<Check[]> {
  const { rows } = await db.pool.query<Check>('SELECT * FROM lease_checks WHERE at > $1 ORDER BY at', [at]);
  return rows;
}

/**
 * Stops the holder with `signal` and waits for another worker to take the lease; checks that
 * the first check after the old lease expired took it, and that the new holder stores readings.
 */
async function handOver(signal: 'SIGKILL' | 'SIGSTOP'): Promise<{ from: CliProcess; to: CliProcess }> {
  const before = await waitFor('a holder with readings', async () => {
    const l = await lease();
    return l.holder !== null && l.readings !== null ? l : null;
  });
  const from = workers.find((w) => w.pid === pidOf(before.holder))!;
  expect(from).toBeDefined();
  const { rows } = await db.pool.query<{ now: Date }>('SELECT now()');
  from.kill(signal);
  const after = await waitFor('the lease taken by another worker', async () => {
    const l = await lease();
    return l.generation > before.generation ? l : null;
  });
  const to = workers.find((w) => w.pid === pidOf(after.holder));
  if (!to) throw new Error(`the lease went to ${after.holder}, not one of the workers`);
  expect(to).not.toBe(from);

  // The checks between the stop and the takeover: each left the lease as it found it, so each saw
  // it unexpired (the row as the check left it is the lease it saw, renewals up to the stop
  // included); a check after the expiry took it. No survivor looked at an expired lease and left it.
  const checks = await checksAfter(rows[0]!.now);
  const takeover = checks.findIndex((c) => c.generation > before.generation);
  expect(takeover).toBeGreaterThanOrEqual(0);
  const expiredBeforeTakeover = checks
    .slice(0, takeover)
    .filter((c) => c.at.getTime() >= c.lease_expires_at!.getTime());
  expect(expiredBeforeTakeover).toEqual([]);
  // Every renewal set the lease to two thirds of an interval from the statement's clock, and each
  // survivor checks three times per interval: at most about two checks each before it expired.
  // (Every check is recorded, a survivor's that changed nothing too: the lease never reached past
  // two thirds of an interval from any of them, and the takeover set exactly that.)
  const leaseLeft = (c: Check) => c.lease_expires_at!.getTime() - c.at.getTime();
  const leaseMs = (2 / 3) * INTERVAL_SECONDS * 1000;
  for (const c of checks) expect(leaseLeft(c)).toBeLessThanOrEqual(leaseMs);
  expect(leaseLeft(checks[takeover]!)).toBe(leaseMs);
  expect(takeover).toBeLessThanOrEqual(3 * (workers.length - 1));
  // The new holder reads and stores the gauges (its readings are the ones exported everywhere).
  await waitFor('readings stored by the new holder', async () => {
    const { rows: r } = await db.pool.query(
      `SELECT readings->>'pending' AS pending FROM tasker_gauge_readings
        WHERE generation = $1 AND read_at > $2`,
      [after.generation, rows[0]!.now],
    );
    return r[0]?.pending === '1';
  });
  return { from, to };
}

async function startThreeWorkers(): Promise<void> {
  const now = (await db.pool.query<{ now: Date }>('SELECT now()')).rows[0]!.now;
  const task = await insertTask(db.pool, {
    template: await insertTemplate(db.pool),
    state: 'error',
    enteredAt: minutesBefore(now, 5),
  });
  await insertDlqEntry(db.pool, { task, reason: 'manual_dlq', at: now });
  for (let i = 0; i < 3; i++) workers.push(startWorkerProcess(db.url, WORKER_ENV));
  await waitForWorkers(db.pool, 3);
}

it('the lease moves to another worker at the first check after its holder is killed (SIGKILL)', async () => {
  await startThreeWorkers();
  await handOver('SIGKILL');
});

it('a frozen holder (SIGSTOP) loses the lease, and after SIGCONT neither takes it back nor stores', async () => {
  await startThreeWorkers();
  const { from, to } = await handOver('SIGSTOP');
  const taken = await lease();
  from.kill('SIGCONT');
  // The woken worker checks again (within an interval) and says it no longer holds the lease.
  await waitFor('the woken worker to see the lease taken', async () =>
    /another worker reads the cluster gauges now/.test(from.stderrSoFar()),
  );
  const now = await lease();
  expect(now.generation).toBe(taken.generation);
  expect(pidOf(now.holder)).toBe(to.pid);
});

it("a holder's readings are stored only under its own generation", async () => {
  const first = await claimGaugeLease(db.pool, 'a', 30);
  expect(first.held).toBe(true);
  // 'b' finds the lease held; once it has expired, 'b' takes it (generation + 1).
  expect((await claimGaugeLease(db.pool, 'b', 30)).held).toBe(false);
  await db.pool.query("UPDATE tasker_gauge_readings SET lease_expires_at = now() - interval '1 second'");
  const second = await claimGaugeLease(db.pool, 'b', 30);
  expect(second).toMatchObject({ held: true, generation: first.generation + 1, previous_holder: 'a' });
  // 'a', woken after losing it, stores nothing; 'b' stores.
  expect(await storeGaugeReadings(db.pool, 'a', first.generation, new Date(), { pending: 9 })).toBe(false);
  expect(await storeGaugeReadings(db.pool, 'b', second.generation, new Date(), { pending: 1 })).toBe(true);
  expect((await claimGaugeLease(db.pool, 'a', 30)).readings).toEqual({ pending: 1 });
});
