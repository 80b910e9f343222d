/**
 * v_task_staleness_monitoring and the detector must agree on which tasks are stale, with the
 * configured defaults (not upstream's 60/30/30 constants) and with template overrides, malformed
 * values and the lifetime rule. The view reads tasker_lifecycle_settings, which `migrate` and
 * worker start write from the configuration (applySettings here).
 */
import { expect, it } from '@jest/globals';
import { detectionOptionsFromConfig } from '../../jobs/detect-stale-tasks.ts';
import { databaseNow } from '../../src/db/queries/server.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { applySettings, configWith, detect } from '../helpers/detection.ts';
import { insertTask, insertTemplate, minutesBefore } from '../helpers/factories.ts';

const db = useTestDatabase();

it('the view marks stale exactly what a dry run would act on', async () => {
  const now = await databaseNow(db.pool);
  const templates = [
    await insertTemplate(db.pool, { name: 'defaults' }),
    await insertTemplate(db.pool, {
      name: 'overrides',
      lifecycle: { max_waiting_for_retry_minutes: 7, max_duration_minutes: 300 },
    }),
    await insertTemplate(db.pool, {
      name: 'malformed',
      lifecycle: { max_waiting_for_dependencies_minutes: 'x', max_steps_in_process_minutes: -1 },
    }),
  ];
  const states = [
    'waiting_for_dependencies',
    'waiting_for_retry',
    'steps_in_process',
    'initializing',
    'evaluating_results',
  ];
  // Configured defaults unlike upstream's: 45 / 20 / 25 minutes and 6 h.
  const config = configWith({
    TASKER__staleness_detection__thresholds__waiting_for_dependencies_minutes: '45',
    TASKER__staleness_detection__thresholds__waiting_for_retry_minutes: '20',
    TASKER__staleness_detection__thresholds__steps_in_process_minutes: '25',
    TASKER__staleness_detection__thresholds__task_max_lifetime_hours: '6',
  });
  await applySettings(db, config); // what the view reads, as migrate and worker start write it
  const options = {
    ...detectionOptionsFromConfig(config),
    dry_run: true,
    batch_size: 10_000,
    max_batches: 1,
  };
  for (const template of templates) {
    for (const state of states) {
      for (const minutes of [6, 7, 19, 20, 24, 25, 44, 45, 299, 300, 359, 360, 1500]) {
        for (const extraAge of [0, 100]) {
          await insertTask(db.pool, {
            template,
            state,
            enteredAt: minutesBefore(now, minutes),
            createdAt: minutesBefore(now, minutes + extraAge),
          });
        }
      }
    }
  }
  const result = await detect(db, options, now);
  const detected = result.tasks.map((r) => r.task_uuid).sort();
  const { rows } = await db.pool.query(
    `SELECT task_uuid FROM v_task_staleness_monitoring WHERE health_status = 'stale' ORDER BY task_uuid`,
  );
  expect(rows.map((r) => r.task_uuid)).toEqual(detected);
  expect(detected.length).toBeGreaterThan(100);
  const healthy = await db.pool.query(
    `SELECT count(*) AS n FROM v_task_staleness_monitoring WHERE health_status <> 'stale'`,
  );
  expect(healthy.rows[0].n).toBeGreaterThan(100);
});

it("upstream's proactive monitoring case: a 2-minute template at 1, 1.7 and 3 minutes", async () => {
  const now = await databaseNow(db.pool);
  const template = await insertTemplate(db.pool, {
    name: 'dlq_staleness_test',
    lifecycle: { max_waiting_for_retry_minutes: 2, max_duration_minutes: 30 },
  });
  const at = async (minutes: number) =>
    insertTask(db.pool, {
      template,
      state: 'waiting_for_retry',
      enteredAt: minutesBefore(now, minutes),
      createdAt: minutesBefore(now, 4),
    });
  const [healthy, warning, stale] = [await at(1), await at(1.7), await at(3)];
  const { rows } = await db.pool.query(
    'SELECT task_uuid, health_status, threshold_percentage FROM v_task_staleness_monitoring WHERE task_uuid = ANY ($1)',
    [[healthy, warning, stale]],
  );
  const health = Object.fromEntries(rows.map((r) => [r.task_uuid, r.health_status]));
  expect(health).toEqual({ [healthy]: 'healthy', [warning]: 'warning', [stale]: 'stale' });
  expect(rows.find((r) => r.task_uuid === warning).threshold_percentage).toBeGreaterThanOrEqual(85);
});
