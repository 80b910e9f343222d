/**
 * A real worker process detects, enriches, archives, fails once and rejects once; its /metrics is
 * then scraped and every instrument checked against what the database says happened (the run
 * history, the DLQ, pg-boss's dead-letter queue), and `promtool check metrics` on the scrape
 * prints nothing. Its log lines carry the fixed envelope, with the job's counts under `counts`.
 */
import { spawnSync } from 'node:child_process';
import { beforeAll, expect, it } from '@jest/globals';
import { loadConfig } from '../../src/config/load.ts';
import { databaseNow } from '../../src/db/queries/server.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { DURATION_BUCKETS_SECONDS } from '../../src/telemetry/metrics.ts';
import { createBoss } from '../../src/worker/boss.ts';
import { startBoss } from '../../src/worker/process.ts';
import { insertFinishedGraphs } from '../helpers/archive-factories.ts';
import { runCli } from '../helpers/cli-process.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { hoursBefore, insertTask, insertTemplate, minutesBefore } from '../helpers/factories.ts';
import { waitFor } from '../helpers/wait.ts';
import {
  FAST_WORKER_ENV,
  holdDetectionAtStart,
  installFor,
  runsOf,
  startWorkerProcess,
  waitForWorkers,
  workerPort,
} from '../helpers/workers.ts';

const DETECT = 'tasker.detect-stale-tasks';
const ENRICH = 'tasker.enrich-dlq-snapshots';
const ARCHIVE = 'tasker.archive-finished-tasks';
const JOBS = [DETECT, ENRICH, ARCHIVE];
const WORKER_ENV = {
  // Detection runs only when the test asks; a failed or rejected request is dead-lettered at once.
  TASKER__staleness_detection__enabled: 'false',
  TASKER__staleness_detection__batch_statement_timeout_ms: '3000',
  TASKER__worker__retry_limit: '0',
  // The DLQ gauges are read once per cluster per interval (issue 25): every second here.
  TASKER__metrics__gauges_interval_seconds: '1',
};

const db = useTestDatabase();
beforeAll(async () => {
  await installFor(db.url, WORKER_ENV);
});

/** A Prometheus text exposition, parsed: every sample by its name and labels. */
function parse(text: string) {
  const samples: Array<{ name: string; labels: Record<string, string>; value: number }> = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]),
    );
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  const find = (name: string, labels: Record<string, string> = {}) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return {
    samples,
    /** The one sample with these labels (throws when there are none or several). */
    value(name: string, labels: Record<string, string> = {}) {
      const found = find(name, labels);
      if (found.length !== 1)
        throw new Error(`${name}${JSON.stringify(labels)}: expected one sample, found ${found.length}`);
      return found[0]!.value;
    },
    find,
  };
}

it('every instrument of a worker that detected, enriched, archived, failed once and rejected once', async () => {
  const now = await databaseNow(db.pool);
  const template = await insertTemplate(db.pool);
  const stale = [];
  for (let i = 0; i < 2; i++)
    stale.push(
      await insertTask(db.pool, {
        template,
        state: 'waiting_for_retry',
        enteredAt: minutesBefore(now, 300 - i),
      }),
    );
  await insertFinishedGraphs(db.pool, {
    named_task_uuid: template.named_task_uuid,
    state: 'complete',
    finishedAt: hoursBefore(now, 24 * 60),
    count: 3,
    steps: 2,
  });

  const worker = startWorkerProcess(db.url, WORKER_ENV);
  const env = { DATABASE_URL: db.url, ...FAST_WORKER_ENV, ...WORKER_ENV };
  const client = createBoss(
    loadConfig({ env: { TASKER_ENV: 'test' } }).config,
    db.url,
    'client',
    silentLogger(),
  );
  try {
    const port = await workerPort(worker);
    await waitForWorkers(db.pool, 1);

    // Detect (2 stale tasks -> 2 investigations, each enriched by an event run), then archive.
    expect((await runCli(['enqueue', 'detect-stale', '--wait'], env)).code).toBe(0);
    await waitFor('both investigations enriched', async () => {
      const { rows } = await db.pool.query(
        `SELECT count(*)::int AS n FROM tasker_tasks_dlq WHERE task_snapshot ? 'enrichment' AND resolution_status = 'pending'`,
      );
      return rows[0].n === 2;
    });
    expect((await runCli(['enqueue', 'archive', '--wait'], env)).code).toBe(0);

    // Fail once: the detection batch waits on a lock past its statement timeout.
    const holder = await holdDetectionAtStart(await db.connect());
    try {
      expect((await runCli(['enqueue', 'detect-stale'], env)).code).toBe(0);
      await waitFor('the held detection run to fail', async () =>
        (await runsOf(db.pool, DETECT)).some((r) => r.outcome === 'failed'),
      );
    } finally {
      await holder.release();
    }

    // Reject once: a request whose options the job refuses (sent past the CLI's own check).
    await startBoss(client);
    expect(
      await client.send(DETECT, { trigger: 'adhoc', options: { batch_size: 0 } }, { singletonKey: 'run' }),
    ).toEqual(expect.any(String));
    await waitFor('the rejected run', async () =>
      (await runsOf(db.pool, DETECT)).some((r) => r.outcome === 'rejected'),
    );
    await waitFor('every run to have an outcome', async () => {
      const { rows } = await db.pool.query(
        `SELECT count(*)::int AS n FROM tasker_job_runs WHERE outcome IS NULL`,
      );
      return rows[0].n === 0;
    });
    // pg-boss's monitor pass (every 2 s here) counts the queues: both bad requests dead-lettered.
    // The DLQ gauges: read by the lease's holder within an interval of the last change.
    await waitFor(
      'the dead-letter queue counted, and the DLQ gauges read since the last change',
      async () => {
        const m = parse(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
        const { rows: pending } = await db.pool.query<{ n: number }>(
          `SELECT count(*)::integer AS n FROM tasker_tasks_dlq WHERE resolution_status = 'pending'`,
        );
        return (
          m.find('tasker_queue_dead_lettered_jobs', { tasker_queue: DETECT })[0]?.value === 2 &&
          m.find('tasker_queue_oldest_ready_age_seconds').length === JOBS.length &&
          m.find('tasker_dlq_pending_investigations')[0]?.value === pending[0]!.n
        );
      },
    );

    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const m = parse(text);
    const { rows: history } = await db.pool.query<{
      job_name: string;
      trigger: string;
      outcome: string;
      duration_ms: number;
      finished_at: Date;
      counts: Record<string, number> | null;
      pgboss_job_id: string | null;
      error: string | null;
    }>(
      'SELECT job_name, trigger, outcome, duration_ms, finished_at, counts, pgboss_job_id, error FROM tasker_job_runs',
    );
    const runsWhere = (f: (r: (typeof history)[number]) => boolean) => history.filter(f);
    expect(
      runsWhere((r) => r.job_name === DETECT)
        .map((r) => r.outcome)
        .sort(),
    ).toEqual(['completed', 'failed', 'rejected']);
    expect(runsWhere((r) => r.outcome === 'rejected')[0]!.error).toMatch(/batch_size/);

    // Resource.
    expect(m.find('target_info')[0]!.labels).toMatchObject({
      service_name: 'tasker-lifecycle',
      service_version: '0.1.0',
      service_instance_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
    // No label may be called job (Prometheus's target label), anywhere.
    expect(m.samples.filter((s) => 'job' in s.labels)).toEqual([]);

    // Runs: every job x trigger x outcome, equal to the run history (0 where none).
    for (const job of JOBS)
      for (const trigger of ['schedule', 'adhoc', 'event'])
        for (const outcome of ['completed', 'failed', 'interrupted', 'rejected']) {
          const expected = runsWhere(
            (r) => r.job_name === job && r.trigger === trigger && r.outcome === outcome,
          ).length;
          expect({
            job,
            trigger,
            outcome,
            runs: m.value('tasker_job_runs_total', { tasker_job: job, trigger, outcome }),
          }).toEqual({ job, trigger, outcome, runs: expected });
        }
    // Durations: count and sum per job and outcome agree with the history; buckets as configured.
    for (const job of JOBS)
      for (const outcome of ['completed', 'failed', 'rejected']) {
        const rows = runsWhere((r) => r.job_name === job && r.outcome === outcome);
        const count = m.find('tasker_job_duration_seconds_count', { tasker_job: job, outcome });
        if (rows.length === 0) {
          expect(count).toEqual([]);
          continue;
        }
        expect(count[0]!.value).toBe(rows.length);
        const sum = m.value('tasker_job_duration_seconds_sum', { tasker_job: job, outcome });
        expect(sum).toBeCloseTo(rows.reduce((s, r) => s + r.duration_ms, 0) / 1000, 2);
        const les = m
          .find('tasker_job_duration_seconds_bucket', { tasker_job: job, outcome })
          .map((s) => s.labels.le);
        expect(les).toEqual([...DURATION_BUCKETS_SECONDS.map(String), '+Inf']);
      }
    // Last success per job: the end of its last completed run.
    for (const job of JOBS) {
      const last = Math.max(
        ...runsWhere((r) => r.job_name === job && r.outcome === 'completed').map((r) =>
          r.finished_at.getTime(),
        ),
      );
      const seen = m.value('tasker_job_last_success_timestamp_seconds', { tasker_job: job });
      expect(Math.abs(seen * 1000 - last)).toBeLessThan(1000);
    }
    // Schedules: detection is off (absent), the sweep and archival have intervals.
    expect(m.find('tasker_job_schedule_interval_seconds', { tasker_job: DETECT })).toEqual([]);
    expect(m.value('tasker_job_schedule_interval_seconds', { tasker_job: ENRICH })).toBeGreaterThanOrEqual(
      60,
    );
    expect(m.value('tasker_job_schedule_interval_seconds', { tasker_job: ARCHIVE })).toBeGreaterThanOrEqual(
      3600,
    );
    const startedAt = m.value('tasker_worker_start_time_seconds');
    expect(Date.now() / 1000 - startedAt).toBeGreaterThan(0);
    expect(Date.now() / 1000 - startedAt).toBeLessThan(600);

    // Work done, detection, enrichment, archival: as the runs' own counts say.
    const archiveRun = runsWhere((r) => r.job_name === ARCHIVE && r.outcome === 'completed')[0]!;
    expect(archiveRun.counts).toMatchObject({ tasks_archived: 3 });
    const enriched = runsWhere((r) => r.job_name === ENRICH && r.outcome === 'completed').reduce(
      (s, r) => s + Number(r.counts?.enriched ?? 0),
      0,
    );
    expect(enriched).toBe(2);
    expect(m.value('tasker_job_work_done_total', { tasker_job: DETECT })).toBe(2);
    expect(m.value('tasker_job_work_done_total', { tasker_job: ENRICH })).toBe(2);
    expect(m.value('tasker_job_work_done_total', { tasker_job: ARCHIVE })).toBe(3);
    expect(m.value('tasker_staleness_detection_runs_total', { dry_run: 'false' })).toBe(1);
    expect(m.value('tasker_staleness_detection_runs_total', { dry_run: 'true' })).toBe(0);
    expect(m.value('tasker_staleness_detection_duration_seconds_count', { dry_run: 'false' })).toBe(1);
    expect(m.value('tasker_staleness_tasks_detected_total', { state: 'waiting_for_retry' })).toBe(2);
    expect(m.value('tasker_staleness_tasks_detected_total', { state: 'steps_in_process' })).toBe(0);
    expect(
      m.value('tasker_staleness_tasks_transitioned_to_error_total', {
        original_state: 'waiting_for_retry',
        reason: 'staleness_timeout',
      }),
    ).toBe(2);
    expect(
      m.value('tasker_dlq_entries_created_total', {
        dlq_reason: 'staleness_timeout',
        original_state: 'waiting_for_retry',
      }),
    ).toBe(2);
    // Enriched by detection's request (event), or by the minute's sweep (schedule) when its tick
    // came between detection's commit and that request: 2 in all, whichever did it.
    const enrichedBy = (trigger: string) =>
      m.find('tasker_dlq_entries_enriched_total', { trigger }).reduce((sum, s) => sum + s.value, 0);
    expect(enrichedBy('event') + enrichedBy('schedule')).toBe(2);
    expect(m.value('tasker_dlq_entries_enriched_total', { trigger: 'adhoc' })).toBe(0);
    expect(m.value('tasker_archive_tasks_archived_total')).toBe(3);
    expect(m.value('tasker_archive_rows_archived_total')).toBe(Number(archiveRun.counts!.rows_archived));
    expect(m.value('tasker_archive_batch_timeouts_total')).toBe(0);

    // DLQ gauges: as the table says.
    const { rows: dlq } = await db.pool.query(
      `SELECT count(*)::int AS pending, extract(epoch FROM now() - min(dlq_timestamp))::float AS oldest
         FROM tasker_tasks_dlq WHERE resolution_status = 'pending'`,
    );
    expect(m.value('tasker_dlq_pending_investigations')).toBe(dlq[0].pending);
    expect(dlq[0].pending).toBe(2);
    expect(m.value('tasker_dlq_overdue_investigations')).toBe(0);
    expect(m.value('tasker_dlq_awaiting_enrichment_investigations')).toBe(0);
    expect(Math.abs(m.value('tasker_dlq_oldest_pending_age_seconds') - dlq[0].oldest)).toBeLessThan(5);
    expect(m.value('tasker_metrics_gauges_stale')).toBe(0);
    // Groups (issue 27): the enriched entries' causes, as the groups' table says.
    const { rows: groups } = await db.pool.query(
      `SELECT count(*) FILTER (WHERE pending > 0)::int AS pending_groups,
              count(*) FILTER (WHERE dlq_reason = 'staleness_timeout')::int AS seen
         FROM tasker_dlq_groups`,
    );
    expect(groups[0].pending_groups).toBeGreaterThan(0);
    expect(m.value('tasker_dlq_pending_groups')).toBe(groups[0].pending_groups);
    expect(m.value('tasker_dlq_new_fingerprints_total', { dlq_reason: 'staleness_timeout' })).toBe(
      groups[0].seen,
    );
    expect(m.value('tasker_dlq_new_fingerprints_total', { dlq_reason: 'manual_dlq' })).toBe(0);

    // Queues: a wait time per request taken (the CLI's inline runs have none), the oldest ready
    // request's age, and the dead-lettered requests (the failed and the rejected detection).
    for (const job of JOBS) {
      const taken = runsWhere((r) => r.job_name === job && r.pgboss_job_id !== null).length;
      expect({
        job,
        waits: m.value('tasker_queue_wait_duration_seconds_count', { tasker_queue: job }),
      }).toEqual({
        job,
        waits: taken,
      });
      expect(m.value('tasker_queue_oldest_ready_age_seconds', { tasker_queue: job })).toBe(0);
    }
    const { rows: failedQueue } = await db.pool.query(
      `SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state = 'created'`,
      [`${DETECT}.failed`],
    );
    expect(failedQueue[0].n).toBe(2);
    expect(m.value('tasker_queue_dead_lettered_jobs', { tasker_queue: DETECT })).toBe(2);
    expect(m.value('tasker_queue_dead_lettered_jobs', { tasker_queue: ARCHIVE })).toBe(0);

    // pg-boss's own instruments, with units in their names.
    expect(
      m.find('pgboss_queue_jobs', { messaging_destination_name: DETECT, pgboss_job_state: 'ready' }),
    ).toHaveLength(1);
    expect(m.find('messaging_process_duration_seconds_count').length).toBeGreaterThan(0);
    expect(m.find('messaging_client_operation_duration_seconds_count').length).toBeGreaterThan(0);

    // Process and runtime.
    expect(m.value('process_memory_usage_bytes')).toBeGreaterThan(10_000_000);
    expect(m.find('process_cpu_time_seconds_total').length).toBeGreaterThan(0);
    expect(m.find('v8js_memory_heap_used_bytes').length).toBeGreaterThan(0);
    expect(m.find('nodejs_eventloop_utilization_ratio').length).toBeGreaterThan(0);

    // Prometheus's own linter finds nothing to say.
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect({ status: lint.status, stdout: lint.stdout, stderr: lint.stderr }).toEqual({
      status: 0,
      stdout: '',
      stderr: '',
    });
  } finally {
    worker.kill('SIGTERM');
    const done = await worker.done;
    await client.stop({ graceful: false }).catch(() => undefined);
    expect(done.code).toBe(0);
    // Log lines: the fixed envelope on every run line, the job's counts under `counts`.
    const lines = done.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => typeof l.run_id === 'string');
    const envelope = [
      'job',
      'run_id',
      'pgboss_job_id',
      'attempt',
      'trigger',
      'outcome',
      'duration_ms',
      'worker',
      'pid',
      'version',
      'counts',
    ];
    expect(lines.length).toBeGreaterThanOrEqual(5);
    for (const l of lines) expect(Object.keys(l)).toEqual(expect.arrayContaining(envelope));
    const rejected = lines.find((l) => l.outcome === 'rejected')!;
    expect(rejected).toMatchObject({
      job: DETECT,
      attempt: 1,
      pid: worker.pid,
      version: '0.1.0',
      level: 'warn',
    });
    const archived = lines.find((l) => l.job === ARCHIVE && l.outcome === 'completed')!;
    expect(archived.counts).toMatchObject({ tasks_archived: 3 });
    expect(archived).not.toHaveProperty('tasks_archived');
    const { rows } = await db.pool.query('SELECT duration_ms FROM tasker_job_runs WHERE run_id = $1', [
      archived.run_id,
    ]);
    expect(archived.duration_ms).toBe(rows[0].duration_ms);
  }
}, 180_000);
