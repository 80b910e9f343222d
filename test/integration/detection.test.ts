/**
 * Detection semantics: thresholds on both sides of their boundary, the lifetime rule, template
 * overrides and malformed templates, actions and reasons switches, events, batching, dry run.
 * Every case judges rows against the fixed reference time NOW.
 */

import { Writable } from 'node:stream';
import { beforeEach, describe, expect, it } from '@jest/globals';
import winston from 'winston';
import detectStaleTasks, { detectionOptionsFromConfig } from '../../jobs/detect-stale-tasks.ts';
import { readLifecycleSettings } from '../../src/db/queries/staleness.ts';
import { countsOf } from '../../src/worker/observe.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { configWith, defaultOptions, detect } from '../helpers/detection.ts';
import {
  currentState,
  insertEdge,
  insertStep,
  insertTask,
  insertTemplate,
  minutesBefore,
  NOW,
  pendingEntries,
  type Template,
} from '../helpers/factories.ts';

const db = useTestDatabase();
let t: Template;

beforeEach(async () => {
  await resetTables(db.pool);
  t = await insertTemplate(db.pool, { name: 'plain' });
});

/** A task that entered `state` `minutes` before NOW and was created `ageMinutes` before NOW. */
function task(state: string, minutes: number, ageMinutes = minutes + 60, template = t): Promise<string> {
  return insertTask(db.pool, {
    template,
    state,
    enteredAt: minutesBefore(NOW, minutes),
    createdAt: minutesBefore(NOW, ageMinutes),
  });
}

const detectedIds = (r: { tasks: { task_uuid: string }[] }) => r.tasks.map((x) => x.task_uuid).sort();

describe('per-state thresholds (template first, then configured defaults)', () => {
  it.each([
    ['waiting_for_dependencies', 60],
    ['waiting_for_retry', 30],
    ['steps_in_process', 30],
    ['pending', 1440],
    ['initializing', 1440],
    ['enqueuing_steps', 1440],
    ['evaluating_results', 1440],
    ['blocked_by_failures', 1440],
  ])('%s: stale at %i minutes, not one minute before', async (state, threshold) => {
    // Lifetime 48 h here, so only the state rule can make these tasks stale.
    const before = await task(state, threshold - 1, threshold + 10);
    const at = await task(state, threshold, threshold + 10);
    const result = await detect(db, defaultOptions({ dry_run: true, task_max_lifetime_hours: 48 }));
    expect(detectedIds(result)).toEqual([at]);
    expect(result.tasks[0]).toMatchObject({
      stale_by: 'state_threshold',
      staleness_threshold_minutes: threshold,
    });
    // The task one minute short of the threshold exists, in flight, and was passed over.
    expect(await currentState(db.pool, before)).toBe(state);
    expect(detectedIds(result)).not.toContain(before);
  });

  it('never touches tasks in a terminal state, however old', async () => {
    for (const state of ['complete', 'error', 'cancelled', 'resolved_manually'])
      await task(state, 100_000, 200_000);
    const result = await detect(db);
    expect(result.tasks_detected).toBe(0);
  });

  it('takes the configured defaults, not upstream constants', async () => {
    const stale = await task('waiting_for_retry', 12);
    await task('waiting_for_retry', 11);
    const options = detectionOptionsFromConfig(
      configWith({ TASKER__staleness_detection__thresholds__waiting_for_retry_minutes: '12' }),
    );
    const result = await detect(db, { ...options, dry_run: true });
    expect(detectedIds(result)).toEqual([stale]);
  });

  it('per-template overrides beat the defaults, on both sides', async () => {
    const slow = await insertTemplate(db.pool, {
      lifecycle: {
        max_waiting_for_dependencies_minutes: 240,
        max_waiting_for_retry_minutes: 5,
        max_steps_in_process_minutes: 90,
      },
    });
    const notYet = await task('waiting_for_dependencies', 239, 300, slow);
    const deps = await task('waiting_for_dependencies', 240, 300, slow);
    const retry = await task('waiting_for_retry', 5, 300, slow);
    await task('waiting_for_retry', 4, 300, slow);
    const steps = await task('steps_in_process', 90, 300, slow);
    await task('steps_in_process', 89, 300, slow);
    const result = await detect(db, defaultOptions({ dry_run: true }));
    expect(detectedIds(result)).toEqual([deps, retry, steps].sort());
    expect(detectedIds(result)).not.toContain(notYet);
  });
});

describe('task lifetime (every non-terminal state)', () => {
  it.each([
    'waiting_for_dependencies',
    'pending',
    'initializing',
    'evaluating_results',
    'blocked_by_failures',
  ])('%s: stale when alive for the default 24 h, not a minute earlier', async (state) => {
    const old = await task(state, 5, 24 * 60);
    await task(state, 5, 24 * 60 - 1);
    const result = await detect(db, defaultOptions({ dry_run: true }));
    expect(detectedIds(result)).toEqual([old]);
    expect(result.tasks[0]).toMatchObject({ stale_by: 'task_lifetime', staleness_threshold_minutes: 1440 });
  });

  it("uses the template's max_duration_minutes instead", async () => {
    const short = await insertTemplate(db.pool, { lifecycle: { max_duration_minutes: 90 } });
    const over = await task('evaluating_results', 1, 90, short);
    await task('evaluating_results', 1, 89, short);
    const result = await detect(db, defaultOptions({ dry_run: true }));
    expect(detectedIds(result)).toEqual([over]);
    expect(result.tasks[0]).toMatchObject({
      stale_by: 'task_lifetime',
      staleness_threshold_minutes: 90,
      task_age_minutes: 90,
    });
  });

  it('uses the configured task_max_lifetime_hours', async () => {
    const over = await task('waiting_for_dependencies', 1, 6 * 60);
    await task('waiting_for_dependencies', 1, 6 * 60 - 1);
    const options = detectionOptionsFromConfig(
      configWith({ TASKER__staleness_detection__thresholds__task_max_lifetime_hours: '6' }),
    );
    expect(detectedIds(await detect(db, { ...options, dry_run: true }))).toEqual([over]);
  });
});

describe('malformed template lifecycle values', () => {
  it.each([
    ['a string', 'soon'],
    ['a negative number', -5],
    ['zero', 0],
    ['a fraction', 7.5],
    ['an object', { minutes: 5 }],
  ])('%s falls back to the default for that key only, and is reported; the pass goes on', async (_, bad) => {
    const broken = await insertTemplate(db.pool, {
      name: 'broken',
      lifecycle: { max_waiting_for_dependencies_minutes: bad, max_waiting_for_retry_minutes: 3 },
    });
    const depsDefault = await task('waiting_for_dependencies', 60, 100, broken); // default 60 applies
    await task('waiting_for_dependencies', 59, 100, broken);
    const retryOverride = await task('waiting_for_retry', 3, 100, broken); // the valid key still applies
    const other = await task('steps_in_process', 45); // another template, unaffected
    const result = await detect(db);
    expect(detectedIds(result)).toEqual([depsDefault, retryOverride, other].sort());
    expect(result.invalid_templates).toEqual([
      {
        named_task_uuid: broken.named_task_uuid,
        namespace_name: 'default',
        task_name: 'broken',
        problems: [
          expect.stringMatching(/^max_waiting_for_dependencies_minutes must be a positive whole number/),
        ],
      },
    ]);
    expect(result.by_action).toEqual({ transitioned_to_dlq_and_error: 3 });
  });

  it('is named with its problem in the run as recorded (pg-boss output, history) and in a warning log line', async () => {
    const broken = await insertTemplate(db.pool, {
      namespace: 'demo',
      name: 'nightly_report',
      lifecycle: { max_waiting_for_retry_minutes: 'soon' },
    });
    await task('waiting_for_retry', 30, 60, broken);
    const warnings: Array<{ message: string; meta: Record<string, unknown> }> = [];
    const lines = new Writable({
      write(chunk, _encoding, done) {
        const info = JSON.parse(String(chunk)) as Record<string, unknown>;
        if (info.level === 'warn') warnings.push({ message: String(info.message), meta: info });
        done();
      },
    });
    const logger = winston.createLogger({
      level: 'debug',
      format: winston.format.json(),
      transports: [new winston.transports.Stream({ stream: lines })],
    });
    const result = await detectStaleTasks.run(
      { pool: db.pool, now: NOW, logger, signal: new AbortController().signal },
      detectStaleTasks.optionsSchema.parse(defaultOptions()),
    );
    const problem = 'max_waiting_for_retry_minutes must be a positive whole number of minutes, got "soon"';
    // What the worker records of a run (lists become counts; this map stays whole).
    expect(countsOf(result)).toMatchObject({
      invalid_templates_count: 1,
      template_problems: { 'demo/nightly_report': [problem] },
    });
    expect(warnings).toEqual([
      {
        message: `template demo/nightly_report has malformed lifecycle settings; detection used the global defaults for them: ${problem}`,
        meta: expect.objectContaining({ named_task_uuid: broken.named_task_uuid, problems: [problem] }),
      },
    ]);
  });

  it('a lifecycle that is not an object means all defaults', async () => {
    const broken = await insertTemplate(db.pool, { name: 'stringy', lifecycle: 'fast please' });
    const stale = await task('waiting_for_retry', 30, 60, broken);
    await task('waiting_for_retry', 29, 60, broken);
    const result = await detect(db);
    expect(detectedIds(result)).toEqual([stale]);
    expect(result.invalid_templates[0]?.problems).toEqual(['lifecycle must be an object, got "fast please"']);
  });

  it('an unknown staleness_action and non-boolean switches fall back to defaults', async () => {
    const broken = await insertTemplate(db.pool, {
      lifecycle: { staleness_action: 'explode', auto_fail_on_timeout: 'no', typo_minutes: 5 },
    });
    const stale = await task('waiting_for_retry', 30, 60, broken);
    const result = await detect(db);
    expect(result.tasks).toEqual([
      expect.objectContaining({ task_uuid: stale, action_taken: 'transitioned_to_dlq_and_error' }),
    ]);
    expect(result.invalid_templates[0]?.problems).toEqual([
      'auto_fail_on_timeout must be true or false, got "no"',
      'staleness_action must be one of "dlq", "error", "none", got "explode"',
      'unknown key typo_minutes',
    ]);
  });
});

describe('actions: template switches and global switches', () => {
  async function outcome(options = defaultOptions(), lifecycle?: object) {
    const template = lifecycle ? await insertTemplate(db.pool, { lifecycle }) : t;
    const id = await task('waiting_for_dependencies', 120, 180, template);
    const result = await detect(db, options);
    return {
      action: result.tasks.find((r) => r.task_uuid === id)?.action_taken,
      state: await currentState(db.pool, id),
      entries: (await pendingEntries(db.pool, id)).length,
      again: (await detect(db, options)).tasks_detected,
    };
  }

  it('default: error transition and a pending investigation, once', async () => {
    expect(await outcome()).toEqual({
      action: 'transitioned_to_dlq_and_error',
      state: 'error',
      entries: 1,
      again: 0,
    });
  });

  it('staleness_action "error": error only', async () => {
    expect(await outcome(defaultOptions(), { staleness_action: 'error' })).toEqual({
      action: 'transitioned_to_error_only',
      state: 'error',
      entries: 0,
      again: 0,
    });
  });

  it('staleness_action "none": left alone', async () => {
    expect(await outcome(defaultOptions(), { staleness_action: 'none' })).toEqual({
      action: undefined,
      state: 'waiting_for_dependencies',
      entries: 0,
      again: 0,
    });
  });

  it('auto_fail_on_timeout false: investigation only, and not found again while it is pending', async () => {
    expect(await outcome(defaultOptions(), { auto_fail_on_timeout: false })).toEqual({
      action: 'moved_to_dlq_only',
      state: 'waiting_for_dependencies',
      entries: 1,
      again: 0,
    });
  });

  it('auto_dlq_on_timeout false: error only', async () => {
    expect(await outcome(defaultOptions(), { auto_dlq_on_timeout: false })).toMatchObject({
      action: 'transitioned_to_error_only',
      entries: 0,
    });
  });

  it('both template switches false: left alone', async () => {
    expect(
      await outcome(defaultOptions(), { auto_dlq_on_timeout: false, auto_fail_on_timeout: false }),
    ).toMatchObject({
      action: undefined,
      state: 'waiting_for_dependencies',
    });
  });

  it.each([
    [
      'staleness_detection.actions.auto_transition_to_error',
      'TASKER__staleness_detection__actions__auto_transition_to_error',
      'moved_to_dlq_only',
      1,
    ],
    [
      'staleness_detection.actions.auto_move_to_dlq',
      'TASKER__staleness_detection__actions__auto_move_to_dlq',
      'transitioned_to_error_only',
      0,
    ],
    ['dlq.enabled', 'TASKER__dlq__enabled', 'transitioned_to_error_only', 0],
    ['dlq.auto_dlq_on_staleness', 'TASKER__dlq__auto_dlq_on_staleness', 'transitioned_to_error_only', 0],
  ])('%s = false changes the action', async (_, variable, action, entries) => {
    const options = { ...detectionOptionsFromConfig(configWith({ [variable]: 'false' })), ...thresholds60 };
    expect(await outcome(options)).toMatchObject({ action, entries });
  });

  it('a template cannot turn on what the configuration turned off', async () => {
    const options = {
      ...detectionOptionsFromConfig(
        configWith({ TASKER__staleness_detection__actions__auto_move_to_dlq: 'false' }),
      ),
      ...thresholds60,
    };
    expect(await outcome(options, { auto_dlq_on_timeout: true, staleness_action: 'dlq' })).toMatchObject({
      action: 'transitioned_to_error_only',
      entries: 0,
    });
  });
});

const thresholds60 = {
  waiting_for_dependencies_minutes: 60,
  waiting_for_retry_minutes: 30,
  steps_in_process_minutes: 30,
  task_max_lifetime_hours: 24,
};

describe('reasons: the most specific enabled one', () => {
  async function staleWithSteps(state = 'waiting_for_dependencies') {
    const id = await task(state, 120, 180);
    return id;
  }

  async function reasonOf(id: string, options = defaultOptions()) {
    const result = await detect(db, options);
    return result.tasks.find((r) => r.task_uuid === id)?.dlq_reason ?? null;
  }

  it('staleness_timeout for a plain stale task', async () => {
    const id = await staleWithSteps();
    await insertStep(db.pool, { task: id, state: 'complete', attempts: 1 });
    expect(await reasonOf(id)).toBe('staleness_timeout');
  });

  it('max_retries_exceeded when an unfinished step used all its attempts', async () => {
    const id = await staleWithSteps();
    await insertStep(db.pool, { task: id, state: 'error', attempts: 3, maxAttempts: 3 });
    expect(await reasonOf(id)).toBe('max_retries_exceeded');
  });

  it('max_retries_exceeded when a failed step may not be retried', async () => {
    const id = await staleWithSteps();
    await insertStep(db.pool, { task: id, state: 'error', attempts: 1, maxAttempts: 3, retryable: false });
    expect(await reasonOf(id)).toBe('max_retries_exceeded');
  });

  it('not max_retries_exceeded when the step succeeded on its last attempt', async () => {
    const id = await staleWithSteps();
    await insertStep(db.pool, { task: id, state: 'complete', attempts: 3, maxAttempts: 3 });
    expect(await reasonOf(id)).toBe('staleness_timeout');
  });

  it('dependency_cycle_detected when the step edges form a cycle (before max_retries)', async () => {
    const id = await staleWithSteps();
    const a = await insertStep(db.pool, { task: id, state: 'error', attempts: 3, maxAttempts: 3 });
    const b = await insertStep(db.pool, { task: id });
    const c = await insertStep(db.pool, { task: id });
    await insertEdge(db.pool, a, b);
    await insertEdge(db.pool, b, c);
    await insertEdge(db.pool, c, a);
    expect(await reasonOf(id)).toBe('dependency_cycle_detected');
  });

  it('no cycle in a diamond', async () => {
    const id = await staleWithSteps();
    const [a, b, c, d] = await Promise.all([1, 2, 3, 4].map(() => insertStep(db.pool, { task: id })));
    await insertEdge(db.pool, a!, b!);
    await insertEdge(db.pool, a!, c!);
    await insertEdge(db.pool, b!, d!);
    await insertEdge(db.pool, c!, d!);
    expect(await reasonOf(id)).toBe('staleness_timeout');
  });

  it('worker_unavailable in steps_in_process when steps were enqueued but none started', async () => {
    const id = await staleWithSteps('steps_in_process');
    await insertStep(db.pool, { task: id, state: 'complete', attempts: 1 });
    await insertStep(db.pool, { task: id, state: 'enqueued' });
    expect(await reasonOf(id)).toBe('worker_unavailable');
    const started = await staleWithSteps('steps_in_process');
    await insertStep(db.pool, { task: started, state: 'enqueued' });
    await insertStep(db.pool, { task: started, state: 'in_progress' });
    expect(await reasonOf(started)).toBe('staleness_timeout');
  });

  it('a disabled reason falls back to the next one that fits', async () => {
    const id = await staleWithSteps();
    await insertStep(db.pool, { task: id, state: 'error', attempts: 3, maxAttempts: 3 });
    const options = {
      ...detectionOptionsFromConfig(configWith({ TASKER__dlq__reasons__max_retries_exceeded: 'false' })),
      ...thresholds60,
    };
    expect(await reasonOf(id, options)).toBe('staleness_timeout');
  });

  it('with staleness_timeout disabled only specific reasons open entries', async () => {
    const plain = await staleWithSteps();
    const exhausted = await staleWithSteps();
    await insertStep(db.pool, { task: exhausted, state: 'error', attempts: 3, maxAttempts: 3 });
    const options = {
      ...detectionOptionsFromConfig(configWith({ TASKER__dlq__reasons__staleness_timeout: 'false' })),
      ...thresholds60,
    };
    const result = await detect(db, options);
    expect(result.tasks.find((r) => r.task_uuid === plain)).toMatchObject({
      action_taken: 'transitioned_to_error_only',
      dlq_reason: null,
    });
    expect(result.tasks.find((r) => r.task_uuid === exhausted)).toMatchObject({
      action_taken: 'transitioned_to_dlq_and_error',
      dlq_reason: 'max_retries_exceeded',
    });
  });

  it('with no transition and no fitting enabled reason a task is not taken (it cannot fill batches forever)', async () => {
    const plain = await staleWithSteps();
    const exhausted = await staleWithSteps();
    await insertStep(db.pool, { task: exhausted, state: 'error', attempts: 3, maxAttempts: 3 });
    const options = {
      ...detectionOptionsFromConfig(
        configWith({
          TASKER__dlq__reasons__staleness_timeout: 'false',
          TASKER__staleness_detection__actions__auto_transition_to_error: 'false',
        }),
      ),
      ...thresholds60,
      batch_size: 1,
    };
    const result = await detect(db, options);
    expect(detectedIds(result)).toEqual([exhausted]);
    expect(await currentState(db.pool, plain)).toBe('waiting_for_dependencies');
  });
});

describe('events', () => {
  it('announces each task acted on with NOTIFY on the configured channel, at commit', async () => {
    const a = await task('waiting_for_retry', 40);
    const b = await task('waiting_for_retry', 50);
    const listener = await db.connect();
    const received: Array<{ channel: string; payload: Record<string, unknown> }> = [];
    listener.on('notification', (n) =>
      received.push({ channel: n.channel, payload: JSON.parse(n.payload ?? '{}') }),
    );
    await listener.query('LISTEN task_staleness_detected');
    await detect(db);
    await listener.query('SELECT 1'); // notifications arrive before the next response
    expect(received.map((r) => r.payload.task_uuid).sort()).toEqual([a, b].sort());
    expect(received[0]).toMatchObject({
      channel: 'task_staleness_detected',
      payload: {
        event: 'task_staleness_detected',
        action_taken: 'transitioned_to_dlq_and_error',
        dlq_reason: 'staleness_timeout',
      },
    });
  });

  it('sends nothing when emit_events is off, and nothing on a dry run', async () => {
    await task('waiting_for_retry', 40);
    const listener = await db.connect();
    let count = 0;
    listener.on('notification', () => {
      count += 1;
    });
    await listener.query('LISTEN task_staleness_detected');
    await detect(db, defaultOptions({ dry_run: true }));
    await detect(db, defaultOptions({ event_channel: null }));
    await listener.query('SELECT 1');
    expect(count).toBe(0);
    const off = detectionOptionsFromConfig(
      configWith({ TASKER__staleness_detection__actions__emit_events: 'false' }),
    );
    expect(off.event_channel).toBeNull();
  });
});

describe('runs and batches', () => {
  it('takes batches until one comes back short, oldest state entry first', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push(await task('waiting_for_retry', 100 - i));
    const result = await detect(db, defaultOptions({ batch_size: 3, max_batches: 10 }));
    expect(result.batches).toBe(3);
    expect(result.tasks_detected).toBe(7);
    expect(
      result.tasks
        .slice(0, 3)
        .map((r) => r.task_uuid)
        .sort(),
    ).toEqual(ids.slice(0, 3).sort());
  });

  it('stops at max_batches', async () => {
    for (let i = 0; i < 7; i++) await task('waiting_for_retry', 100 - i);
    const result = await detect(db, defaultOptions({ batch_size: 3, max_batches: 2 }));
    expect(result).toMatchObject({ batches: 2, tasks_detected: 6 });
  });

  it('a dry run reports exactly what the real run then does, and changes nothing', async () => {
    for (let i = 0; i < 5; i++) await task('waiting_for_dependencies', 61 + i);
    await task('waiting_for_dependencies', 59);
    const exhausted = await task('steps_in_process', 31);
    await insertStep(db.pool, { task: exhausted, state: 'error', attempts: 3, maxAttempts: 3 });
    const before = (await db.pool.query('SELECT count(*) AS n FROM tasker_task_transitions')).rows[0].n;
    const dry = await detect(db, defaultOptions({ dry_run: true, batch_size: 2, max_batches: 5 }));
    const after = (await db.pool.query('SELECT count(*) AS n FROM tasker_task_transitions')).rows[0].n;
    expect(after).toBe(before);
    expect(await pendingEntries(db.pool)).toHaveLength(0);
    const real = await detect(db, defaultOptions({ batch_size: 2, max_batches: 5 }));
    const shape = (r: typeof real) =>
      r.tasks
        .map((x) => ({ id: x.task_uuid, reason: x.dlq_reason, planned: x.planned_action, by: x.stale_by }))
        .sort((p, q) => (p.id < q.id ? -1 : 1));
    expect(shape(dry)).toEqual(shape(real));
    expect(dry.tasks.every((x) => x.action_taken === 'would_transition_to_dlq_and_error')).toBe(true);
    expect(real.tasks_detected).toBe(6);
  });

  it('stops between batches when aborted', async () => {
    for (let i = 0; i < 4; i++) await task('waiting_for_retry', 100 - i);
    const controller = new AbortController();
    controller.abort();
    const { default: job } = await import('../../jobs/detect-stale-tasks.ts');
    const { silentLogger } = await import('../../src/telemetry/logger.ts');
    const result = await job.run(
      { pool: db.pool, now: NOW, logger: silentLogger(), signal: controller.signal },
      defaultOptions({ batch_size: 2 }),
    );
    expect(result).toMatchObject({ aborted: true, batches: 0, tasks_detected: 0 });
  });

  it('never writes tasker_lifecycle_settings: a real run and a dry run with their own options leave it alone', async () => {
    await task('waiting_for_retry', 40);
    const before = await readLifecycleSettings(db.pool);
    const options = defaultOptions({ waiting_for_retry_minutes: 17, event_channel: null });
    await detect(db, { ...options, dry_run: true });
    await detect(db, options);
    expect(await readLifecycleSettings(db.pool)).toEqual(before);
  });
});
