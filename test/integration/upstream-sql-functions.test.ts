/**
 * Upstream's SQL function and view tests (upstream-facts.md §6, dlq_functions_test.rs 1-17), against
 * this system's functions with upstream's names and signatures. Fixtures as upstream: the task was
 * created minutes_in_state + 60 minutes ago and entered its state minutes_in_state ago.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import { databaseNow } from '../../src/db/queries/server.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import {
  currentState,
  insertDlqEntry,
  insertTask,
  insertTemplate,
  minutesBefore,
  pendingEntries,
  type Template,
} from '../helpers/factories.ts';

const db = useTestDatabase();
let now: Date;

beforeEach(async () => {
  await resetTables(db.pool);
  now = await databaseNow(db.pool);
});

async function staleTask(template: Template, state: string, minutesInState: number): Promise<string> {
  return insertTask(db.pool, { template, state, enteredAt: minutesBefore(now, minutesInState) });
}

describe('calculate_staleness_threshold', () => {
  it('1. uses the template override', async () => {
    const { rows } = await db.pool.query(
      `SELECT calculate_staleness_threshold('waiting_for_dependencies', '{"lifecycle": {"max_waiting_for_dependencies_minutes": 120}}', 60, 30, 30) AS t`,
    );
    expect(rows[0].t).toBe(120);
  });

  it('2. falls back to the default', async () => {
    const { rows } = await db.pool.query(
      `SELECT calculate_staleness_threshold('waiting_for_dependencies', '{}', 60, 30, 30) AS t`,
    );
    expect(rows[0].t).toBe(60);
  });

  it('3. gives 1440 for a state without its own threshold', async () => {
    const { rows } = await db.pool.query(
      `SELECT calculate_staleness_threshold('initializing', '{}', 60, 30, 30) AS t`,
    );
    expect(rows[0].t).toBe(1440);
  });
});

describe('create_dlq_entry', () => {
  it('4. returns a uuid and the row exists', async () => {
    const t = await insertTemplate(db.pool);
    const task = await staleTask(t, 'waiting_for_dependencies', 120);
    const { rows } = await db.pool.query(
      `SELECT create_dlq_entry($1, 'default', $2, 'waiting_for_dependencies', 120, 60) AS id`,
      [task, t.name],
    );
    expect(rows[0].id).toMatch(/^[0-9a-f-]{36}$/);
    const entries = await pendingEntries(db.pool, task);
    expect(entries).toEqual([
      expect.objectContaining({ dlq_entry_uuid: rows[0].id, dlq_reason: 'staleness_timeout' }),
    ]);
  });

  it('5. returns NULL for a second entry of the same task (one pending per task)', async () => {
    const t = await insertTemplate(db.pool);
    const task = await staleTask(t, 'waiting_for_dependencies', 120);
    const call = `SELECT create_dlq_entry($1, 'default', 'x', 'waiting_for_dependencies', 120, 60) AS id`;
    const first = await db.pool.query(call, [task]);
    const second = await db.pool.query(call, [task]);
    expect(first.rows[0].id).not.toBeNull();
    expect(second.rows[0].id).toBeNull();
    expect(await pendingEntries(db.pool, task)).toHaveLength(1);
  });
});

describe('transition_stale_task_to_error', () => {
  it('6. succeeds and the current state becomes error', async () => {
    const t = await insertTemplate(db.pool);
    const task = await staleTask(t, 'steps_in_process', 45);
    const { rows } = await db.pool.query(
      `SELECT transition_stale_task_to_error($1, 'steps_in_process', 'default', 'x') AS ok`,
      [task],
    );
    expect(rows[0].ok).toBe(true);
    expect(await currentState(db.pool, task)).toBe('error');
  });

  it('fails (false, nothing written) when the task is no longer in the given state', async () => {
    const t = await insertTemplate(db.pool);
    const task = await staleTask(t, 'steps_in_process', 45);
    const { rows } = await db.pool.query(
      `SELECT transition_stale_task_to_error($1, 'waiting_for_retry', 'default', 'x') AS ok`,
      [task],
    );
    expect(rows[0].ok).toBe(false);
    expect(await currentState(db.pool, task)).toBe('steps_in_process');
  });
});

describe('get_stale_tasks_for_dlq', () => {
  it('7. finds exactly the stale ones with (60, 30, 30, 72, 100)', async () => {
    const t = await insertTemplate(db.pool);
    const deps120 = await staleTask(t, 'waiting_for_dependencies', 120);
    const retry60 = await staleTask(t, 'waiting_for_retry', 60);
    await staleTask(t, 'waiting_for_dependencies', 20);
    const { rows } = await db.pool.query(
      'SELECT task_uuid FROM get_stale_tasks_for_dlq(60, 30, 30, 72, 100)',
    );
    expect(rows.map((r) => r.task_uuid).sort()).toEqual([deps120, retry60].sort());
  });

  it('8. excludes a task once it has a pending DLQ entry', async () => {
    const t = await insertTemplate(db.pool);
    const task = await staleTask(t, 'waiting_for_dependencies', 120);
    await db.pool.query(`SELECT create_dlq_entry($1, 'default', 'x', 'waiting_for_dependencies', 120, 60)`, [
      task,
    ]);
    const { rows } = await db.pool.query(
      'SELECT task_uuid FROM get_stale_tasks_for_dlq(60, 30, 30, 72, 100)',
    );
    expect(rows).toHaveLength(0);
  });
});

describe('detect_and_transition_stale_tasks', () => {
  it('9. dry run reports the task and changes nothing', async () => {
    const t = await insertTemplate(db.pool);
    const task = await staleTask(t, 'waiting_for_dependencies', 120);
    const { rows } = await db.pool.query(
      'SELECT * FROM detect_and_transition_stale_tasks(true, 100, 60, 30, 30, 24)',
    );
    expect(rows).toEqual([
      {
        task_uuid: task,
        namespace_name: 'default',
        task_name: t.name,
        current_state: 'waiting_for_dependencies',
        time_in_state_minutes: 120,
        staleness_threshold_minutes: 60,
        action_taken: 'would_transition_to_dlq_and_error',
        moved_to_dlq: false,
        transition_success: false,
      },
    ]);
    expect(await pendingEntries(db.pool)).toHaveLength(0);
    expect(await currentState(db.pool, task)).toBe('waiting_for_dependencies');
  });

  it('10. real run transitions to error and opens one pending entry', async () => {
    const t = await insertTemplate(db.pool);
    const task = await staleTask(t, 'waiting_for_dependencies', 120);
    const { rows } = await db.pool.query(
      'SELECT * FROM detect_and_transition_stale_tasks(false, 100, 60, 30, 30, 24)',
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      action_taken: 'transitioned_to_dlq_and_error',
      moved_to_dlq: true,
      transition_success: true,
    });
    expect(await pendingEntries(db.pool, task)).toEqual([
      expect.objectContaining({
        dlq_reason: 'staleness_timeout',
        original_state: 'waiting_for_dependencies',
      }),
    ]);
    expect(await currentState(db.pool, task)).toBe('error');
  });

  it('11. respects the batch size', async () => {
    const t = await insertTemplate(db.pool);
    for (let i = 0; i < 5; i++) await staleTask(t, 'waiting_for_dependencies', 120 + i);
    const { rows } = await db.pool.query(
      'SELECT * FROM detect_and_transition_stale_tasks(true, 2, 60, 30, 30, 24)',
    );
    expect(rows).toHaveLength(2);
  });

  it('12. the template threshold beats the default on both sides', async () => {
    const t = await insertTemplate(db.pool, { lifecycle: { max_waiting_for_dependencies_minutes: 30 } });
    const at45 = await staleTask(t, 'waiting_for_dependencies', 45);
    await staleTask(t, 'waiting_for_dependencies', 25);
    const { rows } = await db.pool.query(
      'SELECT * FROM detect_and_transition_stale_tasks(true, 100, 60, 30, 30, 24)',
    );
    expect(rows.map((r) => r.task_uuid)).toEqual([at45]);
    expect(rows[0].staleness_threshold_minutes).toBe(30);
  });
});

describe('views', () => {
  it('15. v_dlq_dashboard groups by reason with per-status counts', async () => {
    const t = await insertTemplate(db.pool);
    const task = async () => staleTask(t, 'error', 10);
    const add = async (reason: string, status: string) =>
      insertDlqEntry(db.pool, { task: await task(), reason, status, at: minutesBefore(now, 90) });
    await add('staleness_timeout', 'pending');
    await add('staleness_timeout', 'pending');
    await add('staleness_timeout', 'manually_resolved');
    await add('max_retries_exceeded', 'pending');
    await add('max_retries_exceeded', 'cancelled');
    await add('worker_unavailable', 'permanently_failed');
    const { rows } = await db.pool.query(
      'SELECT dlq_reason::text, total_entries, pending, manually_resolved, permanent_failures, cancelled, oldest_entry, newest_entry, avg_resolution_time_minutes FROM v_dlq_dashboard ORDER BY total_entries DESC, dlq_reason',
    );
    expect(
      rows.map(({ oldest_entry, newest_entry, avg_resolution_time_minutes, ...counts }) => counts),
    ).toEqual([
      {
        dlq_reason: 'staleness_timeout',
        total_entries: 3,
        pending: 2,
        manually_resolved: 1,
        permanent_failures: 0,
        cancelled: 0,
      },
      {
        dlq_reason: 'max_retries_exceeded',
        total_entries: 2,
        pending: 1,
        manually_resolved: 0,
        permanent_failures: 0,
        cancelled: 1,
      },
      {
        dlq_reason: 'worker_unavailable',
        total_entries: 1,
        pending: 0,
        manually_resolved: 0,
        permanent_failures: 1,
        cancelled: 0,
      },
    ]);
    for (const r of rows) {
      expect(r.oldest_entry).toBeInstanceOf(Date);
      expect(r.newest_entry).toBeInstanceOf(Date);
      expect(r.avg_resolution_time_minutes).toBeGreaterThan(0);
    }
  });

  it('16. v_dlq_investigation_queue orders pending entries by reason score plus age', async () => {
    const t = await insertTemplate(db.pool, { name: 'queue_task' });
    const add = async (reason: string, minutesAgo: number, status = 'pending') =>
      insertDlqEntry(db.pool, {
        task: await staleTask(t, 'error', 10),
        reason,
        status,
        at: minutesBefore(now, minutesAgo),
        namespace: 'payments',
        taskName: 'queue_task',
      });
    const cycle = await add('dependency_cycle_detected', 120);
    const retriesOld = await add('max_retries_exceeded', 180);
    const retriesNew = await add('max_retries_exceeded', 30);
    const stale = await add('staleness_timeout', 90);
    const worker = await add('worker_unavailable', 60);
    await add('staleness_timeout', 500, 'manually_resolved');
    const { rows } = await db.pool.query('SELECT * FROM v_dlq_investigation_queue');
    expect(rows.map((r) => r.dlq_entry_uuid)).toEqual([cycle, retriesOld, retriesNew, stale, worker]);
    const scores = rows.map((r) => r.priority_score);
    expect([...scores].sort((a, b) => b - a)).toEqual(scores);
    expect(rows[0]).toMatchObject({
      namespace_name: 'payments',
      task_name: 'queue_task',
      priority_score: 1120,
    });
    const top3 = await db.pool.query('SELECT dlq_entry_uuid FROM v_dlq_investigation_queue LIMIT 3');
    expect(top3.rows.map((r) => r.dlq_entry_uuid)).toEqual([cycle, retriesOld, retriesNew]);
  });

  it('17. v_task_staleness_monitoring bands tasks healthy / warning / stale, stale first', async () => {
    const t = await insertTemplate(db.pool);
    const healthy = [
      await staleTask(t, 'waiting_for_dependencies', 30),
      await staleTask(t, 'waiting_for_retry', 15),
      await staleTask(t, 'steps_in_process', 10),
    ];
    const warning = [
      await staleTask(t, 'waiting_for_dependencies', 50),
      await staleTask(t, 'waiting_for_retry', 25),
    ];
    const stale = [
      await staleTask(t, 'waiting_for_dependencies', 90),
      await staleTask(t, 'waiting_for_retry', 45),
      await staleTask(t, 'steps_in_process', 60),
    ];
    const { rows } = await db.pool.query('SELECT * FROM v_task_staleness_monitoring');
    const band = (status: string) =>
      rows
        .filter((r) => r.health_status === status)
        .map((r) => r.task_uuid)
        .sort();
    expect(band('healthy')).toEqual([...healthy].sort());
    expect(band('warning')).toEqual([...warning].sort());
    expect(band('stale')).toEqual([...stale].sort());
    expect(rows.slice(0, 3).every((r) => r.health_status === 'stale')).toBe(true);
    expect(rows.slice(3, 5).every((r) => r.health_status === 'warning')).toBe(true);
    for (const r of rows) {
      if (r.health_status === 'healthy') expect(r.threshold_percentage).toBeLessThan(80);
      if (r.health_status === 'warning') expect(r.threshold_percentage).toBeGreaterThanOrEqual(80);
      if (r.health_status === 'warning') expect(r.threshold_percentage).toBeLessThan(100);
      if (r.health_status === 'stale') {
        expect(r.threshold_percentage).toBeGreaterThanOrEqual(100);
        expect(r.minutes_until_stale).toBe(0);
      }
    }
    const top5 = await db.pool.query('SELECT task_uuid FROM v_task_staleness_monitoring LIMIT 5');
    expect(
      top5.rows
        .slice(0, 3)
        .map((r) => r.task_uuid)
        .sort(),
    ).toEqual([...stale].sort());
  });
});
