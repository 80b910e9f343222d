import archiveFinishedTasks from '../../../jobs/archive-finished-tasks.ts';
import detectStaleTasks from '../../../jobs/detect-stale-tasks.ts';
import type { JobState } from '../job-states.ts';
import { formatTime, html, jsonPreview, type SafeHtml } from './html.ts';
import { csrfInput, type PageContext } from './layout.ts';

/**
 * Jobs: each job's schedule, last runs (when, outcome, duration, counts), queue depths and
 * dead-lettered runs with their error and "Retry"; forms to queue a detection or archival run.
 * Retry and the forms need jobs:run; they go through the audited operations of the API.
 */

function errorLine(error: unknown): string {
  if (error === null || error === undefined) return '—';
  if (typeof error === 'object' && typeof (error as { message?: unknown }).message === 'string')
    return (error as { message: string }).message;
  return jsonPreview(error, 300).text;
}

function counts(value: unknown): string {
  if (value === null || value === undefined) return '—';
  if (typeof value !== 'object') return String(value);
  return Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => typeof v === 'number' || typeof v === 'boolean')
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

export function jobsPage(
  ctx: PageContext,
  states: readonly JobState[],
  notice?: { ok: boolean; text: string },
): SafeHtml {
  const mayRun = ctx.deps.can(ctx.principal, 'jobs:run');
  return html`<h1>Jobs</h1>
${notice ? html`<p class="notice${notice.ok ? '' : ' error'}" role="${notice.ok ? 'status' : 'alert'}" id="jobs-notice">${notice.text}</p>` : ''}
${states.map(
  (
    s,
  ) => html`<section class="card" aria-labelledby="job-${s.job}" data-job="${s.job}"><h2 id="job-${s.job}">${s.job}</h2>
<p class="muted">${s.description}</p>
<dl class="kv"><dt>Schedule (UTC)</dt><dd>${s.schedule ?? 'not scheduled'}</dd>
<dt>Queue</dt><dd>${s.queue ? `${s.queue.queued} queued, ${s.queue.active} active, ${s.queue.failed} failed` : 'no queue'}</dd>
<dt>Dead-lettered</dt><dd>${s.dead_lettered} waiting in ${s.dead_letter_queue}</dd></dl>
<h3>Last runs</h3>
${
  s.last_runs.length === 0
    ? html`<p class="muted">No runs yet.</p>`
    : html`<div class="table-wrap"><table class="responsive"><thead><tr><th scope="col">Started</th><th scope="col">Trigger</th><th scope="col">Outcome</th><th scope="col">Duration</th><th scope="col">Counts</th></tr></thead><tbody>${s.last_runs.map(
        (
          r,
        ) => html`<tr><td data-label="Started">${formatTime(r.started_at)}</td><td data-label="Trigger">${r.trigger}</td>
<td data-label="Outcome">${r.outcome ?? 'running'}${r.error ? html`<br><span class="muted">${r.error}</span>` : ''}</td>
<td data-label="Duration">${r.duration_ms === null || r.duration_ms === undefined ? '—' : `${r.duration_ms} ms`}</td><td data-label="Counts">${counts(r.counts)}</td></tr>`,
      )}</tbody></table></div>`
}
${
  s.dead_lettered_runs.length > 0
    ? html`<h3>Dead-lettered runs</h3><ul class="dead-letters">${s.dead_lettered_runs.map(
        (
          d,
        ) => html`<li data-dead="${d.id}">${formatTime(d.created_on)}: <span class="dead-error">${errorLine(d.error)}</span> (${d.retry_count ?? 0} retries)
${mayRun ? html`<form method="post" action="/jobs/${s.job}/dead-letters/${d.id}/retry" style="display:inline">${csrfInput(ctx.csrf)}<button type="submit" class="secondary" aria-label="Retry dead-lettered run ${d.id}">Retry</button></form>` : ''}</li>`,
      )}</ul>`
    : ''
}
</section>`,
)}
${mayRun ? enqueueForms(ctx) : ''}`;
}

function enqueueForms(ctx: PageContext): SafeHtml {
  const detect = detectStaleTasks.name;
  const archive = archiveFinishedTasks.name;
  return html`<section class="card" aria-labelledby="enqueue-h"><h2 id="enqueue-h">Queue a run</h2>
<div class="grid2">
${
  detect
    ? html`<form method="post" action="/jobs/${detect}/runs" aria-label="Queue a detection run">${csrfInput(ctx.csrf)}<h3>Detection</h3>
<p><label for="d-batch">Batch size</label><input id="d-batch" name="batch_size" type="number" min="1"></p>
<p><label for="d-max">Max batches</label><input id="d-max" name="max_batches" type="number" min="1"></p>
<p><label for="d-dry"><input id="d-dry" type="checkbox" name="dry_run" value="true"> Dry run</label></p>
<p><button type="submit">Queue detection</button></p></form>`
    : ''
}
${
  archive
    ? html`<form method="post" action="/jobs/${archive}/runs" aria-label="Queue an archival run">${csrfInput(ctx.csrf)}<h3>Archival</h3>
<p><label for="a-ret">Retention (days)</label><input id="a-ret" name="retention_days" type="number" min="0"></p>
<p><label for="a-batch">Batch size</label><input id="a-batch" name="batch_size" type="number" min="1"></p>
<p><label for="a-max">Max batches</label><input id="a-max" name="max_batches" type="number" min="1"></p>
<p><label for="a-target">Batch target (ms)</label><input id="a-target" name="batch_target_ms" type="number" min="10"></p>
<p><label for="a-duty">Duty cycle (%)</label><input id="a-duty" name="duty_cycle_percent" type="number" min="1" max="100"></p>
<p><label for="a-ns">Namespace</label><input id="a-ns" name="namespace"></p>
<p><label for="a-tn">Template</label><input id="a-tn" name="task_name"></p>
<p><label for="a-dry"><input id="a-dry" type="checkbox" name="dry_run" value="true"> Dry run</label></p>
<p><button type="submit">Queue archival</button></p></form>`
    : ''
}</div></section>`;
}
