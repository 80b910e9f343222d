/**
 * What this build puts in a pg-boss job's data: only what the previous release's workers accept.
 * Their request schema (7ef2c80 src/worker/worker.ts RunRequest) is strict, with trigger, options,
 * continues and interruptions, and each job's option schema is strict too; a request with anything
 * else is refused and dead-lettered at once. The rest travels beside the job
 * (tasker_run_request_extras) and is put back by this build's workers. test/e2e/upgrade.test.ts
 * runs the previous release's workers against such requests.
 */
import { expect, it } from '@jest/globals';
import archiveFinishedTasks from '../../jobs/archive-finished-tasks.ts';
import detectStaleTasks from '../../jobs/detect-stale-tasks.ts';
import { JOBS } from '../../jobs/index.ts';
import { type RunRequest, splitRequest, withExtras } from '../../src/worker/worker.ts';

/** The fields of a request the previous release accepts. */
const PREVIOUS_RELEASE_REQUEST_FIELDS = ['trigger', 'options', 'continues', 'interruptions'];

it('splits what the previous release refuses off a request, and a worker of this build puts it back', () => {
  const request: RunRequest = {
    trigger: 'adhoc',
    options: {
      max_batches: 2,
      resume: { cursor: { phase: 'in_flight' }, judged_at: '2026-06-01T12:00:00.000Z' },
    },
    continues: '0199c2a4-0000-7000-8000-000000000001',
    this_run_only: true,
  };
  const { data, extras } = splitRequest(detectStaleTasks, request);
  expect(data).toEqual({
    trigger: 'adhoc',
    options: { max_batches: 2 },
    continues: '0199c2a4-0000-7000-8000-000000000001',
  });
  expect(extras).toEqual({
    options: { resume: { cursor: { phase: 'in_flight' }, judged_at: '2026-06-01T12:00:00.000Z' } },
    this_run_only: true,
  });
  expect(withExtras(data, extras ?? undefined)).toEqual(request);
});

it('leaves a request the previous release accepts as it is, with no extras', () => {
  for (const request of [
    { trigger: 'schedule' },
    { trigger: 'adhoc', options: { dry_run: true, batch_size: 5 } },
    { trigger: 'event', options: { entry_uuids: ['a'] }, interruptions: 2 },
  ] satisfies RunRequest[])
    for (const job of JOBS) expect(splitRequest(job, request)).toEqual({ data: request, extras: null });
  expect(splitRequest(archiveFinishedTasks, { trigger: 'adhoc', this_run_only: true })).toEqual({
    data: { trigger: 'adhoc' },
    extras: { this_run_only: true },
  });
});

it('keeps only the fields the previous release knows in the data, whatever the request', () => {
  const everything: RunRequest = {
    trigger: 'adhoc',
    options: { resume: null, max_batches: 1 },
    continues: 'x',
    interruptions: 1,
    this_run_only: true,
  };
  for (const job of JOBS) {
    const { data } = splitRequest(job, everything);
    expect(Object.keys(data).filter((k) => !PREVIOUS_RELEASE_REQUEST_FIELDS.includes(k))).toEqual([]);
    for (const option of job.optionsSentAsExtras ?? []) expect(data.options).not.toHaveProperty(option);
  }
});
