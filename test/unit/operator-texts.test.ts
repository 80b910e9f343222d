/**
 * What the console and the CLI say to an operator, without a browser or a database: why an entry
 * was opened (with the setting that applied), a run's counts in words, a chain of hand-ons as one
 * run, the audit log's before → after, when a cron fires next, "did you mean", relative times,
 * the entry page's step order and its diagnosis without a repeated error (issue 28).
 */
import { describe, expect, it } from '@jest/globals';
import type { AuditRow } from '../../src/db/queries/audit.ts';
import type { RunRow } from '../../src/db/queries/job-runs.ts';
import { nextCronTime } from '../../src/domain/cron.ts';
import { enrichmentLine, enrichmentWords } from '../../src/domain/enrichment-words.ts';
import { closestName } from '../../src/domain/names.ts';
import { whyStale } from '../../src/domain/why-stale.ts';
import { pointInTime, resolveTime } from '../../src/validation/values.ts';
import { AUDIT_VALUE_CHARS, auditChanges, auditValue } from '../../src/web/console/audit-page.ts';
import { diagnosisSection, orderSteps } from '../../src/web/console/entry-page.ts';
import { jobLive } from '../../src/web/console/jobs-page.ts';
import type { PageContext } from '../../src/web/console/layout.ts';
import { countsInWords, groupRuns } from '../../src/web/console/run-words.ts';

describe('why an entry was opened', () => {
  const base = {
    reason: 'staleness_timeout' as const,
    originalState: 'waiting_for_retry',
    metadata: {
      detection_method: 'automatic_staleness',
      stale_by: 'state_threshold',
      time_in_state_minutes: 95,
      threshold_minutes: 30,
    },
  };

  it("names the template's setting when it applied", () => {
    expect(whyStale({ ...base, lifecycle: { max_waiting_for_retry_minutes: 30 } })).toBe(
      "Stale: 1 h 35 min in waiting_for_retry, past its threshold of 30 min — the template's max_waiting_for_retry_minutes = 30.",
    );
  });

  it('names the global default, and why the template did not apply', () => {
    expect(whyStale({ ...base, lifecycle: {} })).toBe(
      'Stale: 1 h 35 min in waiting_for_retry, past its threshold of 30 min — the global default (staleness_detection.thresholds.waiting_for_retry_minutes = 30); the template sets no max_waiting_for_retry_minutes.',
    );
    expect(whyStale({ ...base, lifecycle: { max_waiting_for_retry_minutes: 'soon' } })).toBe(
      'Stale: 1 h 35 min in waiting_for_retry, past its threshold of 30 min — the global default (staleness_detection.thresholds.waiting_for_retry_minutes = 30), because the template\'s max_waiting_for_retry_minutes is "soon", not a whole number of minutes.',
    );
  });

  it('says so for a lifetime, a state without a setting, an entry opened by hand, and an entry that does not say', () => {
    expect(
      whyStale({
        ...base,
        originalState: 'steps_in_process',
        metadata: { stale_by: 'task_lifetime', time_in_state_minutes: 20, threshold_minutes: 600 },
        lifecycle: { max_duration_minutes: 600 },
      }),
    ).toBe(
      "Stale: the task outlived its lifetime of 10 h (it was 20 min in steps_in_process when detected) — the template's max_duration_minutes = 600.",
    );
    expect(
      whyStale({
        ...base,
        originalState: 'initializing',
        metadata: { ...base.metadata, threshold_minutes: 1440 },
        lifecycle: {},
      }),
    ).toContain('the fixed 1440 min for a state without a setting of its own');
    expect(
      whyStale({
        ...base,
        reason: 'manual_dlq',
        metadata: { detection_method: 'manual', opened_by: 'ana' },
        lifecycle: {},
      }),
    ).toBe('Opened by hand by ana, not by detection.');
    expect(whyStale({ ...base, metadata: {}, lifecycle: {} })).toBeNull();
  });
});

const run = (
  o: Partial<RunRow> & { pgboss_job_id: string | null; counts: unknown },
  minute: number,
): RunRow => ({
  run_id: `r${minute}`,
  job_name: 'tasker.archive-finished-tasks',
  trigger: 'adhoc',
  worker: 'w',
  started_at: new Date(Date.UTC(2026, 5, 1, 12, minute)),
  options: {},
  outcome: 'completed',
  duration_ms: 100,
  error: null,
  ...o,
});

describe('a run in words', () => {
  it('says what archival and detection did, or would do in a dry run', () => {
    const archive = 'tasker.archive-finished-tasks';
    expect(
      countsInWords(archive, {
        dry_run: true,
        tasks_archived: 2250,
        rows_archived: 13500,
        batches: 3,
        stopped_by: 'no_more_candidates',
      }),
    ).toBe('would archive 2,250 tasks (13,500 rows) in 3 batches');
    expect(
      countsInWords(archive, { tasks_archived: 1, rows_archived: 7, batches: 1, stopped_by: 'max_batches' }),
    ).toBe('archived 1 task (7 rows) in 1 batch; stopped at its max batches with more to do');
    expect(countsInWords(archive, { stopped_by: 'no_matching_template' })).toBe(
      'nothing: no template matches its filter',
    );
    const detect = 'tasker.detect-stale-tasks';
    expect(countsInWords(detect, { dry_run: true, tasks_detected: 3, batches: 1 })).toBe(
      'would act on 3 stale tasks in 1 batch',
    );
    expect(
      countsInWords(detect, {
        tasks_detected: 3,
        transitioned_to_error: 3,
        dlq_entries_created: 2,
        failures: 1,
        batches: 1,
      }),
    ).toBe('found 3 stale tasks: 3 moved to error, 2 investigations opened, 1 not as planned in 1 batch');
    expect(countsInWords(detect, { tasks_detected: 0, batches: 1 })).toBe('found no stale task in 1 batch');
  });

  it('puts a chain of hand-ons and the attempts of one job together as one run, newest run first', () => {
    const rows = [
      run(
        {
          pgboss_job_id: 'c',
          counts: { tasks_archived: 5, rows_archived: 30, batches: 1, stopped_by: 'no_more_candidates' },
        },
        3,
      ),
      run(
        {
          pgboss_job_id: 'b',
          counts: {
            tasks_archived: 10,
            rows_archived: 60,
            batches: 3,
            handed_on_to: 'c',
            stopped_by: 'max_batches',
          },
        },
        2,
      ),
      run(
        {
          pgboss_job_id: 'a',
          counts: {
            tasks_archived: 10,
            rows_archived: 60,
            batches: 3,
            handed_on_to: 'b',
            stopped_by: 'max_batches',
          },
        },
        1,
      ),
      run({ pgboss_job_id: 'x', outcome: 'failed', counts: { tasks_archived: 1, batches: 1 } }, 0),
      run({ pgboss_job_id: 'x', outcome: 'interrupted', counts: null }, -1),
    ];
    const groups = groupRuns(rows);
    expect(groups.map((g) => [g.first_job_id, g.links, g.outcome])).toEqual([
      ['a', 3, 'completed'],
      ['x', 1, 'failed'],
    ]);
    expect(countsInWords('tasker.archive-finished-tasks', groups[0]!.counts)).toBe(
      'archived 25 tasks (150 rows) in 7 batches',
    );
    expect(groups[0]!.duration_ms).toBe(300);
  });

  it('a run still handing on counts the job it handed on to', () => {
    const [g] = groupRuns([
      run(
        {
          pgboss_job_id: 'a',
          counts: { tasks_archived: 3, batches: 3, handed_on_to: 'b', stopped_by: 'max_batches' },
        },
        1,
      ),
    ]);
    expect(g!.links).toBe(2);
  });
});

describe('the Jobs page', () => {
  const ctx = {
    principal: { tokenName: 't', permissions: ['*'] },
    csrf: 'c',
    currentPath: '/jobs',
    deps: { can: () => true },
  } as unknown as PageContext;
  const state = (lastRuns: RunRow[]) => ({
    job: 'tasker.detect-stale-tasks',
    description: 'd',
    schedule: '*/5 * * * *',
    last_runs: lastRuns,
    queue: { queued: 1, active: 0, failed: 0 },
    dead_letter_queue: 'tasker.detect-stale-tasks.failed',
    dead_lettered: 0,
    dead_lettered_runs: [],
  });

  it('shows when the schedule runs next, the live count, links to runs, and a template a detection run found malformed', () => {
    const now = new Date('2026-06-01T12:03:10Z');
    const out = jobLive(
      ctx,
      state([
        run(
          {
            pgboss_job_id: '0199c2a4-5e1f-7b3a-9d2e-4f6a8b0c1d2e',
            job_name: 'tasker.detect-stale-tasks',
            counts: {
              tasks_detected: 1,
              transitioned_to_error: 1,
              dlq_entries_created: 1,
              batches: 1,
              template_problems: {
                'demo/nightly_report': [
                  'max_waiting_for_retry_minutes must be a positive whole number of minutes, got "soon"',
                ],
              },
            },
          },
          1,
        ),
      ]),
      now,
    ).value;
    expect(out).toContain(
      'next run <time datetime="2026-06-01T12:05:00.000Z" class="next-run">2026-06-01 12:05:00Z</time> (in 2 min)',
    );
    expect(out).toContain(
      '1 waiting, 0 running, 0 failed <span class="muted">(counted live at 2026-06-01 12:03:10Z)</span>',
    );
    expect(out).toContain('href="/jobs/tasker.detect-stale-tasks/runs/0199c2a4-5e1f-7b3a-9d2e-4f6a8b0c1d2e"');
    expect(out).toContain('found 1 stale task: 1 moved to error, 1 investigation opened in 1 batch');
    expect(out).toContain(
      '<strong>demo/nightly_report</strong>: max_waiting_for_retry_minutes must be a positive whole number of minutes, got &quot;soon&quot;',
    );
  });
});

describe('the audit log', () => {
  const row = (o: Partial<AuditRow>): AuditRow => ({
    audit_id: 1,
    at: new Date(),
    actor: 'a',
    actor_kind: 'console',
    actor_token_id: null,
    actor_os_user: null,
    action: 'dlq.resolve',
    target_kind: 'dlq_entry',
    target_id: 'e',
    before: null,
    after: null,
    details: null,
    ...o,
  });

  it('shows every changed value before → after, as `audit` prints them', () => {
    expect(
      auditChanges(
        row({
          before: { resolution_status: 'pending', resolution_notes: null, resolved_by: null },
          after: { resolution_status: 'cancelled', resolution_notes: 'x', resolved_by: null },
        }),
      ),
    ).toEqual([
      { key: 'resolution_status', before: 'pending', after: 'cancelled' },
      { key: 'resolution_notes', before: null, after: 'x' },
    ]);
  });

  it('shows a long value whole behind "more", never cut', () => {
    const long = 'n'.repeat(500);
    const out = auditValue(long).value;
    expect(out).toContain(
      `<summary><code>&quot;${'n'.repeat(AUDIT_VALUE_CHARS - 1)}</code>… more (502 characters)</summary>`,
    );
    expect(out).toContain(`<pre>&quot;${long}&quot;</pre>`);
    expect(auditValue('short').value).toBe('<code>&quot;short&quot;</code>');
  });
});

describe('when a schedule fires next (UTC)', () => {
  it('reads the crons the configuration makes, and lists, ranges and both day fields', () => {
    const at = new Date('2026-06-01T12:03:10Z'); // a Monday
    expect(nextCronTime('* * * * *', at)?.toISOString()).toBe('2026-06-01T12:04:00.000Z');
    expect(nextCronTime('*/5 * * * *', at)?.toISOString()).toBe('2026-06-01T12:05:00.000Z');
    expect(nextCronTime('0 */6 * * *', at)?.toISOString()).toBe('2026-06-01T18:00:00.000Z');
    expect(nextCronTime('0 0 * * *', at)?.toISOString()).toBe('2026-06-02T00:00:00.000Z');
    expect(nextCronTime('0 0 * * 0', at)?.toISOString()).toBe('2026-06-07T00:00:00.000Z');
    expect(nextCronTime('30 9 1,15 * 5', at)?.toISOString()).toBe('2026-06-05T09:30:00.000Z');
    expect(nextCronTime('0 0 29 2 *', at)?.toISOString()).toBe('2028-02-29T00:00:00.000Z');
    expect(nextCronTime('61 * * * *', at)).toBeUndefined();
    expect(nextCronTime('every day', at)).toBeUndefined();
  });
});

describe('did you mean', () => {
  it('suggests the nearest known name, and nothing for a name far from all of them', () => {
    expect(closestName('lsit', ['list', 'show', 'resolve'])).toBe('list');
    expect(closestName('bach-size', ['batch-size', 'max-batches'])).toBe('batch-size');
    expect(closestName('frobnicate', ['status', 'migrate'])).toBeUndefined();
  });
});

describe('a time as typed', () => {
  it('takes a span back from now, a date, or a time with a zone, and says what it expected', () => {
    const now = new Date('2026-06-01T12:00:00Z');
    const at = (s: string) => resolveTime(pointInTime.parse(s), now).toISOString();
    expect(at('1h')).toBe('2026-06-01T11:00:00.000Z');
    expect(at('30m')).toBe('2026-06-01T11:30:00.000Z');
    expect(at('2d')).toBe('2026-05-30T12:00:00.000Z');
    expect(at('1w')).toBe('2026-05-25T12:00:00.000Z');
    expect(at('2026-05-01')).toBe('2026-05-01T00:00:00.000Z');
    expect(at('2026-05-01T08:00:00+02:00')).toBe('2026-05-01T06:00:00.000Z');
    expect(pointInTime.safeParse('yesterday').error?.issues[0]?.message).toBe(
      'expected a time with a zone such as 2026-05-01T00:00:00Z, a date such as 2026-05-01 (UTC), or a span back from now such as 30m, 1h, 2d, 1w',
    );
  });
});

describe('the entry page', () => {
  const step = (workflow_step_uuid: string, name: string, state: string) =>
    ({ workflow_step_uuid, name, state }) as Parameters<typeof orderSteps>[0][number];

  it('orders steps failed first, then by dependency, then by name', () => {
    const steps = [
      step('d', 'ship', 'pending'),
      step('b', 'charge', 'error'),
      step('a', 'fetch', 'complete'),
      step('c', 'audit', 'pending'),
    ];
    const edges = [
      { from_step_uuid: 'a', to_step_uuid: 'b' },
      { from_step_uuid: 'b', to_step_uuid: 'd' },
      { from_step_uuid: 'a', to_step_uuid: 'c' },
    ];
    expect(orderSteps(steps, edges).map((s) => s.name)).toEqual(['charge', 'fetch', 'audit', 'ship']);
  });

  it('shows the error of a step both blocking and out of retries once', () => {
    const error = { message: 'card declined' };
    const list = <T>(items: T[]) => ({ items, total: items.length, truncated: false, omitted: 0 });
    const out = diagnosisSection({
      enrichment: {
        enriched_at: '2026-06-01T12:00:00Z',
        detail_level: 'full',
        requested_detail: 'full',
        truncated: false,
        truncated_lists: [],
        truncated_payloads: 0,
      },
      diagnosis: {
        summary: 's',
        blocking_steps: list([
          {
            workflow_step_uuid: 'b',
            name: 'charge',
            state: 'error',
            since: '',
            minutes_in_state: 5,
            attempts: 3,
            max_attempts: 3,
            retryable: true,
            on_cycle: false,
            waits_on: [],
            waits_on_total: 0,
            blocks: [],
            blocks_total: 0,
            downstream_unfinished: 0,
            error,
          },
        ]),
        exhausted_retries: list([
          {
            workflow_step_uuid: 'b',
            name: 'charge',
            state: 'error',
            why: 'attempts_exhausted',
            attempts: 3,
            max_attempts: 3,
            retryable: true,
            last_attempted_at: null,
            error,
          },
        ]),
      },
    } as unknown as Parameters<typeof diagnosisSection>[0]).value;
    expect(out.match(/card declined/g)).toHaveLength(1);
    expect(out).toContain('(its error is under Blocking)');
  });
});

describe("where an entry's enrichment stands", () => {
  const failure = (attempts: number, gaveUp: boolean) => ({
    enrichment: {
      version: 1,
      failed: true,
      failed_at: '2026-06-01T12:00:00.5+00:00',
      error: { code: '57014', message: 'canceling statement\n due to statement timeout' },
      failed_attempts: attempts,
      max_attempts: 8,
      next_attempt_at: gaveUp ? null : '2026-06-01T12:04:00+00:00',
      gave_up: gaveUp,
    },
  });
  const clock = (iso: string) => `<${iso.slice(11, 16)}>`;

  it('says awaiting, enriched (after failed attempts), failing with the next attempt, and given up, in the same words everywhere', () => {
    expect(enrichmentWords({})).toEqual({
      state: 'awaiting',
      label: 'awaiting enrichment',
      detail: '',
      line: 'not enriched yet: the request of its detection batch or the next sweep enriches it',
    });
    expect(enrichmentWords({ enrichment: { enriched_at: '2026-06-01T12:00:00Z' } }, clock)).toMatchObject({
      state: 'enriched',
      label: 'enriched',
      detail: '',
      line: 'enriched <12:00>',
    });
    expect(
      enrichmentWords({ enrichment: { enriched_at: '2026-06-01T12:00:00Z', failed_attempts: 2 } }).detail,
    ).toBe('after 2 failed attempt(s)');
    expect(enrichmentWords(failure(2, false), clock)).toEqual({
      state: 'retrying',
      label: 'enrichment failing',
      detail: '2 of 8 attempt(s) failed; next attempt at <12:04>',
      line: 'failing: 2 of 8 attempt(s) failed, last at <12:00>; next attempt at <12:04>; last error (57014): canceling statement due to statement timeout',
    });
    expect(enrichmentWords(failure(8, true), clock)).toEqual({
      state: 'given_up',
      label: 'enrichment given up',
      detail: '8 of 8 attempt(s) failed; not tried again',
      line: 'failed for good: 8 of 8 attempt(s) failed, last at <12:00>; not tried again (only the detection snapshot is there); last error (57014): canceling statement due to statement timeout',
    });
    // `dlq show` prints the line with the times as stored.
    expect(enrichmentLine(failure(2, false))).toContain(
      'last at 2026-06-01T12:00:00.5+00:00; next attempt at 2026-06-01T12:04:00+00:00;',
    );
  });
});
