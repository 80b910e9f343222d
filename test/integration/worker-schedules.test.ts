/**
 * Three worker processes over at least three schedule ticks (one a minute): each tick's run happens
 * exactly once, runs of a job never overlap, a new DLQ entry is enriched by the sweep within one
 * sweep interval, and detection's new entries are enriched by the per-entry requests it sends.
 * This test takes about four minutes: cron has minute resolution.
 */
import { beforeAll, expect, it } from '@jest/globals';
import { loadConfig } from '../../src/config/load.ts';
import { databaseNow } from '../../src/db/queries/server.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { migrateBoss } from '../../src/worker/boss.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { insertDlqEntry, insertTask, insertTemplate, minutesBefore } from '../helpers/factories.ts';
import { waitFor } from '../helpers/wait.ts';
import { type RunRow, runsOf, startWorkerProcess, waitForWorkers } from '../helpers/workers.ts';

const DETECT = 'tasker.detect-stale-tasks';
const ENRICH = 'tasker.enrich-dlq-snapshots';

const db = useTestDatabase();
beforeAll(async () => {
  await migrateBoss(loadConfig({ env: { TASKER_ENV: 'test' } }).config, db.url, silentLogger());
});

function assertNoOverlap(runs: RunRow[]) {
  for (let i = 1; i < runs.length; i++) {
    expect(runs[i]!.started_at.getTime()).toBeGreaterThanOrEqual(runs[i - 1]!.finished_at!.getTime());
  }
}

it('three workers, three ticks: each tick runs once, never two at once; entries get enriched', async () => {
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

  const workers = [1, 2, 3].map(() => startWorkerProcess(db.url));
  const startedAt = Date.now();
  try {
    await waitForWorkers(db.pool, 3);
    // Four scheduled detection runs: the first tick plus three more.
    const scheduled = async () =>
      (await runsOf(db.pool, DETECT)).filter((r) => r.trigger === 'schedule' && r.outcome);
    await waitFor('four scheduled detection runs', async () => (await scheduled()).length >= 4, {
      timeoutMs: 300_000,
      intervalMs: 2000,
    });

    // Exactly one run per tick (pg-boss files each cron occurrence in its minute).
    const runs = await scheduled();
    const minutes = runs.map((r) => Math.floor(r.started_at.getTime() / 60_000));
    expect(new Set(minutes).size).toBe(minutes.length);
    const { rows: perTick } = await db.pool.query(
      `SELECT date_trunc('minute', created_on) AS tick, count(*) AS jobs FROM pgboss.job
        WHERE name = $1 AND data->>'trigger' = 'schedule' GROUP BY 1 ORDER BY 1`,
      [DETECT],
    );
    expect(perTick.every((t) => t.jobs === 1)).toBe(true);
    expect(perTick.length).toBeGreaterThanOrEqual(4);

    // Never two runs of a job at once, scheduled or not, across the three workers.
    assertNoOverlap(await runsOf(db.pool, DETECT));
    const allRuns = await runsOf(db.pool, DETECT);
    expect(allRuns.every((r) => r.outcome === 'completed')).toBe(true);

    // The first scheduled detection acted on the stale tasks once; later ones found nothing.
    expect(runs.map((r) => r.counts?.tasks_detected)).toEqual([5, ...runs.slice(1).map(() => 0)]);

    // The manual entry was enriched by a sweep within one sweep interval (60 s) of the workers'
    // first sweep, and detection's entries by the requests detection sent.
    const { rows: entries } = await db.pool.query(
      `SELECT dlq_entry_uuid, task_uuid, (task_snapshot->'enrichment'->>'enriched_at')::timestamptz AS enriched_at
         FROM tasker_tasks_dlq`,
    );
    expect(entries).toHaveLength(6);
    expect(entries.every((e) => e.enriched_at !== null)).toBe(true);
    const sweeps = (await runsOf(db.pool, ENRICH)).filter((r) => r.trigger === 'schedule');
    const firstSweep = sweeps[0]!;
    expect(firstSweep.counts?.enriched).toBeGreaterThanOrEqual(1);
    expect(firstSweep.started_at.getTime() - startedAt).toBeLessThan(90_000); // first tick + cron pass delay
    const manualEntry = entries.find((e) => e.dlq_entry_uuid === manual)!;
    expect(manualEntry.enriched_at.getTime()).toBeLessThanOrEqual(firstSweep.finished_at!.getTime());
    const eventRuns = (await runsOf(db.pool, ENRICH)).filter((r) => r.trigger === 'event');
    expect(eventRuns.reduce((n, r) => n + Number(r.counts?.enriched ?? 0), 0)).toBe(5);
  } finally {
    for (const w of workers) w.kill('SIGTERM');
    for (const w of workers) expect((await w.done).code).toBe(0);
  }
}, 360_000);
