/**
 * archive_completed_tasks: which tasks are eligible, each rule on both sides of its boundary. The
 * reference time is fixed (p_now = NOW); rows are placed a minute either side of each threshold.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import { loadConfig } from '../../src/config/load.ts';
import { withTransaction } from '../../src/db/pool.ts';
import {
  type ArchiveBatchParams,
  type ArchiveBatchResult,
  type ArchivePolicies,
  archiveBatch,
} from '../../src/db/queries/archive.ts';
import { applyConfiguredSettings } from '../../src/db/queries/staleness.ts';
import { archivedTaskUuids, insertFinishedGraph, tableCounts } from '../helpers/archive-factories.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import {
  currentState,
  hoursBefore,
  insertDlqEntry,
  insertTemplate,
  minutesBefore,
  NOW,
  type Template,
} from '../helpers/factories.ts';

const db = useTestDatabase();
let template: Template;

const RETENTION_DAYS = 30;
const RETENTION_MINUTES = RETENTION_DAYS * 24 * 60;
const ALL_STATES: ArchivePolicies = {
  archive_completed: true,
  archive_failed: true,
  archive_cancelled: true,
  archive_resolved_manually: true,
  archive_dlq_resolved: true,
};
const DEFAULTS: ArchivePolicies = { ...ALL_STATES, archive_cancelled: false };

beforeEach(async () => {
  await resetTables(db.pool);
  template = await insertTemplate(db.pool, { namespace: 'billing', name: 'invoice' });
});

/** One batch in its own transaction (as the job runs it). */
function batch(overrides: Partial<ArchiveBatchParams> = {}): Promise<ArchiveBatchResult> {
  return withTransaction(db.pool, (c) =>
    archiveBatch(c, {
      now: NOW,
      dryRun: false,
      retentionDays: RETENTION_DAYS,
      batchSize: 100,
      policies: DEFAULTS,
      ...overrides,
    }),
  );
}

/** A finished graph that entered `state` `minutes` before NOW. */
function finished(state: string, minutes: number, o: { template?: Template; lifetimeMinutes?: number } = {}) {
  return insertFinishedGraph(db.pool, {
    named_task_uuid: (o.template ?? template).named_task_uuid,
    state,
    finishedAt: minutesBefore(NOW, minutes),
    lifetimeMinutes: o.lifetimeMinutes,
  });
}

describe('retention', () => {
  it('archives a task in its final state for longer than the retention period, and no other', async () => {
    const older = await finished('complete', RETENTION_MINUTES + 1);
    await finished('complete', RETENTION_MINUTES); // exactly the retention period: not longer
    await finished('complete', RETENTION_MINUTES - 1);
    const r = await batch();
    expect(r.task_uuids).toEqual([older]);
    expect(r.cutoff).toEqual(minutesBefore(NOW, RETENTION_MINUTES));
    expect(await archivedTaskUuids(db.pool)).toEqual([older]);
  });

  it('counts from when the task entered its final state, not from its creation', async () => {
    // created 100 days ago, finished 29 days ago: young enough to stay
    const longLived = await finished('complete', RETENTION_MINUTES - 24 * 60, {
      lifetimeMinutes: 71 * 24 * 60,
    });
    // created 30 days and 2 minutes ago, finished a minute later: old enough
    const shortLived = await finished('complete', RETENTION_MINUTES + 1, { lifetimeMinutes: 1 });
    const r = await batch();
    expect(r.task_uuids).toEqual([shortLived]);
    expect(await currentState(db.pool, longLived)).toBe('complete');
  });

  it('judges the current state: a task reset from error long ago is in flight and stays', async () => {
    const task = await finished('error', RETENTION_MINUTES + 60);
    await db.pool.query('UPDATE tasker_task_transitions SET most_recent = false WHERE task_uuid = $1', [
      task,
    ]);
    await db.pool.query(
      `INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
       VALUES ($1, 'pending', 'error', 4, true, $2, $2)`,
      [task, hoursBefore(NOW, 24 * 40)],
    );
    const r = await batch({ policies: ALL_STATES });
    expect(r.tasks_archived).toBe(0);
    expect(await currentState(db.pool, task)).toBe('pending');
  });

  it('never archives a task that is not in a terminal state, however old', async () => {
    for (const state of ['pending', 'steps_in_process', 'waiting_for_retry', 'blocked_by_failures']) {
      await finished(state, RETENTION_MINUTES * 10);
    }
    const r = await batch({ policies: ALL_STATES });
    expect(r.tasks_archived).toBe(0);
    expect((await tableCounts(db.pool, 'archive')).tasker_tasks).toBe(0);
  });

  it('finished_before narrows the window and never widens it', async () => {
    const at40Days = await finished('complete', 40 * 24 * 60);
    const at35Days = await finished('complete', 35 * 24 * 60);
    await finished('complete', 10 * 24 * 60);
    const narrowed = await batch({ dryRun: true, finishedBefore: minutesBefore(NOW, 38 * 24 * 60) });
    expect(narrowed.task_uuids).toEqual([at40Days]);
    const notWidened = await batch({ dryRun: true, finishedBefore: NOW });
    expect(notWidened.task_uuids).toEqual([at40Days, at35Days]);
    expect(notWidened.cutoff).toEqual(minutesBefore(NOW, RETENTION_MINUTES));
  });
});

describe('policies', () => {
  const SWITCHES: Array<[string, keyof ArchivePolicies]> = [
    ['complete', 'archive_completed'],
    ['error', 'archive_failed'],
    ['cancelled', 'archive_cancelled'],
    ['resolved_manually', 'archive_resolved_manually'],
  ];

  it.each(SWITCHES)('a %s task is archived only while %s is on', async (state, key) => {
    const task = await finished(state, RETENTION_MINUTES + 1);
    const other = await finished(SWITCHES.find(([s]) => s !== state)![0], RETENTION_MINUTES + 1);
    const off = await batch({ policies: { ...ALL_STATES, [key]: false } });
    expect(off.task_uuids).toEqual([other]);
    const on = await batch({ policies: { ...ALL_STATES, [key]: true } });
    expect(on.task_uuids).toEqual([task]);
  });

  it("upstream's three-argument call uses the configured defaults: complete, error, resolved_manually", async () => {
    const archived = [
      await finished('complete', RETENTION_MINUTES + 4),
      await finished('error', RETENTION_MINUTES + 3),
      await finished('resolved_manually', RETENTION_MINUTES + 2),
    ];
    const cancelled = await finished('cancelled', RETENTION_MINUTES + 1);
    const { rows } = await db.pool.query(
      `SELECT tasks_archived, steps_archived, transitions_archived, execution_time_ms, task_uuids
         FROM archive_completed_tasks(30, 100, false)`,
    );
    expect(rows[0]).toEqual({
      tasks_archived: 3,
      steps_archived: 15,
      transitions_archived: 12,
      execution_time_ms: expect.any(Number),
      task_uuids: archived,
    });
    expect(await currentState(db.pool, cancelled)).toBe('cancelled');
  });

  it('the three-argument call follows [archive.policies] as migrate and worker start applied them', async () => {
    const cancelled = await finished('cancelled', RETENTION_MINUTES + 1);
    const config = loadConfig({
      env: { TASKER_ENV: 'test', TASKER__archive__policies__archive_cancelled: 'true' },
    }).config;
    await applyConfiguredSettings(db.pool, config, 'test');
    const { rows } = await db.pool.query('SELECT task_uuids FROM archive_completed_tasks(30, 100, false)');
    expect(rows[0].task_uuids).toEqual([cancelled]);
  });

  it('upstream default is a dry run', async () => {
    await finished('complete', RETENTION_MINUTES + 1);
    const { rows } = await db.pool.query('SELECT tasks_archived FROM archive_completed_tasks()');
    expect(rows[0].tasks_archived).toBe(1);
    expect((await tableCounts(db.pool, 'archive')).tasker_tasks).toBe(0);
  });
});

describe('DLQ entries', () => {
  it('never archives a task with a pending entry; a resolved one alone does not hold it back', async () => {
    const pending = await finished('error', RETENTION_MINUTES + 2);
    const resolved = await finished('error', RETENTION_MINUTES + 1);
    await insertDlqEntry(db.pool, { task: pending, reason: 'staleness_timeout', at: hoursBefore(NOW, 800) });
    await insertDlqEntry(db.pool, {
      task: resolved,
      reason: 'staleness_timeout',
      status: 'manually_resolved',
      at: hoursBefore(NOW, 800),
    });
    const r = await batch();
    expect(r.task_uuids).toEqual([resolved]);
    expect(r.dlq_entries_archived).toBe(1);
    expect((await tableCounts(db.pool, 'live')).tasker_tasks_dlq).toBe(1);
    expect(await currentState(db.pool, pending)).toBe('error');
  });

  it('with archive_dlq_resolved off, a task with any DLQ history stays live', async () => {
    const withHistory = await finished('complete', RETENTION_MINUTES + 2);
    const without = await finished('complete', RETENTION_MINUTES + 1);
    await insertDlqEntry(db.pool, {
      task: withHistory,
      reason: 'manual_dlq',
      status: 'cancelled',
      at: hoursBefore(NOW, 800),
    });
    const off = await batch({ policies: { ...DEFAULTS, archive_dlq_resolved: false } });
    expect(off.task_uuids).toEqual([without]);
    expect(off.dlq_entries_archived).toBe(0);
    const on = await batch({ policies: { ...DEFAULTS, archive_dlq_resolved: true } });
    expect(on.task_uuids).toEqual([withHistory]);
    expect(on.dlq_entries_archived).toBe(1);
  });
});

describe('filters and batches', () => {
  it('namespace and template filters choose the tasks of matching templates only', async () => {
    const other = await insertTemplate(db.pool, { namespace: 'shipping', name: 'invoice' });
    const third = await insertTemplate(db.pool, { namespace: 'billing', name: 'refund' });
    const a = await finished('complete', RETENTION_MINUTES + 3);
    const b = await finished('complete', RETENTION_MINUTES + 2, { template: other });
    const c = await finished('complete', RETENTION_MINUTES + 1, { template: third });
    const dry = { dryRun: true };
    expect((await batch({ ...dry, namespace: 'billing' })).task_uuids).toEqual([a, c]);
    expect((await batch({ ...dry, taskName: 'invoice' })).task_uuids).toEqual([a, b]);
    expect((await batch({ ...dry, namespace: 'billing', taskName: 'invoice' })).task_uuids).toEqual([a]);
  });

  it('an unknown template is an error that names it', async () => {
    await expect(batch({ namespace: 'billing', taskName: 'nope' })).rejects.toMatchObject({
      code: 'P0002',
      message: "no task template matches namespace 'billing' and name 'nope'",
    });
  });

  it('takes at most batch_size tasks, oldest first, and continues after the cursor', async () => {
    const tasks: string[] = [];
    for (let i = 5; i >= 1; i--) tasks.push(await finished('complete', RETENTION_MINUTES + i));
    const seen: string[] = [];
    const more: boolean[] = [];
    let after: ArchiveBatchParams['after'] = null;
    for (let i = 0; i < 3; i++) {
      const r = await batch({ dryRun: true, batchSize: 2, after });
      seen.push(...r.task_uuids);
      more.push(r.more_candidates);
      after = r.cursor;
    }
    expect(seen).toEqual(tasks);
    expect(more).toEqual([true, true, false]);
  });

  it('rejects bad arguments with a message naming the value', async () => {
    await expect(batch({ batchSize: 0 })).rejects.toThrow('p_batch_size must be from 1 to 100000, got 0');
    await expect(batch({ retentionDays: -1 })).rejects.toThrow('p_retention_days must be 0 or more, got -1');
    await expect(db.pool.query('SELECT * FROM archive_completed_tasks(30, 10, true, NULL)')).rejects.toThrow(
      'p_now must be a timestamp, got NULL',
    );
  });
});
