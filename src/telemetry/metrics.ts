import type { IncomingMessage, ServerResponse } from 'node:http';
import type { MeterProvider as ApiMeterProvider } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import type pg from 'pg';
import { pendingSummary } from '../db/queries/dlq.ts';
import { databaseNow } from '../db/queries/server.ts';
import type { RunBatch, RunEnd, RunFailure, RunInterrupted, RunObserver } from '../worker/observe.ts';
import type { Logger } from './logger.ts';

/**
 * OpenTelemetry metrics, exported for Prometheus on the worker's /metrics. Every instrument is
 * defined here; they are fed by subscribing to the run observer (one place sees every run) and, for
 * gauges, by a bounded read of the database at scrape time. Labels stay low-cardinality (job,
 * outcome, state, reason), never task or entry ids. Recording never throws into a run.
 *
 * Instrument names follow upstream's (tasker.staleness.*, tasker.dlq.*, tasker.archive.*); in
 * Prometheus the dots become underscores (tasker_dlq_entries_created_total). pg-boss's own
 * instruments (pgboss.queue.jobs, messaging.*) come through the same provider.
 */

export interface Metrics {
  /** For pg-boss's `openTelemetry.meterProvider`. */
  meterProvider: ApiMeterProvider;
  handleScrape(request: IncomingMessage, response: ServerResponse): void;
  shutdown(): Promise<void>;
}

interface DetectionResult {
  dry_run: boolean;
  tasks: Array<{
    current_state: string;
    dlq_reason: string | null;
    moved_to_dlq: boolean;
    transition_success: boolean;
  }>;
}

export function createMetrics(observer: RunObserver, pool: pg.Pool, logger: Logger): Metrics {
  const exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
  const provider = new MeterProvider({ readers: [exporter] });
  const meter = provider.getMeter('tasker-lifecycle');

  const runs = meter.createCounter('tasker.job.runs', {
    unit: '{run}',
    description:
      'Runs of each job by trigger and outcome (completed, failed, interrupted: worker lost or stopped, the run resumes elsewhere). Alert when outcome="failed" grows.',
  });
  const runDuration = meter.createHistogram('tasker.job.duration', {
    unit: 's',
    description: 'Run duration by job and outcome. Alert when a job nears worker.job_expire_seconds.',
  });
  const workDone = meter.createCounter('tasker.job.work_done', {
    unit: '{item}',
    description: 'Things runs changed (tasks acted on, entries enriched, task graphs archived), by job.',
  });
  const detectionRuns = meter.createCounter('tasker.staleness.detection_runs.total', {
    unit: '{run}',
    description: 'Detection runs (one per run, not per process start as upstream), by dry_run.',
  });
  const detectionDuration = meter.createHistogram('tasker.staleness.detection.duration', {
    unit: 'ms',
    description: 'Detection run duration. Alert when above 5000 ms for 5 minutes (upstream runbook).',
  });
  const tasksDetected = meter.createCounter('tasker.staleness.tasks_detected.total', {
    unit: '{task}',
    description: 'Stale tasks found, by the state they were stuck in. Alert on rate above 10 per 5 minutes.',
  });
  const tasksErrored = meter.createCounter('tasker.staleness.tasks_transitioned_to_error.total', {
    unit: '{task}',
    description: 'Stale tasks moved to error by detection, by original state and reason.',
  });
  const entriesCreated = meter.createCounter('tasker.dlq.entries_created.total', {
    unit: '{entry}',
    description: 'DLQ investigations opened by detection, by reason and original state.',
  });
  const entriesEnriched = meter.createCounter('tasker.dlq.entries_enriched.total', {
    unit: '{entry}',
    description: 'DLQ snapshots enriched, by trigger (event: per-entry request; schedule: the sweep).',
  });
  const tasksArchived = meter.createCounter('tasker.archive.tasks_archived.total', {
    unit: '{task}',
    description: 'Task graphs moved to the archive tables.',
  });
  const rowsArchived = meter.createCounter('tasker.archive.rows_archived.total', {
    unit: '{row}',
    description: 'Rows of all archived tables moved to the archive.',
  });
  const archiveTimeouts = meter.createCounter('tasker.archive.batch_timeouts.total', {
    unit: '{batch}',
    description:
      'Archival batches that hit their statement timeout (and were retried smaller). Alert when it keeps growing.',
  });

  const pending = meter.createObservableGauge('tasker.dlq.pending_investigations', {
    unit: '{entry}',
    description: 'Pending DLQ investigations. Alert when above 50 for 15 minutes (upstream runbook).',
  });
  const overdue = meter.createObservableGauge('tasker.dlq.overdue_investigations', {
    unit: '{entry}',
    description: 'Pending investigations older than dlq.max_pending_age_hours. Alert when above 0.',
  });
  const oldestAge = meter.createObservableGauge('tasker.dlq.oldest_pending_age_hours', {
    unit: 'h',
    description: 'Age of the oldest pending investigation.',
  });
  const stale = meter.createObservableGauge('tasker.metrics.gauges_stale', {
    unit: '{flag}',
    description:
      '1 when the last read of the DLQ gauges failed (database away) and they show the last values read; 0 when fresh. Alert when 1 for 5 minutes.',
  });
  // The last good reading: a failed read reports it again (marked stale) rather than dropping the
  // gauges, so dashboards and alerts do not see investigations vanish with the database.
  let last: { pending: number; overdue: number; oldestHours: number } | null = null;
  let failing = false;
  meter.addBatchObservableCallback(
    async (result) => {
      try {
        const [summary, now] = await Promise.all([pendingSummary(pool, new Date()), databaseNow(pool)]);
        last = {
          pending: summary.pending,
          overdue: summary.overdue,
          oldestHours: summary.oldest_pending_at
            ? (now.getTime() - summary.oldest_pending_at.getTime()) / 3_600_000
            : 0,
        };
        if (failing) logger.info('metrics: DLQ gauges read again');
        failing = false;
      } catch (err) {
        if (!failing) {
          logger.warn('metrics: could not read the DLQ gauges; reporting the last values, marked stale', {
            error: (err as Error).message,
          });
        }
        failing = true;
      }
      if (last) {
        result.observe(pending, last.pending);
        result.observe(overdue, last.overdue);
        result.observe(oldestAge, last.oldestHours);
      }
      result.observe(stale, failing ? 1 : 0);
    },
    [pending, overdue, oldestAge, stale],
  );

  const safely = (what: string, record: () => void) => {
    try {
      record();
    } catch (err) {
      // Metrics must never break the run they observe.
      logger.debug(`metrics: could not record ${what}`, { error: (err as Error).message });
    }
  };

  // What runs did is counted as it happens: per batch for jobs that report their batches (so the
  // work of a run that later fails or is cut off is counted), else at the end of the run.
  const recordWork = (r: {
    job: string;
    trigger: string;
    work_done: number;
    counts: Record<string, unknown>;
    result: unknown;
  }) => {
    workDone.add(r.work_done, { job: r.job });
    const c = r.counts;
    if (r.job === 'tasker.detect-stale-tasks') recordDetectedTasks(r.result as DetectionResult);
    if (r.job === 'tasker.enrich-dlq-snapshots')
      entriesEnriched.add(Number(c.enriched ?? 0), { trigger: r.trigger });
    if (r.job === 'tasker.archive-finished-tasks' && c.dry_run !== true) {
      tasksArchived.add(Number(c.tasks_archived ?? 0));
      rowsArchived.add(Number(c.rows_archived ?? 0));
      archiveTimeouts.add(Number(c.timeouts ?? 0));
    }
  };
  observer.on('batch', (r: RunBatch) => safely(r.job, () => recordWork(r)));
  observer.on('end', (r: RunEnd) =>
    safely(r.job, () => {
      runs.add(1, { job: r.job, trigger: r.trigger, outcome: 'completed' });
      runDuration.record(r.duration_ms / 1000, { job: r.job, outcome: 'completed' });
      if (r.job === 'tasker.detect-stale-tasks')
        recordDetectionRun(r.result as DetectionResult, r.duration_ms);
      if (!r.batches_reported) recordWork(r);
    }),
  );
  observer.on('interrupted', (r: RunInterrupted) =>
    safely(r.job, () => {
      runs.add(1, { job: r.job, trigger: r.trigger, outcome: 'interrupted' });
      if (r.duration_ms !== null)
        runDuration.record(r.duration_ms / 1000, { job: r.job, outcome: 'interrupted' });
    }),
  );
  observer.on('failure', (r: RunFailure) =>
    safely(r.job, () => {
      runs.add(1, { job: r.job, trigger: r.trigger, outcome: 'failed' });
      runDuration.record(r.duration_ms / 1000, { job: r.job, outcome: 'failed' });
    }),
  );

  function recordDetectionRun(d: DetectionResult, durationMs: number) {
    const dryRun = String(d.dry_run);
    detectionRuns.add(1, { dry_run: dryRun });
    detectionDuration.record(durationMs, { dry_run: dryRun });
  }

  function recordDetectedTasks(d: DetectionResult) {
    if (d.dry_run) return;
    for (const t of d.tasks) {
      tasksDetected.add(1, { state: t.current_state });
      if (t.transition_success)
        tasksErrored.add(1, { original_state: t.current_state, reason: t.dlq_reason ?? 'staleness_timeout' });
      if (t.moved_to_dlq)
        entriesCreated.add(1, { dlq_reason: t.dlq_reason ?? 'unknown', original_state: t.current_state });
    }
  }

  return {
    meterProvider: provider,
    handleScrape: (request, response) => exporter.getMetricsRequestHandler(request, response),
    shutdown: () => provider.shutdown(),
  };
}
