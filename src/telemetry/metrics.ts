import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  type MeterProvider as ApiMeterProvider,
  context,
  metrics as metricsApi,
  propagation,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { HostMetrics } from '@opentelemetry/host-metrics';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { RuntimeNodeInstrumentation } from '@opentelemetry/instrumentation-runtime-node';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationType, type ViewOptions } from '@opentelemetry/sdk-metrics';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import pg from 'pg';
import type { PgBoss } from 'pg-boss';
import type { Db } from '../db/pool.ts';
import { lastCompletedRun } from '../db/queries/job-runs.ts';
import { STALE_WAITING_CAP } from '../db/queries/staleness-backlog.ts';
import type { ReplicaStatus } from '../db/replica.ts';
import { DLQ_REASONS } from '../domain/dlq.ts';
import { TASK_STATES, TERMINAL_TASK_STATES } from '../domain/task-states.ts';
import { startClusterGauges } from './cluster-gauges.ts';
import type { Logger } from './logger.ts';
import type { RunBatch, RunEnd, RunFailure, RunInterrupted, RunObserver, RunRejected } from './run-events.ts';
import { SERVICE_NAME, SERVICE_VERSION } from './service.ts';

/**
 * OpenTelemetry through @opentelemetry/sdk-node: one NodeSDK per worker process, whose metric
 * reader is the Prometheus exporter served on the worker's /metrics, with a resource
 * (service.name, service.version, service.instance.id), Node runtime and process metrics, and
 * pg-boss's own instruments. Traces are off unless the standard OTEL_TRACES_EXPORTER or
 * OTEL_EXPORTER_OTLP_ENDPOINT ask for them (see docs/metrics.md, "Traces").
 *
 * Names and units follow the OpenTelemetry conventions and render cleanly in Prometheus: the
 * exporter adds `_total` to counters but no unit suffix, so every instrument with a unit is renamed
 * for export by a view that adds it (`tasker.job.duration` in s -> `tasker_job_duration_seconds`),
 * and durations use explicit buckets from 10 ms to 15 min. No label is called `job` (Prometheus's
 * own target label would override it): the job is `tasker_job`, a queue `tasker_queue`.
 *
 * Instruments are fed by subscribing to the run observer (one place sees every run) and, for the
 * gauges, by bounded reads at scrape time. Labels stay low-cardinality; recording never throws
 * into a run. Counters whose label values are known (runs per job x trigger x outcome, tasks per
 * state...) are created at 0 at start, so rate() and increase() see a series' first increment.
 */

/** Explicit histogram buckets for durations, in seconds: 10 ms to 15 min. */
export const DURATION_BUCKETS_SECONDS = [
  0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900,
];

export const RUN_TRIGGERS = ['schedule', 'adhoc', 'event'] as const;

export const RUN_OUTCOMES = ['completed', 'failed', 'interrupted', 'rejected'] as const;
const NON_TERMINAL_STATES = TASK_STATES.filter(
  (s) => !(TERMINAL_TASK_STATES as readonly string[]).includes(s),
);

export interface Metrics {
  /** For pg-boss's `openTelemetry.meterProvider`. */
  meterProvider: ApiMeterProvider;
  /** Spans per run (a no-op tracer unless tracing is on). */
  tracer: Tracer;
  tracing: boolean;
  handleScrape(request: IncomingMessage, response: ServerResponse): void;
  /**
   * Starts the per-queue gauges (oldest ready job's age, dead-lettered jobs) read from pg-boss's
   * queue table (one bounded read of a few rows per scrape), for the jobs' queues.
   */
  watchQueues(boss: PgBoss, jobs: readonly string[], deadLetterOf: (job: string) => string): void;
  /** tasker_worker_recovery_enabled: whether this worker recovers lost runs. */
  setRecoveryEnabled(enabled: boolean): void;
  shutdown(): Promise<void>;
}

export interface MetricsOptions {
  /** The jobs this process runs: their counters start at 0. */
  jobs?: readonly string[];
  /** Seconds between each job's scheduled runs (null: not scheduled), for the not-succeeding alerts. */
  scheduleIntervals?: Readonly<Record<string, number | null>>;
  /** service.instance.id (default: a random UUID per process). */
  instanceId?: string;
  /**
   * Seconds between reads of the DLQ, backlog and group gauges, by the one worker holding their
   * lease (metrics.gauges_interval_seconds; default 15).
   */
  gaugeIntervalSeconds?: number;
  /** Where the gauges are read (the replica when configured and fresh); default the pool. */
  reader?: () => Promise<Db>;
  /** With database.replica_url: its state, for the lag gauges. */
  replicaStatus?: () => Promise<ReplicaStatus>;
  /** The process environment (OTEL_* variables); default process.env. */
  env?: NodeJS.ProcessEnv;
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

/** Whether the standard variables ask for traces (an exporter other than none, or an OTLP endpoint). */
export function tracesRequested(env: NodeJS.ProcessEnv): boolean {
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '' && s !== 'none');
  if (env.OTEL_TRACES_EXPORTER !== undefined && exporters.length === 0) return false;
  return (
    exporters.length > 0 || Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
  );
}

/** The export name of each instrument with a unit: its OTel name plus the Prometheus unit suffix. */
const UNIT_SUFFIXES: Record<string, string> = { s: 'seconds', By: 'bytes', '1': 'ratio' };

function renameWithUnit(instrumentName: string, unit: string, meterName?: string): ViewOptions {
  return {
    instrumentName,
    ...(meterName ? { meterName } : {}),
    name: `${instrumentName}_${UNIT_SUFFIXES[unit]}`,
  };
}

function explicitBuckets(boundaries: number[]) {
  return { type: AggregationType.EXPLICIT_BUCKET_HISTOGRAM as const, options: { boundaries } };
}

export function createMetrics(
  observer: RunObserver,
  pool: pg.Pool,
  logger: Logger,
  options: MetricsOptions = {},
): Metrics {
  const env = options.env ?? process.env;
  const exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
  const tracing = tracesRequested(env);
  // Views: explicit duration buckets, and unit suffixes for Prometheus (ours, pg-boss's, runtime's).
  const durationHistograms = [
    'tasker.job.duration',
    'tasker.staleness.detection.duration',
    'tasker.queue.wait.duration',
    'messaging.client.operation.duration',
    'messaging.process.duration',
    'db.client.operation.duration',
  ];
  const views: ViewOptions[] = [
    ...durationHistograms.map((name) => ({
      ...renameWithUnit(name, 's'),
      aggregation: explicitBuckets(DURATION_BUCKETS_SECONDS),
    })),
    renameWithUnit('tasker.job.last_success.timestamp', 's'),
    renameWithUnit('tasker.job.schedule_interval', 's'),
    renameWithUnit('tasker.worker.start_time', 's'),
    renameWithUnit('tasker.dlq.oldest_pending.age', 's'),
    renameWithUnit('tasker.dlq.oldest_awaiting_enrichment.age', 's'),
    renameWithUnit('tasker.staleness.oldest_waiting.age', 's'),
    renameWithUnit('tasker.metrics.gauges.age', 's'),
    renameWithUnit('tasker.database.replica.lag', 's'),
    renameWithUnit('tasker.queue.oldest_ready.age', 's'),
    // Node runtime (instrumentation-runtime-node) and process (host-metrics) instruments.
    ...['nodejs.eventloop.delay.min', 'nodejs.eventloop.delay.max', 'nodejs.eventloop.delay.mean']
      .concat(['nodejs.eventloop.delay.stddev', 'nodejs.eventloop.delay.p50', 'nodejs.eventloop.delay.p90'])
      .concat(['nodejs.eventloop.delay.p99', 'nodejs.eventloop.time', 'process.cpu.time'])
      .map((name) => renameWithUnit(name, 's')),
    {
      instrumentName: 'v8js.gc.duration',
      name: 'v8js.gc.duration_seconds',
      aggregation: explicitBuckets([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1]),
    },
    ...['v8js.memory.heap.limit', 'v8js.memory.heap.used', 'v8js.memory.heap.space.available_size']
      .concat(['v8js.memory.heap.space.physical_size', 'v8js.memory.heap.space.size', 'process.memory.usage'])
      .map((name) => renameWithUnit(name, 'By')),
    renameWithUnit('nodejs.eventloop.utilization', '1'),
    renameWithUnit('process.cpu.utilization', '1'),
    // Host-wide figures are the node exporter's business, not each worker's.
    {
      meterName: 'host-metrics',
      instrumentName: 'system.*',
      aggregation: { type: AggregationType.DROP as const },
    },
  ];
  // With tracing on, pg's queries (ours and pg-boss's) become spans under the run's span. pg is
  // already loaded (imported before the SDK starts), so its client is patched here directly.
  const pgInstrumentation = tracing ? new PgInstrumentation({ requireParentSpan: true }) : null;
  const runtimeInstrumentation = new RuntimeNodeInstrumentation({ monitoringPrecision: 1000 });
  const sdk = new NodeSDK({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: SERVICE_NAME,
      [ATTR_SERVICE_VERSION]: SERVICE_VERSION,
      'service.instance.id': options.instanceId ?? randomUUID(),
    }),
    // Host, OS and process detectors would put command lines and host names in target_info.
    autoDetectResources: false,
    metricReaders: [exporter],
    views,
    instrumentations: [runtimeInstrumentation, ...(pgInstrumentation ? [pgInstrumentation] : [])],
    // Traces only when asked for: no span processor otherwise (the tracer stays a no-op).
    ...(tracing ? {} : { spanProcessors: [] }),
    // Logs go to winston, not through the SDK.
    logRecordProcessors: [],
  });
  sdk.start();
  if (pgInstrumentation) patchLoadedPg(pgInstrumentation);
  const provider = metricsApi.getMeterProvider();
  const host = new HostMetrics({
    meterProvider: provider,
    name: 'host-metrics',
    metricGroups: ['process.cpu', 'process.memory'],
  });
  host.start();
  const meter = provider.getMeter('tasker-lifecycle', SERVICE_VERSION);
  const tracer = trace.getTracer('tasker-lifecycle', SERVICE_VERSION);
  const jobs = options.jobs ?? [];

  const runs = meter.createCounter('tasker.job.runs', {
    unit: '{run}',
    description:
      'Runs of each job by trigger and outcome: completed; failed; interrupted (worker lost or stopped, the run resumes elsewhere); rejected (its request or options failed validation, it never started).',
  });
  const runDuration = meter.createHistogram('tasker.job.duration', {
    unit: 's',
    description: 'Run duration by job and outcome. Alert when a job nears worker.job_expire_seconds.',
  });
  const lastSuccess = meter.createObservableGauge('tasker.job.last_success.timestamp', {
    unit: 's',
    description:
      'Unix time of the last completed run of each job seen by this worker (from run history at start). Alert when too old for its schedule.',
  });
  const scheduleInterval = meter.createObservableGauge('tasker.job.schedule_interval', {
    unit: 's',
    description:
      "Seconds between a job's scheduled runs in this worker's configuration (absent: not scheduled).",
  });
  const intervals = Object.entries(options.scheduleIntervals ?? {}).filter(
    (e): e is [string, number] => e[1] !== null,
  );
  scheduleInterval.addCallback((result) => {
    for (const [job, seconds] of intervals) result.observe(seconds, { tasker_job: job });
  });
  const startTime = meter.createObservableGauge('tasker.worker.start_time', {
    unit: 's',
    description: 'Unix time this worker process started.',
  });
  const startedAt = Math.round(performance.timeOrigin) / 1000;
  startTime.addCallback((result) => result.observe(startedAt));
  const recovery = meter.createObservableGauge('tasker.worker.recovery_enabled', {
    unit: '1',
    description:
      "1 while this worker's recovery of lost runs is on; 0 when it is off because pg-boss's schema is not the version this build's queries were written for (the worker logs it at error).",
  });
  let recoveryEnabled: boolean | null = null;
  recovery.addCallback((result) => {
    if (recoveryEnabled !== null) result.observe(recoveryEnabled ? 1 : 0);
  });
  const workDone = meter.createCounter('tasker.job.work_done', {
    unit: '{item}',
    description: 'Things runs changed (tasks acted on, entries enriched, task graphs archived), by job.',
  });
  const detectionRuns = meter.createCounter('tasker.staleness.detection_runs', {
    unit: '{run}',
    description: 'Completed detection runs (one per run, not per process start as upstream), by dry_run.',
  });
  const detectionDuration = meter.createHistogram('tasker.staleness.detection.duration', {
    unit: 's',
    description: 'Detection run duration, by dry_run (upstream name; upstream recorded milliseconds).',
  });
  const tasksDetected = meter.createCounter('tasker.staleness.tasks_detected', {
    unit: '{task}',
    description: 'Stale tasks found and acted on, by the state they were stuck in.',
  });
  const tasksErrored = meter.createCounter('tasker.staleness.tasks_transitioned_to_error', {
    unit: '{task}',
    description: 'Stale tasks moved to error by detection, by original state and reason.',
  });
  const entriesCreated = meter.createCounter('tasker.dlq.entries_created', {
    unit: '{entry}',
    description: 'DLQ investigations opened by detection, by reason and original state.',
  });
  const entriesEnriched = meter.createCounter('tasker.dlq.entries_enriched', {
    unit: '{entry}',
    description:
      "DLQ snapshots enriched, by trigger (event: the request of a detection batch; schedule: the sweep). Its rate is enrichment's drain rate.",
  });
  const enrichmentFailures = meter.createCounter('tasker.dlq.enrichment_failures', {
    unit: '{attempt}',
    description:
      'Attempts at enriching one entry that failed on their own (statement timeout or error), by outcome: retry_scheduled (tried again later, with backoff) or gave_up (its last attempt: marked failed for good).',
  });
  const enrichmentRetries = meter.createCounter('tasker.dlq.enrichment_retries', {
    unit: '{attempt}',
    description:
      'Attempts at entries an earlier attempt had failed on, by outcome: enriched, or failed (counted in enrichment_failures too).',
  });
  const tasksArchived = meter.createCounter('tasker.archive.tasks_archived', {
    unit: '{task}',
    description: 'Task graphs moved to the archive tables.',
  });
  const rowsArchived = meter.createCounter('tasker.archive.rows_archived', {
    unit: '{row}',
    description: 'Rows of all archived tables moved to the archive.',
  });
  const archiveTimeouts = meter.createCounter('tasker.archive.batch_timeouts', {
    unit: '{batch}',
    description: 'Archival batches that hit their statement timeout (and were retried smaller).',
  });
  const queueWait = meter.createHistogram('tasker.queue.wait.duration', {
    unit: 's',
    description:
      'Time a run request waited in its queue from when it could start to when a worker took it, by queue.',
  });

  // Series present at 0 from the start: rate(), increase() and alerts see their first increment.
  for (const job of jobs) {
    workDone.add(0, { tasker_job: job });
    for (const trigger of RUN_TRIGGERS)
      for (const outcome of RUN_OUTCOMES) runs.add(0, { tasker_job: job, trigger, outcome });
  }
  for (const dryRun of ['false', 'true']) detectionRuns.add(0, { dry_run: dryRun });
  for (const state of NON_TERMINAL_STATES) {
    tasksDetected.add(0, { state });
    tasksErrored.add(0, { original_state: state, reason: 'staleness_timeout' });
    entriesCreated.add(0, { dlq_reason: 'staleness_timeout', original_state: state });
  }
  for (const trigger of RUN_TRIGGERS) entriesEnriched.add(0, { trigger });
  for (const outcome of ['retry_scheduled', 'gave_up']) enrichmentFailures.add(0, { outcome });
  for (const outcome of ['enriched', 'failed']) enrichmentRetries.add(0, { outcome });
  tasksArchived.add(0);
  rowsArchived.add(0);
  archiveTimeouts.add(0);

  const pending = meter.createObservableGauge('tasker.dlq.pending_investigations', {
    unit: '{entry}',
    description: 'Pending DLQ investigations. Alert when above 50 for 15 minutes (upstream runbook).',
  });
  const overdue = meter.createObservableGauge('tasker.dlq.overdue_investigations', {
    unit: '{entry}',
    description: 'Pending investigations older than dlq.max_pending_age_hours. Alert when above 0.',
  });
  const awaitingEnrichment = meter.createObservableGauge('tasker.dlq.awaiting_enrichment_investigations', {
    unit: '{entry}',
    description:
      'Pending investigations never enriched yet (the enrichment backlog; read from idx_dlq_pending_unenriched only). Alert when it grows faster than it drains.',
  });
  const oldestAwaiting = meter.createObservableGauge('tasker.dlq.oldest_awaiting_enrichment.age', {
    unit: 's',
    description:
      'Age of the oldest pending investigation never enriched (0 when none): how far enrichment is behind.',
  });
  const retrying = meter.createObservableGauge('tasker.dlq.enrichment_retrying_investigations', {
    unit: '{entry}',
    description:
      'Pending investigations whose enrichment failed and will be tried again (idx_dlq_enrichment_retries), by due: true when the next attempt is due now.',
  });
  const enrichmentFailed = meter.createObservableGauge('tasker.dlq.enrichment_failed_investigations', {
    unit: '{entry}',
    description:
      'Pending investigations whose enrichment was given up after dlq.enrichment.max_attempts failed attempts (only the detection snapshot is there).',
  });
  const oldestAge = meter.createObservableGauge('tasker.dlq.oldest_pending.age', {
    unit: 's',
    description: 'Age of the oldest pending investigation (0 when none).',
  });
  const staleWaiting = meter.createObservableGauge('tasker.staleness.waiting_tasks', {
    unit: '{task}',
    description: `In-flight tasks in their state longer than its configured default threshold: stale tasks detection has not reached yet (template thresholds and lifetimes not applied). Counted among the ${STALE_WAITING_CAP.toLocaleString('en')} candidates in flight longest (idx_task_transitions_in_flight), so it saturates there. Alert when it grows faster than it drains.`,
  });
  const oldestWaiting = meter.createObservableGauge('tasker.staleness.oldest_waiting.age', {
    unit: 's',
    description:
      'How long the longest-waiting of those tasks has been in its state (0 when none): past its threshold by about one detection interval when detection keeps up.',
  });
  const pendingGroups = meter.createObservableGauge('tasker.dlq.pending_groups', {
    unit: '{group}',
    description:
      'Groups of pending investigations: distinct causes (failure fingerprints) with at least one pending entry (tasker_dlq_groups; read from its rows, not by counting entries).',
  });
  const newFingerprints = meter.createObservableCounter('tasker.dlq.new_fingerprints', {
    unit: '{fingerprint}',
    description:
      'Failure fingerprints (causes) seen since install, by reason: it goes up when a new failure signature appears. Read from the database (tasker_dlq_groups), so every worker reports the same value: take max. Alert on its increase.',
  });
  const stale = meter.createObservableGauge('tasker.metrics.gauges_stale', {
    unit: '{flag}',
    description:
      "1 when this worker's last read of the DLQ and backlog gauges failed (database away), or when nobody has read them for 3 intervals (tasker_metrics_gauges_age_seconds), and they show the last values read; 0 when fresh. Alert when 1 for 5 minutes.",
  });
  const age = meter.createObservableGauge('tasker.metrics.gauges.age', {
    unit: 's',
    description:
      'Seconds since the DLQ, backlog and group gauges were read (one worker reads them per metrics.gauges_interval_seconds and every worker exports them; take min). Above 3 intervals nobody is reading them.',
  });
  const gaugeHolder = meter.createObservableGauge('tasker.metrics.gauges_holder', {
    unit: '{flag}',
    description:
      '1 on the worker that holds the gauges lease and reads the DLQ, backlog and group gauges for the cluster; 0 on the others.',
  });
  const replicaLag = meter.createObservableGauge('tasker.database.replica.lag', {
    unit: 's',
    description:
      "With database.replica_url: how far the replica's replay is behind the primary (pg_last_xact_replay_timestamp; 0 when it has replayed all it received), measured with the gauges. Absent while the replica cannot be read.",
  });
  const replicaReads = meter.createObservableGauge('tasker.database.replica_reads', {
    unit: '{flag}',
    description:
      'With database.replica_url: 1 while read-only work goes to the replica, 0 while it falls back to the primary (unreachable, or lagging more than database.replica_max_lag_seconds).',
  });
  // Read once per cluster per interval (src/telemetry/cluster-gauges.ts); every worker reports
  // the stored readings. A failed check reports the last values again (marked stale) rather than
  // dropping the gauges, so dashboards and alerts do not see investigations vanish with the
  // database.
  const gaugeIntervalSeconds = options.gaugeIntervalSeconds ?? 15;
  const cluster = startClusterGauges({
    pool,
    ...(options.reader ? { reader: options.reader } : {}),
    ...(options.replicaStatus ? { replicaStatus: options.replicaStatus } : {}),
    intervalSeconds: gaugeIntervalSeconds,
    ...(options.instanceId ? { holder: options.instanceId } : {}),
    logger,
  });
  meter.addBatchObservableCallback(
    async (result) => {
      const { readings: last, ageSeconds, holder, failing } = await cluster.state();
      if (last) {
        // An age read a while ago has grown since: exported as of now (0 stays 0: none waiting).
        const grown = (seconds: number) => (seconds > 0 ? seconds + (ageSeconds ?? 0) : 0);
        result.observe(pending, last.pending);
        result.observe(overdue, last.overdue);
        result.observe(awaitingEnrichment, last.awaiting);
        result.observe(oldestAwaiting, grown(last.oldestAwaitingSeconds));
        result.observe(retrying, last.retrying - last.retryDue, { due: 'false' });
        result.observe(retrying, last.retryDue, { due: 'true' });
        result.observe(enrichmentFailed, last.failed);
        result.observe(oldestAge, grown(last.oldestSeconds));
        result.observe(staleWaiting, last.staleWaiting);
        result.observe(oldestWaiting, grown(last.oldestWaitingSeconds));
        result.observe(pendingGroups, last.pendingGroups);
        // Every reason, 0 until its first fingerprint: increase() sees the first one appear.
        for (const reason of DLQ_REASONS)
          result.observe(newFingerprints, last.fingerprints[reason] ?? 0, { dlq_reason: reason });
      }
      if (ageSeconds !== null) result.observe(age, ageSeconds);
      if (last?.replica) {
        if (last.replica.lagSeconds !== null) result.observe(replicaLag, last.replica.lagSeconds);
        result.observe(replicaReads, last.replica.serving === 'replica' ? 1 : 0);
      }
      result.observe(gaugeHolder, holder ? 1 : 0);
      // Stale: this worker could not check, or nobody has read them for 3 intervals.
      const old = ageSeconds !== null && ageSeconds > 3 * gaugeIntervalSeconds;
      result.observe(stale, failing || old ? 1 : 0);
    },
    [
      pending,
      overdue,
      awaitingEnrichment,
      oldestAwaiting,
      retrying,
      enrichmentFailed,
      oldestAge,
      staleWaiting,
      oldestWaiting,
      pendingGroups,
      newFingerprints,
      stale,
      age,
      gaugeHolder,
      replicaLag,
      replicaReads,
    ],
  );

  // Last success per job: seeded from run history (a restarted worker still knows), then kept.
  const lastSuccessAt = new Map<string, number>();
  const seeded = Promise.all(
    jobs.map(async (job) => {
      try {
        const at = await lastCompletedRun(pool, job);
        if (at && !lastSuccessAt.has(job)) lastSuccessAt.set(job, at.getTime() / 1000);
      } catch (err) {
        logger.debug('metrics: could not read the last completed runs', { error: (err as Error).message });
      }
    }),
  );
  lastSuccess.addCallback(async (result) => {
    await seeded;
    for (const [job, at] of lastSuccessAt) result.observe(at, { tasker_job: job });
  });

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
    workDone.add(r.work_done, { tasker_job: r.job });
    const c = r.counts;
    if (r.job === 'tasker.detect-stale-tasks') recordDetectedTasks(r.result as DetectionResult);
    if (r.job === 'tasker.enrich-dlq-snapshots') {
      entriesEnriched.add(Number(c.enriched ?? 0), { trigger: r.trigger });
      const failed = Number(c.failed ?? 0);
      const gaveUp = Number(c.gave_up ?? 0);
      enrichmentFailures.add(failed - gaveUp, { outcome: 'retry_scheduled' });
      enrichmentFailures.add(gaveUp, { outcome: 'gave_up' });
      enrichmentRetries.add(Number(c.retried ?? 0), { outcome: 'enriched' });
      enrichmentRetries.add(Number(c.failed_retries ?? 0), { outcome: 'failed' });
    }
    if (r.job === 'tasker.archive-finished-tasks' && c.dry_run !== true) {
      tasksArchived.add(Number(c.tasks_archived ?? 0));
      rowsArchived.add(Number(c.rows_archived ?? 0));
      archiveTimeouts.add(Number(c.timeouts ?? 0));
    }
  };
  const recordWait = (r: { job: string; wait_seconds: number | null }) => {
    if (r.wait_seconds !== null) queueWait.record(r.wait_seconds, { tasker_queue: r.job });
  };
  observer.on('start', (r) => safely(r.job, () => recordWait(r)));
  observer.on('batch', (r: RunBatch) => safely(r.job, () => recordWork(r)));
  observer.on('end', (r: RunEnd) =>
    safely(r.job, () => {
      runs.add(1, { tasker_job: r.job, trigger: r.trigger, outcome: 'completed' });
      runDuration.record(r.duration_ms / 1000, { tasker_job: r.job, outcome: 'completed' });
      lastSuccessAt.set(r.job, (r.started_at.getTime() + r.duration_ms) / 1000);
      if (r.job === 'tasker.detect-stale-tasks')
        recordDetectionRun(r.result as DetectionResult, r.duration_ms);
      if (!r.batches_reported) recordWork(r);
    }),
  );
  observer.on('interrupted', (r: RunInterrupted) =>
    safely(r.job, () => {
      runs.add(1, { tasker_job: r.job, trigger: r.trigger, outcome: 'interrupted' });
      if (r.duration_ms !== null)
        runDuration.record(r.duration_ms / 1000, { tasker_job: r.job, outcome: 'interrupted' });
    }),
  );
  observer.on('failure', (r: RunFailure) =>
    safely(r.job, () => {
      runs.add(1, { tasker_job: r.job, trigger: r.trigger, outcome: 'failed' });
      runDuration.record(r.duration_ms / 1000, { tasker_job: r.job, outcome: 'failed' });
    }),
  );
  observer.on('rejected', (r: RunRejected) =>
    safely(r.job, () => {
      runs.add(1, { tasker_job: r.job, trigger: r.trigger, outcome: 'rejected' });
      runDuration.record(r.duration_ms / 1000, { tasker_job: r.job, outcome: 'rejected' });
    }),
  );

  function recordDetectionRun(d: DetectionResult, durationMs: number) {
    const dryRun = String(d.dry_run);
    detectionRuns.add(1, { dry_run: dryRun });
    detectionDuration.record(durationMs / 1000, { dry_run: dryRun });
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

  const oldestReady = meter.createObservableGauge('tasker.queue.oldest_ready.age', {
    unit: 's',
    description:
      "How long the oldest run request ready to start has waited in each job's queue, as of pg-boss's last monitor pass (persistQueueStats).",
  });
  const deadLettered = meter.createObservableGauge('tasker.queue.dead_lettered_jobs', {
    unit: '{job}',
    description:
      "Run requests that exhausted their retries and wait in the job's dead-letter queue (<job>.failed), by the job's queue.",
  });

  let shutDown = false;
  return {
    meterProvider: provider,
    tracer,
    tracing,
    handleScrape: (request, response) => exporter.getMetricsRequestHandler(request, response),
    setRecoveryEnabled: (enabled) => {
      recoveryEnabled = enabled;
    },
    watchQueues(boss, queueJobs, deadLetterOf) {
      const names = queueJobs.flatMap((j) => [j, deadLetterOf(j)]);
      meter.addBatchObservableCallback(
        async (result) => {
          try {
            const queues = new Map((await boss.getQueues(names)).map((q) => [q.name, q]));
            for (const job of queueJobs) {
              const q = queues.get(job);
              if (q && q.readyOldestSeconds !== null && q.readyOldestSeconds !== undefined)
                result.observe(oldestReady, Number(q.readyOldestSeconds), { tasker_queue: job });
              const dlq = queues.get(deadLetterOf(job));
              if (dlq) result.observe(deadLettered, Number(dlq.queuedCount), { tasker_queue: job });
            }
          } catch (err) {
            logger.debug('metrics: could not read the queue gauges', { error: (err as Error).message });
          }
        },
        [oldestReady, deadLettered],
      );
    },
    shutdown: async () => {
      if (shutDown) return;
      shutDown = true;
      // NodeSDK.shutdown leaves instrumentations enabled (the runtime one keeps a timer).
      await cluster.stop();
      runtimeInstrumentation.disable();
      pgInstrumentation?.disable();
      await sdk.shutdown();
      // Unregistered, so another SDK can start in the same process (tests, library use).
      metricsApi.disable();
      trace.disable();
      propagation.disable();
      context.disable();
    },
  };
}

/** Seconds between runs of a cron expression of src/worker/cron.ts (null: not one of its forms). */
export function cronIntervalSeconds(cron: string | null): number | null {
  if (cron === null) return null;
  if (cron === '* * * * *') return 60;
  if (cron === '0 * * * *') return 3600;
  if (cron === '0 0 * * *') return 86400;
  if (cron === '0 0 * * 0') return 7 * 86400;
  const minutes = /^\*\/(\d+) \* \* \* \*$/.exec(cron);
  if (minutes) return Number(minutes[1]) * 60;
  const hours = /^0 \*\/(\d+) \* \* \*$/.exec(cron);
  if (hours) return Number(hours[1]) * 3600;
  return null;
}

/** Applies instrumentation-pg to the pg module already loaded (its require hook only sees later loads). */
function patchLoadedPg(instrumentation: PgInstrumentation): void {
  const definition = instrumentation.getModuleDefinitions().find((d) => d.name === 'pg');
  const version = (pg as unknown as { version?: string }).version;
  definition?.patch?.(pg, version);
}
