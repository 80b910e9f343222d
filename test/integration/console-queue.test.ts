/**
 * The console's queue (src/db/queries/dlq-console.ts) against v_dlq_investigation_queue: page by
 * page, the per-reason merge gives exactly the view's order, and the filters and total agree with
 * the entries placed either side of them.
 */
import { beforeAll, expect, it } from '@jest/globals';
import { consoleQueuePage } from '../../src/db/queries/dlq-console.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { insertDlqEntry, insertTask, insertTemplate } from '../helpers/factories.ts';

const db = useTestDatabase();
let now: Date;
const reasons = [
  'staleness_timeout',
  'max_retries_exceeded',
  'dependency_cycle_detected',
  'worker_unavailable',
  'manual_dlq',
];

beforeAll(async () => {
  now = (await db.pool.query<{ now: Date }>('SELECT now()')).rows[0]!.now;
  const shop = await insertTemplate(db.pool, { namespace: 'shop', name: 'order' });
  const ops = await insertTemplate(db.pool, { namespace: 'ops', name: 'sync' });
  // Ages of whole minutes plus 30 s, so the view's later now() scores them the same.
  for (let i = 0; i < 40; i++) {
    const template = i % 3 === 0 ? ops : shop;
    const task = await insertTask(db.pool, { template, state: 'steps_in_process', enteredAt: now });
    await insertDlqEntry(db.pool, {
      task,
      reason: reasons[i % reasons.length]!,
      at: new Date(now.getTime() - ((i * 397) % 15000) * 60_000 - 30_000),
      namespace: template.namespace,
      taskName: template.name,
    });
  }
  // Resolved history is never shown.
  const task = await insertTask(db.pool, { template: shop, state: 'error', enteredAt: now });
  await insertDlqEntry(db.pool, { task, reason: 'dependency_cycle_detected', status: 'cancelled', at: now });
});

it('pages through the queue in the view order', async () => {
  const view = await db.pool.query<{ dlq_entry_uuid: string }>(
    'SELECT dlq_entry_uuid FROM v_dlq_investigation_queue',
  );
  const pages: string[] = [];
  for (let offset = 0; offset < 45; offset += 7) {
    const { total, rows } = await consoleQueuePage(db.pool, {}, { limit: 7, offset }, now);
    expect(total).toBe(40);
    pages.push(...rows.map((r) => r.dlq_entry_uuid));
  }
  expect(pages).toEqual(view.rows.map((r) => r.dlq_entry_uuid));
});

it('filters by reason, namespace, template, age and overdue', async () => {
  const all = (await consoleQueuePage(db.pool, {}, { limit: 100, offset: 0 }, now)).rows;
  const cases = [
    {
      f: { reason: 'max_retries_exceeded' as const },
      keep: (r: (typeof all)[number]) => r.dlq_reason === 'max_retries_exceeded',
    },
    { f: { namespace: 'ops' }, keep: (r: (typeof all)[number]) => r.namespace_name === 'ops' },
    { f: { template: 'order' }, keep: (r: (typeof all)[number]) => r.task_name === 'order' },
    { f: { minAgeMinutes: 600 }, keep: (r: (typeof all)[number]) => r.minutes_in_dlq >= 600 },
    { f: { overdueOnly: true }, keep: (r: (typeof all)[number]) => r.overdue },
  ];
  for (const c of cases) {
    const expected = all.filter(c.keep).map((r) => r.dlq_entry_uuid);
    expect(expected.length).toBeGreaterThan(0);
    expect(expected.length).toBeLessThan(all.length);
    const got = await consoleQueuePage(db.pool, c.f, { limit: 100, offset: 0 }, now);
    expect({ total: got.total, ids: got.rows.map((r) => r.dlq_entry_uuid) }).toEqual({
      total: expected.length,
      ids: expected,
    });
  }
});
