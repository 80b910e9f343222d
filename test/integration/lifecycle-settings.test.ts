/**
 * tasker_lifecycle_settings (what the views, upstream's 6-argument detection function and the
 * 3-argument archive function read) is written from the configuration by `migrate`, deliberately,
 * and by nothing else: no worker at start, and no detection or archival run, dry or real,
 * scheduled or ad hoc, changes it.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import { archiveOptionsFromConfig, runArchival } from '../../jobs/archive-finished-tasks.ts';
import { readLifecycleSettings } from '../../src/db/queries/staleness.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { cli } from '../helpers/cli.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { applySettings, configWith, defaultOptions, detect } from '../helpers/detection.ts';
import { insertTask, insertTemplate, minutesBefore, NOW } from '../helpers/factories.ts';
import { startWorkerProcess, workerPort } from '../helpers/workers.ts';

const db = useTestDatabase();

beforeEach(async () => {
  await resetTables(db.pool);
});

const withoutStamp = ({ updated_at: _at, updated_by: _by, ...rest }: Record<string, unknown>) => rest;

describe('written from the configuration by migrate only', () => {
  it('migrate writes dlq.max_pending_age_hours and the thresholds, even with detection disabled', async () => {
    const run = await cli(['migrate', '--json'], {
      DATABASE_URL: db.url,
      TASKER__staleness_detection__enabled: 'false',
      TASKER__dlq__max_pending_age_hours: '5',
      TASKER__staleness_detection__thresholds__waiting_for_retry_minutes: '21',
      TASKER__archive__policies__archive_cancelled: 'true',
    });
    expect(run.code).toBe(0);
    expect(run.json()).toMatchObject({ settings_changed: true });
    expect(await readLifecycleSettings(db.pool)).toMatchObject({
      max_pending_age_hours: 5,
      waiting_for_retry_minutes: 21,
      archive_policies: expect.objectContaining({ archive_cancelled: true }),
      updated_by: expect.stringMatching(/^migrate@/),
    });
    // The views follow: an entry 6 hours old is overdue under a 5-hour limit.
    const template = await insertTemplate(db.pool);
    const id = await insertTask(db.pool, { template, state: 'waiting_for_retry', enteredAt: NOW });
    await db.pool.query(
      `INSERT INTO tasker_tasks_dlq (task_uuid, original_state, dlq_reason, dlq_timestamp, task_snapshot)
       VALUES ($1, 'waiting_for_retry', 'manual_dlq', now() - interval '6 hours', '{}')`,
      [id],
    );
    const { rows } = await db.pool.query('SELECT overdue FROM v_dlq_investigation_queue');
    expect(rows).toEqual([{ overdue: true }]);
    // A second migrate with the same configuration writes nothing.
    const again = await cli(['migrate', '--json'], {
      DATABASE_URL: db.url,
      TASKER__staleness_detection__enabled: 'false',
      TASKER__dlq__max_pending_age_hours: '5',
      TASKER__staleness_detection__thresholds__waiting_for_retry_minutes: '21',
      TASKER__archive__policies__archive_cancelled: 'true',
    });
    expect(again.json()).toMatchObject({ settings_changed: false });
  });

  it('a worker with another configuration leaves it as migrate wrote it', async () => {
    const before = await readLifecycleSettings(db.pool);
    const worker = startWorkerProcess(db.url, {
      TASKER__staleness_detection__enabled: 'false',
      TASKER__archive__enabled: 'false',
      TASKER__dlq__max_pending_age_hours: '7',
    });
    try {
      await workerPort(worker); // logged once past its start-up checks
      expect(await readLifecycleSettings(db.pool)).toEqual(before);
      expect(before.max_pending_age_hours).toBe(168); // the worker's 7 is not in force
    } finally {
      worker.kill('SIGTERM');
      expect((await worker.done).code).toBe(0);
    }
  });
});

describe('never written by a run', () => {
  it('detection runs (dry and real, with their own thresholds) leave the row as configured', async () => {
    const config = configWith({ TASKER__staleness_detection__thresholds__waiting_for_retry_minutes: '25' });
    await applySettings(db, config);
    const before = await readLifecycleSettings(db.pool);
    const template = await insertTemplate(db.pool);
    await insertTask(db.pool, { template, state: 'waiting_for_retry', enteredAt: minutesBefore(NOW, 50) });
    const adhoc = defaultOptions({
      waiting_for_retry_minutes: 3,
      event_channel: null,
      auto_move_to_dlq: false,
    });
    expect((await detect(db, { ...adhoc, dry_run: true })).tasks_detected).toBe(1);
    expect((await detect(db, adhoc)).tasks_detected).toBe(1);
    expect(await readLifecycleSettings(db.pool)).toEqual(before);
  });

  it('archival runs (dry and real, with their own policies) leave the archive policies as configured', async () => {
    const before = await readLifecycleSettings(db.pool);
    const options = archiveOptionsFromConfig(
      configWith({ TASKER__archive__policies__archive_cancelled: 'true' }),
    );
    const ctx = { pool: db.pool, now: NOW, logger: silentLogger(), signal: new AbortController().signal };
    await runArchival(ctx, { ...options, dry_run: true });
    await runArchival(ctx, options);
    expect(await readLifecycleSettings(db.pool)).toEqual(before);
  });
});

describe('test isolation', () => {
  it('resetTables puts the row back to its defaults', async () => {
    const fresh = await readLifecycleSettings(db.pool);
    await applySettings(db, configWith({ TASKER__dlq__max_pending_age_hours: '3' }));
    expect((await readLifecycleSettings(db.pool)).max_pending_age_hours).toBe(3);
    await resetTables(db.pool);
    expect(withoutStamp({ ...(await readLifecycleSettings(db.pool)) })).toEqual(withoutStamp({ ...fresh }));
  });
});
