import { z } from 'zod';
import type { AuditRow } from '../../db/queries/audit.ts';
import type { BulkFilter } from '../../db/queries/dlq.ts';
import { DLQ_REASONS, TERMINAL_RESOLUTION_STATUSES } from '../../domain/dlq.ts';
import { TASK_STATES, TERMINAL_TASK_STATES } from '../../domain/task-states.ts';
import { BULK_RESOLVE_MAX_ENTRIES, type BulkResolveResult } from '../../operations/investigations.ts';
import {
  dlqReason,
  finalResolutionStatus,
  investigationNotes,
  namespaceName,
  taskTemplateName,
} from '../../validation/fields.ts';
import { oneOf, wholeNumber } from '../../validation/values.ts';
import { actorText, bulkEntriesSummary } from './audit-page.ts';
import { optionalField } from './filters.ts';
import { formatTime, html, queryString, type SafeHtml } from './html.ts';
import { csrfInput, type PageContext } from './layout.ts';

/**
 * Bulk resolve: a filter (the queue's choices), "Preview" (a dry run of the API's bulk resolve: how
 * many and which, and the set's fingerprint), then "Resolve these N" with a status and notes. The
 * form carries the fingerprint, so exactly the previewed entries are resolved, in one transaction by
 * the same operation as POST /v1/dlq/bulk-resolve (one audit row naming every entry); when the
 * matching entries changed meanwhile (a detection run opened more, someone resolved one) nothing is
 * resolved and the new preview is shown. The outcome is shown from its audit row.
 */

/** In-flight task states: the states an entry can have been opened in. */
const OPEN_STATES = TASK_STATES.filter((s) => !(TERMINAL_TASK_STATES as readonly string[]).includes(s));

export const BulkFilterQuery = z.strictObject({
  reason: optionalField(dlqReason),
  namespace: optionalField(namespaceName),
  task_name: optionalField(taskTemplateName),
  original_state: optionalField(oneOf(OPEN_STATES as [string, ...string[]])),
  older_than_minutes: optionalField(wholeNumber(0, 5_256_000)),
  preview: optionalField(z.enum(['1'], { error: 'expected 1, or nothing' })),
  /** The audit row of a bulk resolution just made: the page shows its outcome. */
  result: optionalField(wholeNumber(1, Number.MAX_SAFE_INTEGER)),
});
export type BulkFilterQuery = z.infer<typeof BulkFilterQuery>;
export const BULK_FILTERS = Object.keys(BulkFilterQuery.shape);

export const BulkResolveForm = z.strictObject({
  _csrf: z.string(),
  reason: optionalField(dlqReason),
  namespace: optionalField(namespaceName),
  task_name: optionalField(taskTemplateName),
  original_state: optionalField(oneOf(OPEN_STATES as [string, ...string[]])),
  older_than_minutes: optionalField(wholeNumber(0, 5_256_000)),
  status: finalResolutionStatus,
  notes: investigationNotes,
  expected_fingerprint: z.string().regex(/^[0-9a-f]{64}$/, { error: 'preview first' }),
  expected_matched: wholeNumber(0, BULK_RESOLVE_MAX_ENTRIES),
});
export type BulkResolveForm = z.infer<typeof BulkResolveForm>;

export const BULK_PREVIEW_LIMIT = 20;

type FilterValues = Pick<
  BulkFilterQuery,
  'reason' | 'namespace' | 'task_name' | 'original_state' | 'older_than_minutes'
>;

export function bulkFilterOf(q: FilterValues): BulkFilter {
  return {
    reason: q.reason || undefined,
    namespace: q.namespace || undefined,
    taskName: q.task_name || undefined,
    originalState: q.original_state || undefined,
    olderThanMinutes: typeof q.older_than_minutes === 'number' ? q.older_than_minutes : undefined,
  };
}

/** The filter as query parameters (links back to the preview). */
export function bulkFilterParams(q: FilterValues): Record<string, string | number | undefined> {
  return {
    reason: q.reason,
    namespace: q.namespace,
    task_name: q.task_name,
    original_state: q.original_state,
    older_than_minutes: q.older_than_minutes,
  };
}

const FILTER_KEYS = ['reason', 'namespace', 'task_name', 'original_state', 'older_than_minutes'] as const;

function filterFields(
  v: Record<string, string | number | undefined>,
  choices: { namespaces: string[]; templates: string[] },
  invalid: ReadonlySet<string>,
): SafeHtml {
  const option = (value: string, current: unknown, label = value) =>
    html`<option value="${value}"${value === String(current ?? '') ? html` selected` : ''}>${label}</option>`;
  const extra = (list: readonly string[], current: unknown) =>
    typeof current === 'string' && current !== '' && !list.includes(current)
      ? option(current, current, `${current} (no such name)`)
      : '';
  const bad = (k: string) => (invalid.has(k) ? html` aria-invalid="true"` : '');
  return html`<div><label for="b-reason">Reason</label><select id="b-reason" name="reason"${bad('reason')}>${option('', v.reason, 'any')}${DLQ_REASONS.map((r) => option(r, v.reason))}${extra(DLQ_REASONS, v.reason)}</select></div>
<div><label for="b-namespace">Namespace</label><select id="b-namespace" name="namespace"${bad('namespace')}>${option('', v.namespace, 'any')}${choices.namespaces.map((n) => option(n, v.namespace))}${extra(choices.namespaces, v.namespace)}</select></div>
<div><label for="b-template">Template</label><select id="b-template" name="task_name"${bad('task_name')}>${option('', v.task_name, 'any')}${choices.templates.map((t) => option(t, v.task_name))}${extra(choices.templates, v.task_name)}</select></div>
<div><label for="b-state">Original state</label><select id="b-state" name="original_state"${bad('original_state')}>${option('', v.original_state, 'any')}${OPEN_STATES.map((st) => option(st, v.original_state))}${extra(OPEN_STATES, v.original_state)}</select></div>
<div><label for="b-older">Older than (minutes)</label><input id="b-older" name="older_than_minutes" type="number" min="0" value="${v.older_than_minutes ?? ''}"${bad('older_than_minutes')}></div>`;
}

function hiddenFilter(q: FilterValues): SafeHtml {
  return html`${FILTER_KEYS.map((k) => html`<input type="hidden" name="${k}" value="${q[k] ?? ''}">`)}`;
}

export interface BulkPageState {
  /** The form's values (as typed when refused). */
  values: Record<string, string | number | undefined>;
  choices: { namespaces: string[]; templates: string[] };
  /** The filter, when it was accepted. */
  filter?: FilterValues | undefined;
  preview?: BulkResolveResult | undefined;
  /** What is wrong with the filter: the page shows it and previews nothing. */
  problems?: readonly string[] | undefined;
  invalid?: ReadonlySet<string> | undefined;
  /** The audit row of a bulk resolution just made. */
  outcome?: AuditRow | undefined;
  /** Status and notes typed for a resolution that was refused: kept in the form. */
  draft?: { status: string; notes: string } | undefined;
}

function outcomeSection(row: AuditRow, mayRead: boolean): SafeHtml {
  const details = (row.details ?? {}) as { dlq_entry_uuids?: string[]; resolved?: number };
  const after = (row.after ?? {}) as { resolution_status?: string; resolution_notes?: string };
  const uuids = details.dlq_entry_uuids ?? [];
  const n = details.resolved ?? uuids.length;
  return html`<section class="card" aria-labelledby="outcome-h" id="bulk-outcome"><h2 id="outcome-h">Resolved ${n} ${n === 1 ? 'entry' : 'entries'}</h2>
<p>${actorText(row)} resolved exactly the ${n} previewed ${n === 1 ? 'entry' : 'entries'} as <strong>${after.resolution_status ?? '?'}</strong> at ${formatTime(row.at)}: “${after.resolution_notes ?? ''}”. <a href="/audit?target_id=${encodeURIComponent(row.target_id)}">The audit row</a>.</p>
${
  mayRead
    ? html`<details><summary>${bulkEntriesSummary(uuids.length, n)}</summary><ul id="bulk-resolved">${uuids.map((u) => html`<li><a href="/dlq/${u}">${u}</a></li>`)}</ul></details>`
    : ''
}</section>`;
}

export function bulkPage(ctx: PageContext, st: BulkPageState): SafeHtml {
  const preview = st.preview;
  const problems = st.problems ?? [];
  // The entries themselves are for a token that may read investigations; dlq:update alone sees
  // how many match, and may resolve them.
  const mayRead = ctx.deps.can(ctx.principal, 'dlq:read');
  return html`<h1>Bulk resolve</h1>
${st.outcome ? outcomeSection(st.outcome, mayRead) : ''}
${
  problems.length > 0
    ? html`<div class="notice error" role="alert" id="filter-problem"><p>Not previewed: ${problems.length === 1 ? problems[0] : 'these values are not allowed:'}</p>${problems.length > 1 ? html`<ul>${problems.map((p) => html`<li>${p}</li>`)}</ul>` : ''}</div>`
    : ''
}
<p class="muted">Pending entries matching every field given. At most ${BULK_RESOLVE_MAX_ENTRIES} at once. Preview first: exactly the entries previewed are resolved, or nothing when they changed meanwhile.</p>
<form class="filters" method="get" action="/bulk" aria-label="Bulk filter">${filterFields(st.values, st.choices, st.invalid ?? new Set())}
<input type="hidden" name="preview" value="1"><div><button type="submit">Preview</button></div></form>
${
  preview && st.filter
    ? html`<section class="card" aria-labelledby="preview-h"><h2 id="preview-h">Preview</h2>
${
  mayRead
    ? html`<p><strong id="bulk-count">${preview.matched}</strong> pending ${preview.matched === 1 ? 'entry matches' : 'entries match'}${preview.matched > preview.entries.length ? `; the first ${preview.entries.length} (oldest first):` : ':'}</p>
<ul id="bulk-preview">${preview.entries.map(
        (e) =>
          html`<li><a href="/dlq/${e.dlq_entry_uuid}">${String(e.task_snapshot.namespace ?? '?')}/${String(e.task_snapshot.task_name ?? '?')}</a> ${e.dlq_reason}, ${e.original_state}, since ${formatTime(e.dlq_timestamp)}</li>`,
      )}</ul>`
    : html`<p><strong id="bulk-count">${preview.matched}</strong> pending ${preview.matched === 1 ? 'entry matches' : 'entries match'}. <span class="muted" id="bulk-withheld">Your token (${ctx.principal.tokenName}) lacks dlq:read, so they are counted, not listed.</span></p>`
}
${
  preview.matched > 0
    ? html`<form method="post" action="/bulk/resolve">${csrfInput(ctx.csrf)}${hiddenFilter(st.filter)}
<input type="hidden" name="expected_fingerprint" value="${preview.fingerprint}"><input type="hidden" name="expected_matched" value="${preview.matched}">
<p><label for="bulk-status">Status</label><select id="bulk-status" name="status">${TERMINAL_RESOLUTION_STATUSES.map((s) => html`<option value="${s}"${st.draft?.status === s ? html` selected` : ''}>${s}</option>`)}</select></p>
<p><label for="bulk-notes">Notes</label><textarea id="bulk-notes" name="notes" required maxlength="10000">${st.draft?.notes ?? ''}</textarea></p>
<p><button type="submit">Resolve ${preview.matched === 1 ? 'this entry' : `these ${preview.matched}`}</button></p></form>`
    : ''
}</section>`
    : ''
}`;
}

/** Where a refused bulk resolution goes back to: the preview of the same filter, as it is now. */
export function previewLocation(q: FilterValues): string {
  return `/bulk${queryString({ ...bulkFilterParams(q), preview: 1 })}`;
}
