import type { RunRow } from '../../db/queries/job-runs.ts';

/**
 * A run's counts as an operator reads them ("would archive 2,250 tasks (13,500 rows) in 3
 * batches"), and the history rows of one run put together: a run that stops early hands the rest
 * on to a new pg-boss job (counts.handed_on_to), and one job may be attempted more than once, yet
 * it is one run of the job, started once.
 */

const n = (v: unknown) => (typeof v === 'number' ? v : 0);
export const count = (v: number) => v.toLocaleString('en-US');
const plural = (v: number, one: string, many: string) => `${count(v)} ${v === 1 ? one : many}`;

/** The counts of a run (or of a chain of runs, summed) in words; the job's name picks the words. */
export function countsInWords(job: string, counts: unknown): string {
  if (counts === null || counts === undefined || typeof counts !== 'object') return '—';
  const c = counts as Record<string, unknown>;
  const dry = c.dry_run === true;
  const batches = n(c.batches);
  const inBatches = batches > 0 ? ` in ${plural(batches, 'batch', 'batches')}` : '';
  if (job.endsWith('archive-finished-tasks')) {
    if (c.stopped_by === 'no_matching_template') return 'nothing: no template matches its filter';
    const tasks = n(c.tasks_archived);
    const rows = n(c.rows_archived);
    const verb = dry ? 'would archive' : 'archived';
    const stop =
      c.stopped_by === 'max_batches'
        ? '; stopped at its max batches with more to do'
        : c.stopped_by === 'aborted'
          ? '; stopped between batches'
          : '';
    const skipped =
      n(c.tasks_skipped) > 0 ? `; ${count(n(c.tasks_skipped))} passed over (held elsewhere)` : '';
    return `${verb} ${plural(tasks, 'task', 'tasks')} (${plural(rows, 'row', 'rows')})${inBatches}${skipped}${stop}`;
  }
  if (job.endsWith('detect-stale-tasks')) {
    const found = n(c.tasks_detected);
    if (dry)
      return found === 0
        ? `would act on no task${inBatches}`
        : `would act on ${plural(found, 'stale task', 'stale tasks')}${inBatches}`;
    if (found === 0) return `found no stale task${inBatches}`;
    const parts = [
      `${count(n(c.transitioned_to_error))} moved to error`,
      `${plural(n(c.dlq_entries_created), 'investigation', 'investigations')} opened`,
    ];
    if (n(c.failures) > 0) parts.push(`${count(n(c.failures))} not as planned`);
    return `found ${plural(found, 'stale task', 'stale tasks')}: ${parts.join(', ')}${inBatches}`;
  }
  if (job.endsWith('enrich-dlq-snapshots')) {
    const parts = [`enriched ${plural(n(c.enriched), 'entry', 'entries')}`];
    if (n(c.failed) > 0) parts.push(`${count(n(c.failed))} failed`);
    if (n(c.truncated) > 0) parts.push(`${count(n(c.truncated))} cut to fit`);
    return parts.join(', ');
  }
  return Object.entries(c)
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => `${k} ${count(v as number)}`)
    .join(', ');
}

/** Template problems a detection run reported: "demo/nightly_report: max_… got \"soon\"". */
export function templateProblems(counts: unknown): Array<{ template: string; problems: string[] }> {
  const p = (counts as { template_problems?: unknown } | null | undefined)?.template_problems;
  if (typeof p !== 'object' || p === null) return [];
  return Object.entries(p as Record<string, unknown>).map(([template, problems]) => ({
    template,
    problems: Array.isArray(problems) ? problems.map(String) : [String(problems)],
  }));
}

/** One run as started: its history rows (attempts and the links it handed on to), oldest first. */
export interface RunGroup {
  rows: RunRow[];
  /** The pg-boss job of its first link: the run page follows the chain from there. */
  first_job_id: string | null;
  started_at: Date;
  trigger: string;
  /** Of its last row: completed, failed, interrupted, rejected, or null (running). */
  outcome: string | null;
  /** Sum of the rows' durations. */
  duration_ms: number | null;
  /** Numbers summed over the rows; flags and words from the last row. */
  counts: Record<string, unknown> | null;
  error: string | null;
  /** pg-boss jobs it ran as, or handed its work on to (more than one: it handed its work on). */
  links: number;
}

/**
 * The newest runs first, each chain of hand-ons and each job's attempts as one group. Rows whose
 * chain started before the oldest row read are grouped with what was read.
 */
export function groupRuns(newestFirst: readonly RunRow[]): RunGroup[] {
  const rows = [...newestFirst].reverse();
  const groupOf = new Map<string, RunRow[]>(); // pg-boss job id -> its group's rows
  const groups: RunRow[][] = [];
  for (const row of rows) {
    const id = row.pgboss_job_id;
    let group = id ? groupOf.get(id) : undefined;
    if (!group) {
      group = [];
      groups.push(group);
      if (id) groupOf.set(id, group);
    }
    group.push(row);
    const next = (row.counts as { handed_on_to?: unknown } | null | undefined)?.handed_on_to;
    if (typeof next === 'string' && !groupOf.has(next)) groupOf.set(next, group);
  }
  return groups.map((g) => summarize(g)).sort((a, b) => b.started_at.getTime() - a.started_at.getTime());
}

function summarize(rows: RunRow[]): RunGroup {
  const last = rows.at(-1)!;
  const counts: Record<string, unknown> = {};
  let any = false;
  for (const r of rows) {
    if (!r.counts || typeof r.counts !== 'object') continue;
    any = true;
    for (const [k, v] of Object.entries(r.counts as Record<string, unknown>)) {
      counts[k] = typeof v === 'number' ? n(counts[k]) + v : v;
    }
  }
  const durations = rows.map((r) => r.duration_ms).filter((d): d is number => typeof d === 'number');
  return {
    rows,
    first_job_id: rows[0]!.pgboss_job_id,
    started_at: rows[0]!.started_at,
    trigger: rows[0]!.trigger,
    outcome: last.outcome ?? null,
    duration_ms: durations.length === 0 ? null : durations.reduce((a, b) => a + b, 0),
    counts: any ? counts : null,
    error: last.error ?? null,
    links: new Set([
      ...rows.map((r) => r.pgboss_job_id ?? r.run_id),
      ...rows
        .map((r) => (r.counts as { handed_on_to?: unknown } | null | undefined)?.handed_on_to)
        .filter((id): id is string => typeof id === 'string'),
    ]).size,
  };
}
