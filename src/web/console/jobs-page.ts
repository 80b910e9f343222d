import archiveFinishedTasks from '../../../jobs/archive-finished-tasks.ts';
import detectStaleTasks from '../../../jobs/detect-stale-tasks.ts';
import type { ReplicaStatus } from '../../db/replica.ts';
import { nextCronTime } from '../../domain/cron.ts';
import type { JobState } from '../job-states.ts';
import { formatTime, html, jsonPreview, type SafeHtml } from './html.ts';
import { csrfInput, type PageContext } from './layout.ts';
import { refreshToggle } from './queue-page.ts';
import { countsInWords, groupRuns, templateProblems } from './run-words.ts';

/**
 * Jobs: each job's schedule and when it runs next, its queue (counted live, stamped with the time),
 * its last runs (a run that handed its work on to further runs is one row, linked to its page; key
 * counts in words), template problems a detection run met, dead-lettered runs with their error and
 * "Retry", and, in the job's own card, the form to queue a run of it. The live part of each card
 * refreshes itself (the switch at the top turns that off). Retry and the forms need jobs:run; they
 * go through the audited operations of the API.
 */

export const JOBS_REFRESH_SECONDS = 10;

function errorLine(error: unknown): string {
  if (error === null || error === undefined) return '—';
  if (typeof error === 'object' && typeof (error as { message?: unknown }).message === 'string')
    return (error as { message: string }).message;
  return jsonPreview(error, 300).text;
}

/** How long ago, or how far ahead, in words. */
function relative(at: Date, now: Date): string {
  const minutes = Math.round((at.getTime() - now.getTime()) / 60_000);
  const abs = Math.abs(minutes);
  const text = abs < 1 ? 'less than a minute' : abs < 120 ? `${abs} min` : `${Math.round(abs / 60)} h`;
  return minutes >= 0 ? `in ${text}` : `${text} ago`;
}

/** The part of a job's card that refreshes: schedule, queue, last runs, dead letters. */
export function jobLive(ctx: PageContext, s: JobState, now: Date): SafeHtml {
  const mayRun = ctx.deps.can(ctx.principal, 'jobs:run');
  const next = s.schedule ? nextCronTime(s.schedule, now) : undefined;
  const groups = groupRuns(s.last_runs).slice(0, 5);
  const problems = groups.flatMap((g) => templateProblems(g.counts));
  const seen = new Set<string>();
  const uniqueProblems = problems.filter((p) => !seen.has(p.template) && seen.add(p.template));
  return html`<dl class="kv"><dt>Schedule (UTC)</dt><dd>${s.schedule ? html`<code>${s.schedule}</code>${next ? html`; next run <time datetime="${next.toISOString()}" class="next-run">${formatTime(next)}</time> (${relative(next, now)})` : ''}` : 'not scheduled'}</dd>
<dt>Queue</dt><dd class="queue-counts">${s.queue ? `${s.queue.queued} waiting, ${s.queue.active} running, ${s.queue.failed} failed` : 'no queue'} <span class="muted">(counted live at ${formatTime(now)})</span></dd>
<dt>Dead-lettered</dt><dd>${s.dead_lettered} waiting in ${s.dead_letter_queue}</dd></dl>
${
  uniqueProblems.length > 0
    ? html`<div class="notice error" role="alert"><p><strong>Malformed lifecycle settings</strong> (detection ignored them and used the global defaults):</p><ul class="template-problems">${uniqueProblems.map(
        (p) => html`<li><strong>${p.template}</strong>: ${p.problems.join('; ')}</li>`,
      )}</ul></div>`
    : ''
}
<h3>Last runs</h3>
${
  groups.length === 0
    ? html`<p class="muted">No runs yet.</p>`
    : html`<div class="table-wrap"><table class="responsive runs"><thead><tr><th scope="col">Started</th><th scope="col">Run</th><th scope="col">Trigger</th><th scope="col">Outcome</th><th scope="col">Duration</th><th scope="col">What it did</th></tr></thead><tbody>${groups.map(
        (g) => html`<tr><td data-label="Started">${formatTime(g.started_at)}</td>
<td data-label="Run">${g.first_job_id ? html`<a href="/jobs/${s.job}/runs/${g.first_job_id}">${g.first_job_id.slice(0, 8)}</a>` : html`<span class="muted">inline (CLI)</span>`}${g.links > 1 ? html` <span class="badge muted">${g.links} jobs, handed on</span>` : ''}</td>
<td data-label="Trigger">${g.trigger}</td>
<td data-label="Outcome">${g.outcome ?? 'running'}${g.error ? html`<br><span class="muted">${g.error}</span>` : ''}</td>
<td data-label="Duration">${g.duration_ms === null ? '—' : `${g.duration_ms.toLocaleString('en-US')} ms`}</td><td data-label="What it did" class="run-words">${countsInWords(s.job, g.counts)}</td></tr>`,
      )}</tbody></table></div>`
}
${
  s.dead_lettered_runs.length > 0
    ? html`<h3>Dead-lettered runs</h3><ul class="dead-letters">${s.dead_lettered_runs.map(
        (
          d,
        ) => html`<li data-dead="${d.id}">${formatTime(d.created_on)}: <span class="dead-error">${errorLine(d.error)}</span> (${d.retry_count ?? 0} retries)
${mayRun ? html`<form method="post" action="/jobs/${s.job}/dead-letters/${d.id}/retry" class="inline">${csrfInput(ctx.csrf)}<button type="submit" class="secondary" aria-label="Retry dead-lettered run ${d.id}">Retry</button></form>` : ''}</li>`,
      )}</ul>`
    : ''
}`;
}

/** Where the console reads from, with database.replica_url: the replica and its lag, or why not. */
export function replicaLine(replica: ReplicaStatus | undefined): SafeHtml {
  if (!replica?.configured) return html``;
  const lag = replica.lag_seconds === null ? 'unknown' : `${replica.lag_seconds.toFixed(1)} s`;
  return replica.serving === 'replica'
    ? html`<p class="muted" id="replica-state">Pages read from the replica (lag ${lag}).</p>`
    : html`<p class="notice" id="replica-state">Pages read from the primary: ${replica.fallback_reason ?? ''} (lag ${lag}).</p>`;
}

export function jobsPage(
  ctx: PageContext,
  states: readonly JobState[],
  now: Date,
  replica?: ReplicaStatus,
): SafeHtml {
  const mayRun = ctx.deps.can(ctx.principal, 'jobs:run');
  return html`<h1>Jobs</h1>
<p>${refreshToggle(JOBS_REFRESH_SECONDS)} <span id="live-status" class="muted" role="status" aria-live="polite"></span></p>
${replicaLine(replica)}
${states.map(
  (
    s,
  ) => html`<section class="card" aria-labelledby="job-${s.job}" data-job="${s.job}"><h2 id="job-${s.job}">${s.job}</h2>
<p class="muted">${s.description}</p>
<div class="job-live" data-refresh-url="/jobs/${s.job}/live" data-refresh-seconds="${JOBS_REFRESH_SECONDS}">${jobLive(ctx, s, now)}</div>
${mayRun ? enqueueForm(ctx, s.job) : ''}
</section>`,
)}`;
}

function enqueueForm(ctx: PageContext, job: string): SafeHtml {
  if (job === detectStaleTasks.name) {
    return html`<div class="enqueue"><h3>Queue a detection run</h3>
<form method="post" action="/jobs/${job}/runs" aria-label="Queue a detection run">${csrfInput(ctx.csrf)}
<p><label for="d-batch">Batch size</label><input id="d-batch" name="batch_size" type="number" min="1" aria-describedby="d-batch-help"> <span id="d-batch-help" class="muted">stale tasks per transaction; empty: the worker's staleness_detection.batch_size</span></p>
<p><label for="d-max">Max batches</label><input id="d-max" name="max_batches" type="number" min="1" aria-describedby="d-max-help"> <span id="d-max-help" class="muted">batches in this run; empty: the worker's staleness_detection.max_batches_per_run. A run that reaches it with stale tasks left hands them on to another run at once, unless “This run only” is ticked.</span></p>
<p><label for="d-once" class="inline"><input id="d-once" type="checkbox" name="this_run_only" value="true" checked> This run only: stop at max batches, hand nothing on</label></p>
<p><label for="d-dry" class="inline"><input id="d-dry" type="checkbox" name="dry_run" value="true"> Dry run: report what it would do, change nothing</label></p>
<p><button type="submit">Queue detection</button></p></form></div>`;
  }
  if (job === archiveFinishedTasks.name) {
    return html`<div class="enqueue"><h3>Queue an archival run</h3>
<form method="post" action="/jobs/${job}/runs" aria-label="Queue an archival run">${csrfInput(ctx.csrf)}
<p><label for="a-ret">Retention (days)</label><input id="a-ret" name="retention_days" type="number" min="1" aria-describedby="a-ret-help"> <span id="a-ret-help" class="muted">tasks finished longer ago than this are archived; empty: archive.retention_days</span></p>
<p><label for="a-batch">Batch size</label><input id="a-batch" name="batch_size" type="number" min="1" aria-describedby="a-batch-help"> <span id="a-batch-help" class="muted">task graphs per transaction, at most</span></p>
<p><label for="a-max">Max batches</label><input id="a-max" name="max_batches" type="number" min="1" aria-describedby="a-max-help"> <span id="a-max-help" class="muted">batches in this run; empty: archive.max_batches_per_run. A run that reaches it with work left hands the rest on to another run at once, and that one to the next, until everything eligible is archived — unless “This run only” is ticked.</span></p>
<p><label for="a-once" class="inline"><input id="a-once" type="checkbox" name="this_run_only" value="true" checked> This run only: stop at max batches, hand nothing on</label></p>
<p><label for="a-target">Batch target (ms)</label><input id="a-target" name="batch_target_ms" type="number" min="10"></p>
<p><label for="a-duty">Duty cycle (%)</label><input id="a-duty" name="duty_cycle_percent" type="number" min="1" max="100"></p>
<p><label for="a-ns">Namespace</label><input id="a-ns" name="namespace"></p>
<p><label for="a-tn">Template</label><input id="a-tn" name="task_name"></p>
<p><label for="a-dry" class="inline"><input id="a-dry" type="checkbox" name="dry_run" value="true"> Dry run: count what it would archive, move nothing</label></p>
<p><button type="submit">Queue archival</button></p></form></div>`;
  }
  return html``;
}
