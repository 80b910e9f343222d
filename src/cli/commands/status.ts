import { JOBS } from '../../../jobs/index.ts';
import { databaseUrl } from '../../db/pool.ts';
import { archiveRefusals, archiveTotals } from '../../db/queries/archive.ts';
import { PGBOSS_SCHEMA_VERSION, queueDepths } from '../../db/queries/boss-jobs.ts';
import { pendingSummary } from '../../db/queries/dlq.ts';
import { listGroups } from '../../db/queries/dlq-groups.ts';
import { type RunRow, recentRuns } from '../../db/queries/job-runs.ts';
import { databaseNow } from '../../db/queries/server.ts';
import { stalenessHealth } from '../../db/queries/staleness.ts';
import { DRAIN_WINDOW_MINUTES, stormBacklog, stormDrain } from '../../db/queries/storm-backlog.ts';
import { templateLabel } from '../../domain/dlq-groups.ts';
import { createBoss } from '../../worker/boss.ts';
import { startBoss } from '../../worker/process.ts';
import { deadLetterQueue } from '../../worker/worker.ts';
import type { Command } from '../command.ts';
import { formatMinutes, printable, printJson, printTable } from '../output.ts';

/**
 * status: one screen. For each job: its schedule, its last run (when, how long, outcome, counts)
 * and its queue from pg-boss (queued, active, failed, dead-lettered); the workers alive; pending
 * investigations and the oldest one's age; the backlogs a stale storm builds and how fast they
 * drain (stale tasks waiting for detection, entries awaiting enrichment, retrying or given up, and
 * the work of each job's runs over the last DRAIN_WINDOW_MINUTES: src/db/queries/storm-backlog.ts,
 * which the console's Staleness page shows too); staleness health of in-flight tasks; archive
 * totals, and why archival refuses to run, if it does (archive tables that differ from the live
 * ones, a foreign key it relies on), with what to run.
 */

/** The largest groups of pending investigations that status names. */
const STATUS_GROUPS_SHOWN = 3;

export const statusCommand: Command = {
  name: 'status',
  summary:
    "Each job's schedule, last run and queue; workers; investigations; staleness health; archive totals.",
  args: { flags: {} },
  async run({ flags }, { io, runtime }) {
    const rt = runtime.get();
    // This system's tables are read from the replica when one is configured and fresh; pg-boss's
    // (queue counts, schedules, instances) from the primary, where pg-boss lives.
    const replica = await rt.readRouter().status();
    const reads = rt.reads();
    const now = await databaseNow(reads);
    const boss = createBoss(rt.config, databaseUrl(rt.config), 'client', rt.logger);
    await startBoss(boss);
    try {
      const queueNames = JOBS.flatMap((j) => [j.name, deadLetterQueue(j)]);
      // Which queues exist, from pg-boss; their counts live from its job table (getQueues' counts
      // are what its monitor cached, up to worker.monitor_interval_seconds old).
      const queues = new Set((await boss.getQueues(queueNames)).map((q) => q.name));
      const depths = await queueDepths(rt.pool, queueNames);
      const countedAt = await databaseNow(rt.pool);
      // The schedules the workers filed (pgboss.schedule), not this process's configuration.
      const schedules = new Map((await boss.getSchedules()).map((s) => [s.name, s.cron]));
      const instances = await boss.getInstances();
      // Workers of this build recover lost runs only on the pg-boss schema they were written for.
      const bossSchema = await boss.schemaVersion();
      const jobs = [];
      for (const job of JOBS) {
        const [last] = await recentRuns(reads, job.name, 1);
        const depth = depths.get(job.name)!;
        jobs.push({
          job: job.name,
          schedule: schedules.get(job.name) ?? null,
          last_run: last ? describeRun(last) : null,
          queue: queues.has(job.name)
            ? { queued: depth.queued, active: depth.active, failed: depth.failed }
            : null,
          dead_lettered: depths.get(deadLetterQueue(job))!.queued,
        });
      }
      const pending = await pendingSummary(reads, now);
      // The largest incidents: groups by pending entries (tasker_dlq_groups, no scan of the entries).
      const groups = await listGroups(reads, {}, { limit: STATUS_GROUPS_SHOWN, offset: 0 }, now);
      const { stale: waiting, enrichment: backlog } = await stormBacklog(reads, now);
      const drain = await stormDrain(reads, now);
      const minutesSince = (at: Date | null) =>
        at ? Math.floor((now.getTime() - at.getTime()) / 60_000) : null;
      const report = {
        database: rt.target,
        // Where this report's reads of this system's tables came from (database.replica_url).
        replica: {
          configured: replica.configured,
          reads_from: replica.serving,
          lag_seconds: replica.lag_seconds,
          fallback_reason: replica.fallback_reason,
        },
        checked_at: now,
        /** When the queue counts were read from pg-boss's job table (live, not its cached stats). */
        queues_counted_at: countedAt,
        workers: instances
          .filter((i) => i.live && i.supervise)
          .map((i) => ({ host: i.host, pid: i.pid, name: i.name })),
        recovery: {
          enabled: bossSchema === PGBOSS_SCHEMA_VERSION,
          pgboss_schema_version: bossSchema,
          written_for: PGBOSS_SCHEMA_VERSION,
        },
        jobs,
        investigations: {
          pending: pending.pending,
          overdue: pending.overdue,
          awaiting_enrichment: backlog.awaiting,
          oldest_pending_at: pending.oldest_pending_at,
          oldest_pending_minutes: minutesSince(pending.oldest_pending_at),
          groups: groups.total,
          largest_groups: groups.groups.map((g) => ({
            fingerprint: g.fingerprint,
            pending: g.pending,
            template: templateLabel({
              namespace_name: g.template.namespace,
              task_name: g.template.name,
              template_version: g.template.version,
            }),
            diagnosis: g.diagnosis,
          })),
        },
        // What a stale storm leaves waiting, and how fast each job drains it.
        backlog: {
          window_minutes: drain.window_minutes,
          stale_tasks: {
            // By the configured default thresholds, among the STALE_WAITING_CAP in flight longest.
            waiting: waiting.waiting,
            capped: waiting.capped,
            oldest_waiting_minutes: minutesSince(waiting.oldest_entered_at),
            detected: drain.detected,
          },
          enrichment: {
            awaiting: backlog.awaiting,
            oldest_awaiting_minutes: minutesSince(backlog.oldest_awaiting_at),
            retrying: backlog.retrying,
            retry_due: backlog.retry_due,
            given_up: backlog.failed,
            enriched: drain.enriched,
          },
        },
        staleness: await stalenessHealth(reads),
        archive: await archiveTotals(reads),
        // Why every archival run refuses now, each with what to run ([]: it does not; null: this
        // build's migrate has not run here).
        archival_refused_by: await archiveRefusals(reads, 'archival'),
      };
      if (flags.json) return printJson(io.stdout, report);
      const out = io.stdout;
      out.write(
        `database ${report.database}, ${report.workers.length} worker(s) running; queues counted live at ${countedAt.toISOString()}\n`,
      );
      if (replica.configured) {
        const lag = replica.lag_seconds === null ? 'unknown' : `${replica.lag_seconds.toFixed(1)} s`;
        out.write(
          replica.serving === 'replica'
            ? `replica: reads from the replica, lag ${lag}\n`
            : `replica: reads from the primary (${printable(replica.fallback_reason ?? '')}), lag ${lag}\n`,
        );
      }
      out.write(
        report.recovery.enabled
          ? 'recovery of lost runs: on\n\n'
          : `recovery of lost runs: OFF (pg-boss schema ${bossSchema}; this build's queries were written for ${PGBOSS_SCHEMA_VERSION}): runs of lost workers wait for pg-boss's own checks\n\n`,
      );
      printTable(out, jobs, [
        { header: 'job', value: (j) => j.job },
        { header: 'schedule (UTC)', value: (j) => j.schedule ?? 'off' },
        {
          header: 'last run',
          value: (j) =>
            j.last_run ? `${j.last_run.started_at.toISOString()} (${j.last_run.trigger})` : 'never',
        },
        {
          header: 'took',
          value: (j) => (j.last_run?.duration_ms == null ? '-' : `${j.last_run.duration_ms} ms`),
        },
        { header: 'outcome', value: (j) => j.last_run?.outcome ?? (j.last_run ? 'running' : '-') },
        {
          header: 'queued/active/failed',
          value: (j) => (j.queue ? `${j.queue.queued}/${j.queue.active}/${j.queue.failed}` : 'no queue yet'),
        },
        { header: 'dead-lettered', value: (j) => j.dead_lettered },
      ]);
      for (const j of jobs) {
        if (j.last_run?.counts)
          out.write(`  ${j.job} last counts: ${printable(JSON.stringify(j.last_run.counts))}\n`);
        if (j.last_run?.error) out.write(`  ${j.job} last error: ${printable(j.last_run.error)}\n`);
      }
      const inv = report.investigations;
      out.write(
        `\ninvestigations: ${inv.pending} pending${inv.overdue ? ` (${inv.overdue} overdue)` : ''}` +
          `${inv.awaiting_enrichment ? `, ${inv.awaiting_enrichment} awaiting enrichment` : ''}` +
          `${inv.oldest_pending_minutes === null ? '' : `, oldest ${formatMinutes(inv.oldest_pending_minutes)}`}` +
          `${inv.groups ? `, in ${inv.groups} ${inv.groups === 1 ? 'group' : 'groups'} (dlq groups)` : ''}\n`,
      );
      for (const g of inv.largest_groups)
        out.write(
          `  ${g.pending} pending  ${printable(g.template)}  ${printable(g.diagnosis)}  (dlq group ${g.fingerprint})\n`,
        );
      const st = report.backlog.stale_tasks;
      const en = report.backlog.enrichment;
      const window = `in the last ${DRAIN_WINDOW_MINUTES} minutes`;
      out.write(
        `stale tasks waiting for detection: ${st.capped ? 'at least ' : ''}${st.waiting.toLocaleString('en')}` +
          `${st.oldest_waiting_minutes === null ? '' : ` (longest ${formatMinutes(st.oldest_waiting_minutes)} in its state)`}` +
          `; detected ${st.detected.work.toLocaleString('en')} ${window} (${st.detected.per_second}/s)\n`,
      );
      out.write(
        `enrichment: ${en.awaiting.toLocaleString('en')} awaiting` +
          `${en.oldest_awaiting_minutes === null ? '' : ` (oldest ${formatMinutes(en.oldest_awaiting_minutes)})`}` +
          `, ${en.retrying} retrying (${en.retry_due} due), ${en.given_up} given up` +
          `; enriched ${en.enriched.work.toLocaleString('en')} ${window} (${en.enriched.per_second}/s)\n`,
      );
      const s = report.staleness;
      out.write(
        `in-flight tasks: ${s.healthy} healthy, ${s.warning} warning, ${s.stale} stale` +
          `${s.oldest_stale_minutes === null ? '' : ` (longest ${formatMinutes(s.oldest_stale_minutes)} in its state)`}\n`,
      );
      const a = report.archive;
      out.write(
        `archive: ${a.tables.map((t) => `${t.table.replace(/^tasker_|_archive$/g, '')} ${t.exact ? '' : '~'}${t.rows}`).join(', ')}` +
          `${a.last_archived_at ? `; last archived ${a.last_archived_at.toISOString()}` : ''}\n`,
      );
      const refused = report.archival_refused_by ?? [];
      if (refused.length > 0) {
        out.write('archival: REFUSED, every run moves nothing until this is fixed:\n');
        for (const reason of refused) out.write(`  - ${printable(reason)}\n`);
      }
    } finally {
      await boss.stop({ graceful: false });
    }
  },
};

function describeRun(r: RunRow) {
  return {
    started_at: r.started_at,
    trigger: r.trigger,
    duration_ms: r.duration_ms ?? null,
    outcome: r.outcome ?? null,
    counts: r.counts ?? null,
    error: r.error ?? null,
    worker: r.worker,
  };
}
