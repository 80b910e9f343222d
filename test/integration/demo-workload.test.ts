/**
 * `npm start`'s demo engine gets into each kind of trouble detection tells apart (issue 28,
 * item 15): a step out of retries, a dependency cycle, steps no worker picked up. The same
 * functions the demo runs make the tasks; the real detection and enrichment read them.
 */
import { expect, it } from '@jest/globals';
import {
  createTroubledDemoTask,
  type DemoTrouble,
  ensureDemoTemplates,
} from '../../src/db/queries/demo-engine.ts';
import { enrichEntries } from '../../src/db/queries/dlq-enrichment.ts';
import { databaseNow } from '../../src/db/queries/server.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { defaultOptions, detect } from '../helpers/detection.ts';
import { defaultLimits } from '../helpers/enrichment-factories.ts';
import { minutesBefore } from '../helpers/factories.ts';

const db = useTestDatabase();

it('makes a task out of retries, one with a dependency cycle and one no worker picked up; detection tells them apart', async () => {
  const templates = await ensureDemoTemplates(db.pool);
  const order = templates.find((t) => t.name === 'order_fulfilment')!.named_task_uuid;
  const invoice = templates.find((t) => t.name === 'invoice_export')!.named_task_uuid;
  const now = await databaseNow(db.pool);
  const made: Record<DemoTrouble, string> = {
    retries_exhausted: await createTroubledDemoTask(
      db.pool,
      invoice,
      'retries_exhausted',
      minutesBefore(now, 20),
    ),
    dependency_cycle: await createTroubledDemoTask(
      db.pool,
      order,
      'dependency_cycle',
      minutesBefore(now, 20),
    ),
    missing_worker: await createTroubledDemoTask(db.pool, order, 'missing_worker', minutesBefore(now, 20)),
  };
  const result = await detect(db, defaultOptions(), now);
  const reasonOf = (task: string) => result.tasks.find((t) => t.task_uuid === task)?.dlq_reason;
  expect({
    retries_exhausted: reasonOf(made.retries_exhausted),
    dependency_cycle: reasonOf(made.dependency_cycle),
    missing_worker: reasonOf(made.missing_worker),
  }).toEqual({
    retries_exhausted: 'max_retries_exceeded',
    dependency_cycle: 'dependency_cycle_detected',
    missing_worker: 'worker_unavailable',
  });
  const entries = result.tasks.map((t) => t.dlq_entry_uuid!);
  await enrichEntries(db.pool, entries, defaultLimits({ now }));
  const { rows } = await db.pool.query<{ task_uuid: string; summary: string }>(
    `SELECT task_uuid, task_snapshot #>> '{diagnosis,summary}' AS summary FROM tasker_tasks_dlq WHERE dlq_entry_uuid = ANY ($1::uuid[])`,
    [entries],
  );
  const summary = Object.fromEntries(rows.map((r) => [r.task_uuid, r.summary]));
  expect(summary[made.dependency_cycle]).toMatch(/cycle/i);
  expect(summary[made.retries_exhausted]).toMatch(/transform/);
  expect(summary[made.missing_worker]).toMatch(/fetch/);
});
