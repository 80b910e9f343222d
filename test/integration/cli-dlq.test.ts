/**
 * The investigation CLI end to end on a real database: list, show, resolve, add, stats, queue,
 * detect-stale, with --json, and the exit codes for bad input (2) and failures (1).
 */
import { beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { enrichEntries } from '../../src/db/queries/dlq-enrichment.ts';
import { databaseNow } from '../../src/db/queries/server.ts';
import { cli } from '../helpers/cli.ts';
import { runCli as runCliProcess } from '../helpers/cli-process.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { defaultLimits } from '../helpers/enrichment-factories.ts';
import {
  hoursBefore,
  insertDlqEntry,
  insertStep,
  insertTask,
  insertTemplate,
  minutesBefore,
  type Template,
} from '../helpers/factories.ts';

const db = useTestDatabase();
let env: Record<string, string>;
let t: Template;
let now: Date;

beforeAll(async () => {
  env = { DATABASE_URL: db.url };
});
beforeEach(async () => {
  await resetTables(db.pool);
  t = await insertTemplate(db.pool, { namespace: 'billing', name: 'invoice' });
  now = await databaseNow(db.pool);
});

const task = (state = 'error', minutes = 10) =>
  insertTask(db.pool, { template: t, state, enteredAt: minutesBefore(now, minutes) });

describe('dlq list', () => {
  it('lists entries newest first with upstream fields, filtered by status and reason', async () => {
    const old = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'staleness_timeout',
      at: minutesBefore(now, 90),
    });
    const recent = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'max_retries_exceeded',
      at: minutesBefore(now, 5),
    });
    const done = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'staleness_timeout',
      status: 'cancelled',
      at: minutesBefore(now, 50),
    });
    const all = await cli(['dlq', 'list', '--json'], env);
    expect(all.code).toBe(0);
    expect(all.json().map((e: { dlq_entry_uuid: string }) => e.dlq_entry_uuid)).toEqual([recent, done, old]);
    for (const field of [
      'dlq_entry_uuid',
      'task_uuid',
      'original_state',
      'dlq_reason',
      'dlq_timestamp',
      'resolution_status',
      'resolution_timestamp',
      'resolution_notes',
      'resolved_by',
      'task_snapshot',
      'metadata',
      'created_at',
      'updated_at',
      'minutes_in_dlq',
      'overdue',
    ]) {
      expect(all.json()[0]).toHaveProperty(field);
    }
    const pending = await cli(['dlq', 'list', '--status', 'pending', '--json'], env);
    expect(pending.json().map((e: { dlq_entry_uuid: string }) => e.dlq_entry_uuid)).toEqual([recent, old]);
    const byReason = await cli(
      ['dlq', 'list', '--reason', 'staleness_timeout', '--limit', '1', '--offset', '1', '--json'],
      env,
    );
    expect(byReason.json().map((e: { dlq_entry_uuid: string }) => e.dlq_entry_uuid)).toEqual([old]);
    const text = await cli(['dlq', 'list'], env);
    expect(text.stdout).toContain('default/task'); // the fixture's snapshot names
  });

  it('marks and filters entries pending longer than dlq.max_pending_age_hours', async () => {
    const overdue = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'staleness_timeout',
      at: hoursBefore(now, 169),
    });
    await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'staleness_timeout',
      at: hoursBefore(now, 167),
    });
    const run = await cli(['dlq', 'list', '--overdue', '--json'], env);
    expect(run.json().map((e: { dlq_entry_uuid: string }) => e.dlq_entry_uuid)).toEqual([overdue]);
    expect(run.json()[0].overdue).toBe(true);
  });

  it.each([
    [
      ['dlq', 'list', '--status', 'done'],
      '--status "done": expected one of pending, manually_resolved, permanently_failed, cancelled',
    ],
    [['dlq', 'list', '--limit', '0'], '--limit "0": expected a whole number from 1 to 1000'],
    [['dlq', 'list', '--reason', 'boredom'], '--reason "boredom": expected one of staleness_timeout'],
    [['dlq', 'list', '--colour'], "Unknown option '--colour'"],
    [['dlq', 'list', '--limt', '5'], "Unknown option '--limt'; did you mean --limit?"],
    [
      ['dlq', 'lsit'],
      'dlq: expected a subcommand (list, show, resolve, add, stats, queue, groups, group), got "lsit"; did you mean `dlq list`?',
    ],
    [['stauts'], 'unknown command "stauts"; did you mean `status`?'],
    [['dlq-list'], 'unknown command "dlq-list"; did you mean `dlq list`?'],
    [['dlq', 'list', 'extra'], 'unexpected argument "extra"'],
  ])('%j is bad input (exit 2)', async (args, message) => {
    const run = await cli(args, env);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(message);
  });
});

describe('dlq show', () => {
  it('finds an entry by its uuid, or the most recent entry of a task', async () => {
    const id = await task();
    const first = await insertDlqEntry(db.pool, {
      task: id,
      reason: 'staleness_timeout',
      status: 'manually_resolved',
      at: minutesBefore(now, 100),
    });
    const second = await insertDlqEntry(db.pool, {
      task: id,
      reason: 'manual_dlq',
      at: minutesBefore(now, 10),
    });
    expect((await cli(['dlq', 'show', first, '--json'], env)).json().dlq_entry_uuid).toBe(first);
    expect((await cli(['dlq', 'show', id, '--json'], env)).json().dlq_entry_uuid).toBe(second);
    expect((await cli(['dlq', 'show', id], env)).stdout).toContain('task_snapshot:');
  });

  it('puts why it was opened and the diagnosis first; the snapshot only with --snapshot (and in --json)', async () => {
    const template = await insertTemplate(db.pool, {
      namespace: 'shop',
      name: 'nightly',
      lifecycle: { max_waiting_for_retry_minutes: 'soon' },
    });
    const id = await insertTask(db.pool, {
      template,
      state: 'waiting_for_retry',
      enteredAt: minutesBefore(now, 95),
    });
    // Detection as the job runs it, with a default threshold of 30 minutes in waiting_for_retry.
    const detected = await cli(['detect-stale', '--json'], {
      ...env,
      TASKER__staleness_detection__thresholds__waiting_for_retry_minutes: '30',
      TASKER__logging__level: '"error"', // its warning about the template is tested with detection
    });
    expect(detected.code).toBe(0);
    const entry = (detected.json().tasks as Array<{ task_uuid: string; dlq_entry_uuid: string }>).find(
      (x) => x.task_uuid === id,
    )!.dlq_entry_uuid;
    await insertStep(db.pool, {
      task: id,
      name: 'charge',
      state: 'error',
      attempts: 3,
      maxAttempts: 3,
      results: { error: 'card declined' },
    });
    await enrichEntries(db.pool, [entry], defaultLimits());
    const shown = await cli(['dlq', 'show', entry], env);
    expect(shown.code).toBe(0);
    const lines = shown.stdout.split('\n');
    const at = (prefix: string) => lines.findIndex((l) => l.startsWith(prefix));
    expect(lines[at('why:')]).toBe(
      'why: Stale: 1 h 35 min in waiting_for_retry, past its threshold of 30 min — the global default (staleness_detection.thresholds.waiting_for_retry_minutes = 30), because the template\'s max_waiting_for_retry_minutes is "soon", not a whole number of minutes.',
    );
    expect(at('why:')).toBeLessThan(at('diagnosis:'));
    expect(lines[at('diagnosis:') + 1]).toMatch(/^ {2}summary: /);
    expect(lines[at('template problems')]).toContain('detection ignores these settings');
    expect(lines[at('template problems') + 1]).toBe(
      '  max_waiting_for_retry_minutes must be a positive whole number of minutes, got "soon"',
    );
    expect(lines[at('task_snapshot:')]).toMatch(
      /^task_snapshot: \d+ lines, not shown \(--snapshot prints it; --json gives everything\)$/,
    );
    expect(lines.length).toBeLessThan(60);
    const full = await cli(['dlq', 'show', entry, '--snapshot'], env);
    expect(full.stdout.split('\n').length).toBeGreaterThan(lines.length + 20);
    expect(full.stdout).toContain('"steps": {');
    expect((await cli(['dlq', 'show', entry, '--json'], env)).json().task_snapshot.steps.items).toHaveLength(
      1,
    );
  });

  it('an unknown uuid is bad input; a malformed one too', async () => {
    const missing = await cli(['dlq', 'show', '01900000-0000-7000-8000-000000000000'], env);
    expect(missing).toMatchObject({ code: 2 });
    expect(missing.stderr).toContain(
      'no DLQ entry and no task with entries has uuid 01900000-0000-7000-8000-000000000000',
    );
    const bad = await cli(['dlq', 'show', 'nope', '--json'], env);
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.stderr)).toEqual({
      error: {
        code: 'UsageError',
        message: expect.stringContaining('<entry_or_task_uuid> "nope": expected a UUID'),
      },
    });
  });
});

describe('dlq resolve', () => {
  it('ends a pending investigation and reports its time in the queue; then refuses a second resolution', async () => {
    const entry = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'staleness_timeout',
      at: minutesBefore(now, 45),
    });
    const run = await cli(
      [
        'dlq',
        'resolve',
        entry,
        '--status',
        'manually_resolved',
        '--notes',
        'restarted the worker',
        '--by',
        'alice',
        '--json',
      ],
      env,
    );
    expect(run.code).toBe(0);
    expect(run.json()).toMatchObject({
      resolution_status: 'manually_resolved',
      resolution_notes: 'restarted the worker',
      resolved_by: 'alice',
      minutes_in_dlq: 45,
    });
    const again = await cli(
      ['dlq', 'resolve', entry, '--status', 'cancelled', '--notes', 'x', '--by', 'bob'],
      env,
    );
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(
      /is not pending: it was manually_resolved by alice at .*a resolved entry is final/,
    );
    const { rows } = await db.pool.query(
      'SELECT resolution_status::text, resolved_by FROM tasker_tasks_dlq WHERE dlq_entry_uuid = $1',
      [entry],
    );
    expect(rows[0]).toEqual({ resolution_status: 'manually_resolved', resolved_by: 'alice' });
  });

  it.each([
    [
      ['--status', 'pending', '--notes', 'n', '--by', 'a'],
      '--status "pending": expected one of manually_resolved, permanently_failed, cancelled',
    ],
    [['--notes', 'n', '--by', 'a'], '--status S is required'],
    [['--status', 'cancelled', '--by', 'a'], '--notes TEXT is required'],
    [['--status', 'cancelled', '--notes', '   ', '--by', 'a'], '--notes "   ": expected notes, not empty'],
  ])('refuses %j', async (flags, message) => {
    const entry = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'staleness_timeout',
      at: minutesBefore(now, 5),
    });
    const run = await cli(['dlq', 'resolve', entry, ...flags], env);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(message);
  });

  it('without --by, the OS user resolves it and is recorded in the audit log', async () => {
    const entry = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'staleness_timeout',
      at: minutesBefore(now, 5),
    });
    const run = await cli(['dlq', 'resolve', entry, '--status', 'cancelled', '--notes', 'dup'], {
      ...env,
      USER: 'oncall-olga',
    });
    expect(run.code).toBe(0);
    const { rows } = await db.pool.query(
      `SELECT d.resolved_by, a.actor FROM tasker_tasks_dlq d JOIN tasker_audit_log a ON a.target_id = d.dlq_entry_uuid::text
        WHERE d.dlq_entry_uuid = $1`,
      [entry],
    );
    expect(rows).toEqual([{ resolved_by: 'oncall-olga', actor: 'oncall-olga' }]);
  });

  it('an entry that does not exist', async () => {
    const run = await cli(
      [
        'dlq',
        'resolve',
        '01900000-0000-7000-8000-000000000001',
        '--status',
        'cancelled',
        '--notes',
        'n',
        '--by',
        'a',
      ],
      env,
    );
    expect(run).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('no DLQ entry 01900000-0000-7000-8000-000000000001'),
    });
  });
});

describe('dlq add', () => {
  it('opens a manual_dlq investigation without touching the task, once', async () => {
    const id = await task('steps_in_process', 20);
    const run = await cli(
      ['dlq', 'add', id, '--notes', 'customer reported it', '--by', 'carol', '--json'],
      env,
    );
    expect(run.code).toBe(0);
    expect(run.json()).toMatchObject({
      task_uuid: id,
      dlq_reason: 'manual_dlq',
      original_state: 'steps_in_process',
      resolution_status: 'pending',
    });
    expect(run.json().metadata).toMatchObject({
      opened_by: 'carol',
      notes: 'customer reported it',
      time_in_state_minutes: 20,
    });
    const twice = await cli(['dlq', 'add', id, '--notes', 'again'], env);
    expect(twice).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('already has a pending investigation'),
    });
    const { rows } = await db.pool.query(
      'SELECT to_state FROM tasker_task_transitions WHERE task_uuid = $1 AND most_recent',
      [id],
    );
    expect(rows[0].to_state).toBe('steps_in_process');
  });

  it('is refused when manual investigations or the DLQ are switched off, and for unknown tasks', async () => {
    const id = await task();
    expect(
      (await cli(['dlq', 'add', id, '--notes', 'n'], { ...env, TASKER__dlq__reasons__manual_dlq: 'false' }))
        .stderr,
    ).toContain('dlq.reasons.manual_dlq = false');
    expect(
      (await cli(['dlq', 'add', id, '--notes', 'n'], { ...env, TASKER__dlq__enabled: 'false' })).stderr,
    ).toContain('dlq.enabled = false');
    const unknown = await cli(['dlq', 'add', '01900000-0000-7000-8000-000000000002', '--notes', 'n'], env);
    expect(unknown).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('no task 01900000-0000-7000-8000-000000000002'),
    });
  });
});

describe('dlq stats and queue', () => {
  it('pending count drops when one is resolved (upstream metrics smoke test), queue follows', async () => {
    const entries = [];
    for (const minutes of [30, 20, 10]) {
      entries.push(
        await insertDlqEntry(db.pool, {
          task: await task(),
          reason: 'staleness_timeout',
          at: minutesBefore(now, minutes),
        }),
      );
    }
    expect((await cli(['dlq', 'stats', '--json'], env)).json()).toEqual([
      expect.objectContaining({ dlq_reason: 'staleness_timeout', total_entries: 3, pending: 3 }),
    ]);
    await cli(
      ['dlq', 'resolve', entries[0]!, '--status', 'permanently_failed', '--notes', 'gone', '--by', 'dan'],
      env,
    );
    expect((await cli(['dlq', 'stats', '--json'], env)).json()[0]).toMatchObject({
      pending: 2,
      permanent_failures: 1,
    });
    const queue = await cli(['dlq', 'queue', '--json', '--limit', '5'], env);
    expect(queue.json().map((q: { dlq_entry_uuid: string }) => q.dlq_entry_uuid)).toEqual([
      entries[1],
      entries[2],
    ]);
    expect((await cli(['dlq', 'queue'], env)).stdout).toContain('default/task');
  });

  it('empty tables print a friendly line', async () => {
    expect((await cli(['dlq', 'stats'], env)).stdout).toBe('no DLQ entries yet\n');
    expect((await cli(['dlq', 'queue'], env)).stdout).toBe('no pending investigations\n');
  });
});

describe('detect-stale and the investigation workflow (upstream lifecycle test)', () => {
  it('detect -> queue -> resolve -> gone from the queue -> counted as resolved', async () => {
    const lifecycle = await insertTemplate(db.pool, {
      name: 'dlq_staleness_test',
      lifecycle: { max_waiting_for_dependencies_minutes: 2, max_duration_minutes: 30 },
    });
    const id = await insertTask(db.pool, {
      template: lifecycle,
      state: 'waiting_for_dependencies',
      enteredAt: minutesBefore(now, 3),
      createdAt: minutesBefore(now, 4),
    });
    const dry = await cli(['detect-stale', '--dry-run', '--json'], env);
    expect(dry.json()).toMatchObject({ dry_run: true, tasks_detected: 1, transitioned_to_error: 0 });
    const run = await cli(['detect-stale', '--json'], env);
    expect(run.json()).toMatchObject({ tasks_detected: 1, transitioned_to_error: 1, dlq_entries_created: 1 });
    const [item] = (await cli(['dlq', 'queue', '--json'], env)).json();
    expect(item).toMatchObject({
      task_uuid: id,
      dlq_reason: 'staleness_timeout',
      original_state: 'waiting_for_dependencies',
    });
    expect(item.priority_score).toBeGreaterThan(0);
    await cli(
      [
        'dlq',
        'resolve',
        item.dlq_entry_uuid,
        '--status',
        'manually_resolved',
        '--notes',
        'fixed',
        '--by',
        'erin',
      ],
      env,
    );
    expect((await cli(['dlq', 'queue', '--json'], env)).json()).toEqual([]);
    expect((await cli(['dlq', 'stats', '--json'], env)).json()[0].manually_resolved).toBeGreaterThanOrEqual(
      1,
    );
    const text = await cli(['detect-stale'], env);
    expect(text.stdout).toContain('tasks_detected:        0');
  });
});

describe('text from outside reaches the terminal escaped, and --json exactly', () => {
  it('a newline in --notes cannot fake a field, and escape sequences in names are shown, not run', async () => {
    const entry = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'staleness_timeout',
      at: minutesBefore(now, 30),
      namespace: 'billing\x1b[2J',
      taskName: 'invoice\u202eexe.txt',
    });
    // Notes may span lines, but neither notes nor a name may hold another control character now:
    // both are refused, naming the flag.
    const notes = 'restarted the worker\nresolved_by: mallory\x1b[31m';
    const badNotes = await cli(
      ['dlq', 'resolve', entry, '--status', 'manually_resolved', '--notes', notes, '--by', 'alice'],
      env,
    );
    expect(badNotes.code).toBe(2);
    expect(badNotes.stderr).toContain('expected notes without control characters');
    const badName = await cli(
      ['dlq', 'resolve', entry, '--status', 'manually_resolved', '--notes', 'n', '--by', 'alice\rbob'],
      env,
    );
    expect(badName.code).toBe(2);
    expect(badName.stderr).toContain('expected a name on one line, without control characters');
    const clean = 'restarted the worker\nresolved_by: mallory';
    expect(
      (
        await cli(
          ['dlq', 'resolve', entry, '--status', 'manually_resolved', '--notes', clean, '--by', 'alice'],
          env,
        )
      ).code,
    ).toBe(0);
    // An entry resolved by an earlier build may hold them: written here as that build wrote it.
    await db.pool.query(
      `UPDATE tasker_tasks_dlq SET resolved_by = 'alice\rbob', resolution_notes = $2 WHERE dlq_entry_uuid = $1`,
      [entry, notes],
    );

    const shown = await cli(['dlq', 'show', entry], env);
    expect(shown.code).toBe(0);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the test looks for raw control characters
    expect(shown.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/); // only newlines stay
    expect(shown.stdout.split('\n').filter((line) => line.startsWith('resolved_by:'))).toEqual([
      expect.stringMatching(/^resolved_by: +alice\\rbob$/),
    ]);
    expect(shown.stdout).toContain('restarted the worker\\nresolved_by: mallory\\x1b[31m');
    expect(shown.stdout).toContain('billing\\x1b[2J/invoice\\u202eexe.txt'); // the template line
    const snapshot = await cli(['dlq', 'show', entry, '--snapshot'], env);
    expect(snapshot.stdout).toContain('billing\\u001b[2J'); // inside the snapshot's JSON: JSON's own escape
    expect(snapshot.stdout).toContain('invoice\\u202eexe.txt');

    const listed = await cli(['dlq', 'list', '--status', 'manually_resolved'], env);
    expect(listed.stdout).toContain('billing\\x1b[2J/invoice\\u202eexe.txt');
    expect(listed.stdout.trim().split('\n')).toHaveLength(2); // header and one row

    const json = (await cli(['dlq', 'show', entry, '--json'], env)).json();
    expect(json).toMatchObject({ resolution_notes: notes, resolved_by: 'alice\rbob' });
    expect(json.task_snapshot).toMatchObject({
      namespace: 'billing\x1b[2J',
      task_name: 'invoice\u202eexe.txt',
    });
  });
});

describe('a refusal that quotes stored text', () => {
  it('dlq resolve on an entry resolved by an earlier build shows who resolved it escaped, as every other output', async () => {
    const entry = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'staleness_timeout',
      status: 'cancelled',
      at: minutesBefore(now, 30),
    });
    // As an earlier build let any caller write it: a name that clears the screen and retitles it.
    await db.pool.query(`UPDATE tasker_tasks_dlq SET resolved_by = $2 WHERE dlq_entry_uuid = $1`, [
      entry,
      'mallory\x1b[2J\x1b]0;owned\x07',
    ]);
    const run = await cli(
      ['dlq', 'resolve', entry, '--status', 'cancelled', '--notes', 'again', '--by', 'bob'],
      env,
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('it was cancelled by mallory\\x1b[2J\\x1b]0;owned\\x07 at ');
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the test looks for raw control characters
    expect(run.stderr.slice(0, -1)).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
    // --json keeps it exact (a program reads it, not a terminal).
    const json = await cli(
      ['dlq', 'resolve', entry, '--status', 'cancelled', '--notes', 'again', '--json'],
      env,
    );
    expect(JSON.parse(json.stderr).error.message).toContain('mallory\x1b[2J');
  });
});

describe('exit codes and errors of the real binary', () => {
  it('0 on success, 2 on bad input, 1 when the database cannot be reached', async () => {
    expect((await runCliProcess(['dlq', 'stats'], env)).code).toBe(0);
    const bad = await runCliProcess(['dlq', 'list', '--limit', 'x'], env);
    expect(bad).toMatchObject({
      code: 2,
      stderr: 'error: --limit "x": expected a whole number from 1 to 1000\n',
    });
    const down = await runCliProcess(['dlq', 'stats'], {
      DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none',
    });
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^error: cannot connect to 127\.0\.0\.1:1\/none: nothing listens there/);
    const config = await runCliProcess(['dlq', 'stats'], { ...env, TASKER__dlq__max_pending_age_hours: '0' });
    expect(config.code).toBe(2);
    expect(config.stderr).toContain(
      'dlq.max_pending_age_hours = 0 (from TASKER__dlq__max_pending_age_hours): expected a whole number from 1 to 8760',
    );
    const unknown = await runCliProcess(['frobnicate'], env);
    expect(unknown).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('unknown command "frobnicate"'),
    });
  });
});
