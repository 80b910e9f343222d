import type { AuditRow } from '../../db/queries/audit.ts';
import type { RunRow } from '../../db/queries/job-runs.ts';
import type { RunChain } from '../../operations/runs.ts';
import { actorText } from './audit-page.ts';
import { formatTime, html, type SafeHtml } from './html.ts';
import { csrfInput, type PageContext } from './layout.ts';
import { refreshToggle } from './queue-page.ts';
import { count, countsInWords, groupRuns } from './run-words.ts';

/**
 * One run, followed: where the console goes after queueing or retrying a run. A run that stopped
 * early and handed its work on to further pg-boss jobs is one run here: its status is the last
 * link's, its counts the sum of every link's. While it waits or runs the page refreshes itself and
 * offers "Cancel run" (audited); once it has ended it says how.
 */

export const RUN_REFRESH_SECONDS = 3;

const STATUS_TEXT: Record<RunChain['status'], string> = {
  waiting: 'waiting for a worker',
  running: 'running',
  completed: 'completed',
  cancelled: 'cancelled',
  failed: 'failed',
};

export interface RunView {
  chain: RunChain;
  /** History rows of every link, oldest first. */
  runs: RunRow[];
  /** Who queued it (the audit row of its first link), when it was queued by an operator. */
  queuedBy?: AuditRow | undefined;
  /** Who cancelled it. */
  cancelledBy?: AuditRow | undefined;
  /** The request of its first link: options and whether it is this run only. */
  request: { options?: Record<string, unknown>; this_run_only?: boolean; trigger?: string } | null;
}

/** The part that refreshes: status, what it did, its links, and Cancel while it can be. */
export function runLive(ctx: PageContext, v: RunView): SafeHtml {
  const { chain } = v;
  const settled = chain.status !== 'waiting' && chain.status !== 'running';
  const group = v.runs.length > 0 ? groupRuns([...v.runs].reverse())[0] : undefined;
  const mayRun = ctx.deps.can(ctx.principal, 'jobs:run');
  const badge = chain.status === 'failed' ? 'bad' : chain.status === 'completed' ? 'ok' : 'warn';
  const headOutput = chain.head.output ?? {};
  return html`<div${settled ? html` data-settled="true"` : ''}>
<p class="run-status">Status: <span class="badge ${badge}" id="run-status">${STATUS_TEXT[chain.status]}</span>
${chain.links.length > 1 ? html` <span id="run-links">one run over ${chain.links.length} pg-boss jobs: it handed its remaining work on ${chain.links.length - 1} ${chain.links.length === 2 ? 'time' : 'times'}</span>` : ''}</p>
${v.cancelledBy ? html`<p id="run-cancelled-by">Cancelled by ${actorText(v.cancelledBy)} at ${formatTime(v.cancelledBy.at)}.</p>` : ''}
${
  chain.status === 'failed' && typeof headOutput === 'object'
    ? html`<p class="notice error" role="alert">${String((headOutput as { message?: unknown }).message ?? JSON.stringify(headOutput))}</p>`
    : ''
}
<p><strong>What it did:</strong> <span id="run-words">${group?.counts ? countsInWords(chain.job, group.counts) : chain.status === 'waiting' ? 'nothing yet' : '—'}</span>${group?.duration_ms != null ? html` <span class="muted">(${count(group.duration_ms)} ms of work)</span>` : ''}</p>
${
  !settled && mayRun
    ? html`<form method="post" action="/jobs/${chain.job}/runs/${chain.links[0]!.id}/cancel" class="inline">${csrfInput(ctx.csrf)}
<button type="submit" class="danger">Cancel run</button> <span class="muted">${chain.status === 'running' ? 'it stops after the batch in hand, and hands nothing on' : 'it will not start'}</span></form>`
    : ''
}
<h2>Its pg-boss jobs</h2>
${chain.earlier_not_shown ? html`<p class="muted">Earlier jobs of this run are not shown (deleted after their retention, or past the first 500).</p>` : ''}
<div class="table-wrap"><table class="responsive" id="run-links-table"><thead><tr><th scope="col">#</th><th scope="col">Job</th><th scope="col">State</th><th scope="col">Queued</th><th scope="col">Started</th><th scope="col">Ended</th><th scope="col">What it did</th></tr></thead>
<tbody>${chain.links.map((l, i) => {
    const rows = v.runs.filter((r) => r.pgboss_job_id === l.id);
    const g = rows.length > 0 ? groupRuns([...rows].reverse())[0] : undefined;
    return html`<tr data-link="${l.id}"><td data-label="#">${i + 1}</td><td data-label="Job"><code>${l.id}</code></td><td data-label="State">${l.state}</td>
<td data-label="Queued">${formatTime(l.created_on)}</td><td data-label="Started">${formatTime(l.started_on)}</td><td data-label="Ended">${formatTime(l.completed_on)}</td>
<td data-label="What it did">${g?.counts ? countsInWords(chain.job, g.counts) : '—'}</td></tr>`;
  })}</tbody></table></div></div>`;
}

export function runPage(ctx: PageContext, v: RunView, jobDescription: string): SafeHtml {
  const first = v.chain.links[0]!;
  const options = v.request?.options ?? {};
  const optionText = Object.entries(options)
    .map(([k, val]) => `${k} ${JSON.stringify(val)}`)
    .join(', ');
  return html`<p><a href="/jobs">← Jobs</a></p>
<h1>Run of ${v.chain.job}</h1>
<p class="muted">${jobDescription}</p>
<dl class="kv card"><dt>Run</dt><dd><code>${first.id}</code></dd>
<dt>Queued</dt><dd>${formatTime(first.created_on)}${v.queuedBy ? ` by ${actorText(v.queuedBy)} (${v.queuedBy.actor_kind})` : v.request?.trigger ? ` (${v.request.trigger})` : ''}</dd>
<dt>Options</dt><dd>${optionText || 'the worker’s configuration'}${v.request?.this_run_only ? '; this run only (no hand-on at max batches)' : ''}</dd></dl>
<p>${refreshToggle(RUN_REFRESH_SECONDS)} <span id="live-status" class="muted" role="status" aria-live="polite"></span></p>
<section class="card" aria-label="The run now" data-refresh-url="/jobs/${v.chain.job}/runs/${first.id}/live" data-refresh-seconds="${RUN_REFRESH_SECONDS}">${runLive(ctx, v)}</section>`;
}
