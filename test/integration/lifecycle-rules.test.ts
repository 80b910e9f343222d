/**
 * The lifecycle rules live twice: in SQL (what detection reads) and in TypeScript (the domain
 * type). They must give the same verdicts. Also: the TypeScript enums mirror the database enums.
 */
import { expect, it } from '@jest/globals';
import { DLQ_REASONS, DLQ_RESOLUTION_STATUSES } from '../../src/domain/dlq.ts';
import { lifecycleProblems } from '../../src/domain/lifecycle.ts';
import { useTestDatabase } from '../helpers/db.ts';

const db = useTestDatabase();

const CASES: unknown[] = [
  null,
  {},
  { max_duration_minutes: 30, max_waiting_for_dependencies_minutes: 1, staleness_action: 'none' },
  { max_waiting_for_retry_minutes: 0 },
  { max_waiting_for_retry_minutes: -3 },
  { max_waiting_for_retry_minutes: 2.5 },
  { max_waiting_for_retry_minutes: '5' },
  { max_waiting_for_retry_minutes: 2147483648 },
  { max_waiting_for_retry_minutes: 2147483647 },
  { max_steps_in_process_minutes: null },
  { staleness_action: 'DLQ' },
  { staleness_action: 5 },
  { auto_fail_on_timeout: 'false' },
  { auto_dlq_on_timeout: true, auto_fail_on_timeout: false },
  { unknown_key: 1, max_duration_minutes: [] },
  'a string',
  42,
  [1, 2],
];

it.each(CASES.map((c) => [JSON.stringify(c), c]))(
  'same verdict in SQL and TypeScript for %s',
  async (_, value) => {
    const { rows } = await db.pool.query('SELECT lifecycle_config_problems($1::jsonb) AS problems', [
      JSON.stringify(value),
    ]);
    const flaggedKeys = (problems: string[]) =>
      problems.map((p) => (p.split(' ')[0] === 'unknown' ? p.split(' ')[2] : p.split(' ')[0])).sort();
    expect(flaggedKeys(rows[0].problems)).toEqual(flaggedKeys(lifecycleProblems(value)));
  },
);

it('the TypeScript enums are the database enums', async () => {
  const labels = async (type: string) =>
    (await db.pool.query(`SELECT unnest(enum_range(NULL::${type}))::text AS v`)).rows.map((r) => r.v);
  expect(await labels('dlq_reason')).toEqual([...DLQ_REASONS]);
  expect(await labels('dlq_resolution_status')).toEqual([...DLQ_RESOLUTION_STATUSES]);
});
