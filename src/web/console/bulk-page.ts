import { z } from 'zod';
import type { BulkFilter } from '../../db/queries/dlq.ts';
import { DLQ_REASONS, TERMINAL_RESOLUTION_STATUSES } from '../../domain/dlq.ts';
import { BULK_RESOLVE_MAX_ENTRIES, type BulkResolveResult } from '../../operations/investigations.ts';
import { formatTime, html, type SafeHtml } from './html.ts';
import { csrfInput, type PageContext } from './layout.ts';

/**
 * Bulk resolve: a filter, "Preview" (a dry run of the API's bulk resolve: how many and which), then
 * "Resolve all" with a status and notes, applied in one transaction by the same operation as
 * POST /v1/dlq/bulk-resolve (one audit row, action dlq.bulk_resolve, naming every entry).
 */

const text = (max: number) => z.string().trim().max(max).optional();
export const BulkFilterQuery = z.strictObject({
  reason: z.enum(DLQ_REASONS).or(z.literal('')).optional(),
  namespace: text(64),
  task_name: text(64),
  original_state: text(64),
  older_than_minutes: z.union([z.literal(''), z.coerce.number().int().min(0).max(5_256_000)]).optional(),
  preview: z.literal('1').optional(),
});
export type BulkFilterQuery = z.infer<typeof BulkFilterQuery>;

export const BulkResolveForm = BulkFilterQuery.omit({ preview: true }).extend({
  _csrf: z.string(),
  status: z.enum(TERMINAL_RESOLUTION_STATUSES),
  notes: z.string().trim().min(1, 'notes are required').max(10_000),
});

export const BULK_PREVIEW_LIMIT = 20;

export function bulkFilterOf(q: Omit<BulkFilterQuery, 'preview'>): BulkFilter {
  return {
    reason: q.reason || undefined,
    namespace: q.namespace || undefined,
    taskName: q.task_name || undefined,
    originalState: q.original_state || undefined,
    olderThanMinutes: typeof q.older_than_minutes === 'number' ? q.older_than_minutes : undefined,
  };
}

function filterFields(q: Omit<BulkFilterQuery, 'preview'>, hidden: boolean): SafeHtml {
  if (hidden) {
    return html`${(['reason', 'namespace', 'task_name', 'original_state', 'older_than_minutes'] as const).map(
      (k) => html`<input type="hidden" name="${k}" value="${q[k] ?? ''}">`,
    )}`;
  }
  const opt = (v: string, label = v) =>
    html`<option value="${v}"${v === (q.reason ?? '') ? html` selected` : ''}>${label}</option>`;
  return html`<div><label for="b-reason">Reason</label><select id="b-reason" name="reason">${opt('', 'any')}${DLQ_REASONS.map((r) => opt(r))}</select></div>
<div><label for="b-namespace">Namespace</label><input id="b-namespace" name="namespace" value="${q.namespace ?? ''}"></div>
<div><label for="b-template">Template</label><input id="b-template" name="task_name" value="${q.task_name ?? ''}"></div>
<div><label for="b-state">Original state</label><input id="b-state" name="original_state" value="${q.original_state ?? ''}"></div>
<div><label for="b-older">Older than (minutes)</label><input id="b-older" name="older_than_minutes" type="number" min="0" value="${q.older_than_minutes ?? ''}"></div>`;
}

export function bulkPage(
  ctx: PageContext,
  q: BulkFilterQuery,
  preview: BulkResolveResult | undefined,
  outcome?: { resolved: number; matched: number } | { problem: string },
): SafeHtml {
  return html`<h1>Bulk resolve</h1>
${
  outcome && 'problem' in outcome
    ? html`<p class="notice error" role="alert">${outcome.problem}</p>`
    : outcome
      ? html`<p class="notice" role="status" id="bulk-outcome">Resolved <strong>${outcome.resolved}</strong> of ${outcome.matched} matching entries.</p>`
      : ''
}
<p class="muted">Pending entries matching every field given. At most ${BULK_RESOLVE_MAX_ENTRIES} at once.</p>
<form class="filters" method="get" action="/bulk" aria-label="Bulk filter">${filterFields(q, false)}
<input type="hidden" name="preview" value="1"><div><button type="submit">Preview</button></div></form>
${
  preview
    ? html`<section class="card" aria-labelledby="preview-h"><h2 id="preview-h">Preview</h2>
<p><strong id="bulk-count">${preview.matched}</strong> pending ${preview.matched === 1 ? 'entry matches' : 'entries match'}${preview.matched > preview.entries.length ? `; the first ${preview.entries.length} (oldest first):` : ':'}</p>
<ul id="bulk-preview">${preview.entries.map(
        (e) =>
          html`<li><a href="/dlq/${e.dlq_entry_uuid}">${String(e.task_snapshot.namespace ?? '?')}/${String(e.task_snapshot.task_name ?? '?')}</a> ${e.dlq_reason}, ${e.original_state}, since ${formatTime(e.dlq_timestamp)}</li>`,
      )}</ul>
${
  preview.matched > 0
    ? html`<form method="post" action="/bulk/resolve">${csrfInput(ctx.csrf)}${filterFields(q, true)}
<p><label for="bulk-status">Status</label><select id="bulk-status" name="status">${TERMINAL_RESOLUTION_STATUSES.map((s) => html`<option value="${s}">${s}</option>`)}</select></p>
<p><label for="bulk-notes">Notes</label><textarea id="bulk-notes" name="notes" required maxlength="10000"></textarea></p>
<p><button type="submit">Resolve all</button></p></form>`
    : ''
}</section>`
    : ''
}`;
}
