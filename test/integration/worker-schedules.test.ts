/**
 * Three worker processes over four schedule ticks (one a minute): each tick's run happens exactly
 * once, runs of a job never overlap, a new DLQ entry is enriched by the sweep, and detection's new
 * entries are enriched by the request it sends for the batch that opened them.
 *
 * Cron has minute resolution, so the test moves pg-boss's clock rather than waiting for minutes: in
 * this test database pgboss.job_now() (the function every pg-boss statement reads the time from,
 * the one pg-boss's own TestClock overrides) returns now() plus an offset the test sets, and the
 * workers, which measure the database's clock every second (worker.clock_monitor_interval_seconds)
 * and evaluate schedules on it, see a minute pass each time the offset jumps to the next minute.
 * Cron claims, the one-job-per-minute slot and the queue policy are pg-boss's, unchanged, in three
 * real processes.
 */
import { beforeAll, expect, it } from '@jest/globals';
import { databaseNow } from '../../src/db/queries/server.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { insertDlqEntry, insertTask, insertTemplate, minutesBefore } from '../helpers/factories.ts';
import { waitFor } from '../helpers/wait.ts';
import { installFor, type RunRow, runsOf, startWorkerProcess, waitForWorkers } from '../helpers/workers.ts';

const DETECT = 'tasker.detect-stale-tasks';
const ENRICH = 'tasker.enrich-dlq-snapshots';

const db = useTestDatabase();
beforeAll(async () => {
  await installFor(db.url, TICK_ENV);
});

const TICK_ENV = {
  TASKER__worker__cron_monitor_interval_seconds: '1',
  TASKER__worker__clock_monitor_interval_seconds: '1',
};

/** Moves pg-boss's clock (pgboss.job_now()) in this database by an offset the test controls. */
async function installMovableClock(): Promise<void> {
  await db.pool.query(`CREATE TABLE test_boss_clock (offset_seconds integer NOT NULL)`);
  await db.pool.query(`INSERT INTO test_boss_clock VALUES (0)`);
  await db.pool.query(
    `CREATE OR REPLACE FUNCTION pgboss.job_now() RETURNS timestamptz LANGUAGE sql STABLE AS
       $$ SELECT now() + (SELECT offset_seconds FROM test_boss_clock) * interval '1 second' $$`,
  );
}

/** Jumps pg-boss's clock to 2 s past its next minute, once no run is active (a jump would look like a lost heartbeat). */
async function nextTick(): Promise<Date> {
  await waitFor('no active run', async () => {
    const { rows } = await db.pool.query(
      `SELECT count(*) AS n FROM pgboss.job WHERE name LIKE 'tasker.%' AND state = 'active'`,
    );
    return rows[0].n === 0;
  });
  await db.pool.query(
    `UPDATE test_boss_clock SET offset_seconds = offset_seconds + 62 - floor(extract(second FROM pgboss.job_now()))::int`,
  );
  const { rows } = await db.pool.query(`SELECT date_trunc('minute', pgboss.job_now()) AS minute`);
  return rows[0].minute;
}

function assertNoOverlap(runs: RunRow[]) {
  for (let i = 1; i < runs.length; i++) {
    expect(runs[i]!.started_at.getTime()).toBeGreaterThanOrEqual(runs[i - 1]!.finished_at!.getTime());
  }
}

it('three workers, four ticks: each tick runs once, never two at once; entries get enriched', async () => {
  const now = await databaseNow(db.pool);
  const template = await insertTemplate(db.pool);
  // A manual entry nobody sends an enrichment request for: the sweep must find it.
  const task = await insertTask(db.pool, { template, state: 'error', enteredAt: minutesBefore(now, 5) });
  const manual = await insertDlqEntry(db.pool, { task, reason: 'manual_dlq', at: now });
  // Stale tasks (test environment: waiting_for_retry threshold 2 minutes).
  const stale: string[] = [];
  for (let i = 0; i < 5; i++) {
    stale.push(
      await insertTask(db.pool, { template, state: 'waiting_for_retry', enteredAt: minutesBefore(now, 30) }),
    );
  }

  await installMovableClock();
  const workers = [1, 2, 3].map(() => startWorkerProcess(db.url, TICK_ENV));
  try {
    await waitForWorkers(db.pool, 3);
    // Four ticks: each one's detection run happens (once) before the clock moves on.
    for (let tick = 0; tick < 4; tick++) {
      const minute = await nextTick();
      await waitFor(
        `the scheduled detection run of ${minute.toISOString()}`,
        async () => {
          const { rows } = await db.pool.query(
            `SELECT count(*) AS n FROM pgboss.job
              WHERE name = $1 AND data->>'trigger' = 'schedule' AND state = 'completed'
                AND date_trunc('minute', created_on) = $2`,
            [DETECT, minute],
          );
          return rows[0].n >= 1;
        },
        { timeoutMs: 30_000, intervalMs: 250 },
      );
    }
    // Time for any duplicate of the last tick to show up: several cron passes, a send-it poll.
    await new Promise((resolve) => setTimeout(resolve, 6000));
    const scheduled = async () =>
      (await runsOf(db.pool, DETECT)).filter((r) => r.trigger === 'schedule' && r.outcome);

    // Exactly one run per tick (pg-boss files each cron occurrence in its minute).
    const runs = await scheduled();
    const { rows: perTick } = await db.pool.query(
      `SELECT date_trunc('minute', created_on) AS tick, count(*) AS jobs FROM pgboss.job
        WHERE name = $1 AND data->>'trigger' = 'schedule' GROUP BY 1 ORDER BY 1`,
      [DETECT],
    );
    expect(perTick.every((t) => t.jobs === 1)).toBe(true);
    expect(perTick.length).toBeGreaterThanOrEqual(4);
    expect(runs).toHaveLength(perTick.length);

    // Never two runs of a job at once, scheduled or not, across the three workers.
    assertNoOverlap(await runsOf(db.pool, DETECT));
    const allRuns = await runsOf(db.pool, DETECT);
    expect(allRuns.every((r) => r.outcome === 'completed')).toBe(true);

    // The first scheduled detection acted on the stale tasks once; later ones found nothing.
    expect(runs.map((r) => r.counts?.tasks_detected)).toEqual([5, ...runs.slice(1).map(() => 0)]);

    // Every entry is enriched: the manual one by a sweep (scheduled too), detection's by the
    // requests detection sent or by the sweep.
    const { rows: entries } = await db.pool.query(
      `SELECT dlq_entry_uuid, task_uuid, (task_snapshot->'enrichment'->>'enriched_at')::timestamptz AS enriched_at
         FROM tasker_tasks_dlq`,
    );
    expect(entries).toHaveLength(6);
    expect(entries.every((e) => e.enriched_at !== null)).toBe(true);
    const sweeps = (await runsOf(db.pool, ENRICH)).filter((r) => r.trigger === 'schedule');
    expect(sweeps.reduce((n, r) => n + Number(r.counts?.enriched ?? 0), 0)).toBeGreaterThanOrEqual(1);
    expect(entries.find((e) => e.dlq_entry_uuid === manual)!.enriched_at).not.toBeNull();
    // One request for the detection batch that opened the 5 entries, carrying all of them, served
    // (the sweep of the same tick may have got there first).
    const { rows: requests } = await db.pool.query(
      `SELECT singleton_key, state, data->'options'->'entry_uuids' AS ids FROM pgboss.job
        WHERE name = $1 AND data->>'trigger' = 'event'`,
      [ENRICH],
    );
    const detected = entries
      .filter((e) => e.dlq_entry_uuid !== manual)
      .map((e) => e.dlq_entry_uuid)
      .sort();
    expect(requests).toEqual([
      { singleton_key: `dlq-entries:${detected[0]}`, state: 'completed', ids: detected },
    ]);
  } finally {
    for (const w of workers) w.kill('SIGTERM');
    for (const w of workers) expect((await w.done).code).toBe(0);
  }
}, 150_000);
