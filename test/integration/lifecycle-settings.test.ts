/**
 * tasker_lifecycle_settings (what the views, upstream's 6-argument detection function and the
 * 3-argument archive function read) is written from the configuration by `migrate` and at worker
 * start, deliberately, and by nothing else: no detection or archival run, dry or real, scheduled
 * or ad hoc, changes it.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import { archiveOptionsFromConfig, runArchival } from '../../jobs/archive-finished-tasks.ts';
import { readLifecycleSettings } from '../../src/db/queries/staleness.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { cli } from '../helpers/cli.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { applySettings, configWith, defaultOptions, detect } from '../helpers/detection.ts';
import { insertTask, insertTemplate, minutesBefore, NOW } from '../helpers/factories.ts';

const db = useTestDatabase();

beforeEach(async () => {
  await resetTables(db.pool);
});

const withoutStamp = ({ updated_at: _at, updated_by: _by, ...rest }: Record<string, unknown>) => rest;

describe('written from the configuration at migrate and worker start', () => {
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

  it('worker start writes it', async () => {
    const stop = new AbortController();
    const io = { stdout: { write: () => true }, stderr: { write: () => true }, isTTY: false };
    const { runCli } = await import('../../src/cli/main.ts');
    const running = runCli(
      ['worker'],
      {
        ...io,
        env: {
          TASKER_ENV: 'test',
          DATABASE_URL: db.url,
          TASKER__metrics__enabled: 'false',
          TASKER__staleness_detection__enabled: 'false',
          TASKER__archive__enabled: 'false',
          TASKER__dlq__max_pending_age_hours: '7',
        },
      },
      stop.signal,
    );
    try {
      const deadline = Date.now() + 30_000;
      while ((await readLifecycleSettings(db.pool)).max_pending_age_hours !== 7) {
        if (Date.now() > deadline) throw new Error('the worker did not write the settings within 30 s');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect((await readLifecycleSettings(db.pool)).updated_by).toMatch(/^worker@/);
    } finally {
      stop.abort();
      expect(await running).toBe(0);
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
