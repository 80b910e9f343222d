import { z } from 'zod';
import { type ConsoleQueueRow, consoleQueuePage, queueFilterChoices } from '../../db/queries/dlq-console.ts';
import { DLQ_REASONS } from '../../domain/dlq.ts';
import { enrichmentWords } from '../../domain/enrichment-words.ts';
import { dlqReason, namespaceName, taskTemplateName } from '../../validation/fields.ts';
import { wholeNumber } from '../../validation/values.ts';
import { optionalField } from './filters.ts';
import { formatMinutes, formatTime, html, queryString, type SafeHtml } from './html.ts';
import type { PageContext } from './layout.ts';

/**
 * The queue's filters as they appear in the URL, checked with the CLI's own value schemas (so a bad
 * value gets the CLI's words); unknown keys are refused with their name.
 */
export const QueueQuerySchema = z.strictObject({
  reason: optionalField(dlqReason),
  namespace: optionalField(namespaceName),
  template: optionalField(taskTemplateName),
  min_age_minutes: optionalField(wholeNumber(0, 525_600)),
  overdue: optionalField(z.enum(['1'], { error: 'expected 1 (overdue only), or nothing' })),
  page: optionalField(wholeNumber(1, 100_000)),
  /** groups (the default: the queue opens on groups of entries by cause) or entries (one by one). */
  view: optionalField(z.enum(['groups', 'entries'], { error: 'expected groups or entries' })),
});
export type QueueQuery = z.infer<typeof QueueQuerySchema>;
export const QUEUE_FILTERS = Object.keys(QueueQuerySchema.shape);

export const QUEUE_PAGE_SIZE = 25;

function filterOf(q: QueueQuery) {
  return {
    reason: q.reason || undefined,
    namespace: q.namespace || undefined,
    template: q.template || undefined,
    minAgeMinutes: typeof q.min_age_minutes === 'number' ? q.min_age_minutes : undefined,
    overdueOnly: q.overdue === '1',
  };
}

export function linkParams(q: QueueQuery, page?: number) {
  return {
    reason: q.reason,
    namespace: q.namespace,
    template: q.template,
    min_age_minutes: q.min_age_minutes,
    overdue: q.overdue,
    page: page && page > 1 ? page : undefined,
    view: q.view === 'entries' ? 'entries' : undefined,
  };
}

/**
 * The switch between the queue's two views, keeping the filters: groups of entries by cause (the
 * default) and single entries.
 */
export function viewSwitch(q: QueueQuery): SafeHtml {
  const entries = q.view === 'entries';
  const groupsHref = `/${queryString({ ...linkParams(q), page: undefined, view: undefined })}`;
  const entriesHref = `/${queryString({ ...linkParams(q), page: undefined, view: 'entries' })}`;
  return html`<nav class="view-switch" aria-label="Queue view"><a href="${groupsHref}" id="view-groups"${entries ? '' : html` aria-current="page"`}>Groups by cause</a> <a href="${entriesHref}" id="view-entries"${entries ? html` aria-current="page"` : ''}>Single entries</a></nav>`;
}

export async function loadQueue(ctx: PageContext, q: QueueQuery) {
  const page = q.page ?? 1;
  return consoleQueuePage(
    ctx.deps.db,
    filterOf(q),
    { limit: QUEUE_PAGE_SIZE, offset: (page - 1) * QUEUE_PAGE_SIZE },
    ctx.deps.now(),
  );
}

const REASON_BADGE: Record<string, string> = {
  dependency_cycle_detected: 'bad',
  max_retries_exceeded: 'bad',
  staleness_timeout: 'warn',
  worker_unavailable: 'warn',
  manual_dlq: 'muted',
};

/** How the badge of an entry not enriched looks: a failing one stands out, one given up more. */
const ENRICHMENT_BADGE = { awaiting: 'muted', retrying: 'warn', given_up: 'bad' } as const;

/**
 * The diagnosis column: the summary once enriched (and after how many failed attempts), else where
 * enrichment stands as a badge with its attempts and next attempt, in dlq show's words.
 */
function diagnosisCell(r: ConsoleQueueRow): SafeHtml {
  const w = enrichmentWords({ enrichment: r.enrichment }, formatTime);
  if (w.state === 'enriched')
    return html`${r.summary ?? ''}${w.detail ? html`<br><span class="muted enrichment-detail">${w.label} ${w.detail}</span>` : ''}`;
  const detail = w.detail ? html`<br><span class="muted enrichment-detail">${w.detail}</span>` : '';
  return html`<span class="badge ${ENRICHMENT_BADGE[w.state]}" data-enrichment="${w.state}">${w.label}</span>${detail}`;
}

export function queueRows(rows: readonly ConsoleQueueRow[]): SafeHtml {
  if (rows.length === 0)
    return html`<tr><td colspan="6">No pending investigations match these filters.</td></tr>`;
  return html`${rows.map(
    (r) => html`<tr data-entry="${r.dlq_entry_uuid}">
<td data-label="Priority">${r.priority_score}</td>
<td data-label="Task"><a href="/dlq/${r.dlq_entry_uuid}">${r.namespace_name ?? '?'}/${r.task_name ?? '?'}</a><br><span class="muted">${r.task_uuid}</span></td>
<td data-label="Reason"><span class="badge ${REASON_BADGE[r.dlq_reason] ?? 'muted'}">${r.dlq_reason}</span></td>
<td data-label="Was">${r.original_state}</td>
<td data-label="Waiting">${formatMinutes(r.minutes_in_dlq)}${r.overdue ? html` <span class="badge bad">overdue</span>` : ''}<br><span class="muted">${formatTime(r.dlq_timestamp)}</span></td>
<td data-label="Diagnosis">${diagnosisCell(r)}</td>
</tr>`,
  )}`;
}

/** The filter form; with the values as typed when they were refused, and the bad fields marked. */
export function filterForm(
  v: Record<string, string | number | undefined>,
  choices: { namespaces: string[]; templates: string[] },
  invalid: ReadonlySet<string>,
): SafeHtml {
  const option = (value: string, current: unknown, label = value) =>
    html`<option value="${value}"${value === String(current ?? '') ? html` selected` : ''}>${label}</option>`;
  // A value the choices lack (a template since renamed, a typo in the URL) stays visible and selected.
  const extra = (list: string[], current: unknown) =>
    typeof current === 'string' && current !== '' && !list.includes(current)
      ? option(current, current, `${current} (no such name)`)
      : '';
  const bad = (k: string) => (invalid.has(k) ? html` aria-invalid="true"` : '');
  return html`<form class="filters" method="get" action="/" role="search" aria-label="Filter the queue">
  <div><label for="f-reason">Reason</label><select id="f-reason" name="reason"${bad('reason')}>${option('', v.reason, 'any')}${DLQ_REASONS.map((r) => option(r, v.reason))}${extra([...DLQ_REASONS], v.reason)}</select></div>
  <div><label for="f-namespace">Namespace</label><select id="f-namespace" name="namespace"${bad('namespace')}>${option('', v.namespace, 'any')}${choices.namespaces.map((n) => option(n, v.namespace))}${extra(choices.namespaces, v.namespace)}</select></div>
  <div><label for="f-template">Template</label><select id="f-template" name="template"${bad('template')}>${option('', v.template, 'any')}${choices.templates.map((t) => option(t, v.template))}${extra(choices.templates, v.template)}</select></div>
  <div><label for="f-age">Waiting at least (minutes)</label><input id="f-age" name="min_age_minutes" type="number" min="0" inputmode="numeric" value="${v.min_age_minutes ?? ''}"${bad('min_age_minutes')}></div>
  <div><label for="f-overdue"><input id="f-overdue" type="checkbox" name="overdue" value="1"${v.overdue === '1' ? html` checked` : ''}> Overdue only</label></div>
  ${v.view === 'entries' ? html`<input type="hidden" name="view" value="entries">` : ''}<div><button type="submit">Filter</button> <a href="/${v.view === 'entries' ? '?view=entries' : ''}">Clear</a></div>
</form>`;
}

export async function queuePage(ctx: PageContext, q: QueueQuery): Promise<SafeHtml> {
  const page = q.page ?? 1;
  const [{ total, rows }, choices] = await Promise.all([
    loadQueue(ctx, q),
    queueFilterChoices(ctx.deps.db, 200),
  ]);
  const pages = Math.max(1, Math.ceil(total / QUEUE_PAGE_SIZE));
  const fragmentUrl = `/queue/rows${queryString(linkParams(q, page))}`;
  return html`<h1>Pending investigations</h1>
${viewSwitch(q)}
${filterForm(q, choices, new Set())}
<p><strong id="queue-total">${total}</strong> pending ${total === 1 ? 'entry matches' : 'entries match'}; most urgent first (reason, then minutes waiting). ${refreshToggle(ctx.deps.queueRefreshSeconds ?? 10)} <span id="live-status" class="muted" role="status" aria-live="polite"></span></p>
<div class="table-wrap"><table class="responsive" id="queue">
<caption class="muted">Page ${page} of ${pages}</caption>
<thead><tr><th scope="col">Priority</th><th scope="col">Task</th><th scope="col">Reason</th><th scope="col">Was</th><th scope="col">Waiting</th><th scope="col">Diagnosis</th></tr></thead>
<tbody data-refresh-url="${fragmentUrl}" data-refresh-seconds="${ctx.deps.queueRefreshSeconds ?? 10}">${queueRows(rows)}</tbody>
</table></div>
<nav class="pager" aria-label="Pages">
${page > 1 ? html`<a href="/${queryString(linkParams(q, page - 1))}" rel="prev">Previous page</a>` : ''}
<span>Page ${page} of ${pages}</span>
${page < pages ? html`<a href="/${queryString(linkParams(q, page + 1))}" rel="next">Next page</a>` : ''}
</nav>`;
}

/** The queue page with a refused filter: the form as typed, what is wrong, and no rows. */
export async function refusedQueuePage(
  ctx: PageContext,
  raw: Record<string, string>,
  problems: readonly string[],
  invalid: ReadonlySet<string>,
): Promise<SafeHtml> {
  const choices = await queueFilterChoices(ctx.deps.db, 200);
  return html`<h1>Pending investigations</h1>
<div class="notice error" role="alert" id="filter-problem"><p>Not filtered: ${problems.length === 1 ? problems[0] : 'these values are not allowed:'}</p>${problems.length > 1 ? html`<ul>${problems.map((p) => html`<li>${p}</li>`)}</ul>` : ''}<p>Change the filter below, or <a href="/">clear it</a>.</p></div>
${filterForm(raw, choices, invalid)}`;
}

/**
 * The switch for a page's live updates (on by default; the choice is kept in the browser for every
 * page). The script reads it before each refresh.
 */
export function refreshToggle(seconds: number): SafeHtml {
  return html`<label class="inline" for="auto-refresh"><input id="auto-refresh" type="checkbox" checked> Refresh every ${seconds} s</label>`;
}
