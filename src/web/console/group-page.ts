import { z } from 'zod';
import type { Group, GroupEntry } from '../../db/queries/dlq-groups.ts';
import { TERMINAL_RESOLUTION_STATUSES } from '../../domain/dlq.ts';
import { type GroupEntryStatus, templateLabel } from '../../domain/dlq-groups.ts';
import { BULK_RESOLVE_MAX_GROUP_ENTRIES, type BulkResolveResult } from '../../operations/investigations.ts';
import { finalResolutionStatus, groupEntryStatus, investigationNotes } from '../../validation/fields.ts';
import { wholeNumber } from '../../validation/values.ts';
import { optionalField } from './filters.ts';
import { formatMinutes, formatTime, html, queryString, type SafeHtml } from './html.ts';
import { csrfInput, type PageContext } from './layout.ts';
import { sparkline, trendTable, trendWords } from './trend.ts';

/**
 * One group of investigations (issue 27): what its entries share (template, reason, state, the
 * blocking steps and their errors as normalized), its counts and last 24 hours, "Resolve all in
 * this group" and a page of its entries. The resolve form carries the preview's fingerprint of the
 * set (the same dry run as POST /v1/dlq/bulk-resolve with filter.group, so its count is the API's):
 * exactly the entries previewed are resolved, in one transaction with one audit row, or nothing
 * when the group changed meanwhile (then the page shows the new count and keeps the notes).
 */

export const GROUP_ENTRIES_PAGE_SIZE = 25;

export const GroupPageQuery = z.strictObject({
  status: optionalField(groupEntryStatus),
  page: optionalField(wholeNumber(1, 100_000)),
  /** 1: preview resolving all its pending entries (the dry run), with the form. */
  resolve: optionalField(z.enum(['1'], { error: 'expected 1 (preview resolving all), or nothing' })),
});
export type GroupPageQuery = z.infer<typeof GroupPageQuery>;

export const GroupResolveForm = z.strictObject({
  _csrf: z.string(),
  status: finalResolutionStatus,
  notes: investigationNotes,
  expected_fingerprint: z.string().regex(/^[0-9a-f]{64}$/, { error: 'preview first' }),
  expected_matched: wholeNumber(0, BULK_RESOLVE_MAX_GROUP_ENTRIES),
});

export interface GroupPageState {
  group: Group;
  status: GroupEntryStatus;
  page: number;
  entries: { total: number; entries: GroupEntry[] };
  /** The dry run of resolving the group (undefined: not asked for, or the token may not resolve). */
  preview?: BulkResolveResult | undefined;
  /** Why the group cannot be resolved at once (too many entries). */
  previewProblem?: string | undefined;
  /** Status and notes typed for a resolution that was refused: kept in the form. */
  draft?: { status: string; notes: string } | undefined;
}

function resolveAllSection(ctx: PageContext, st: GroupPageState): SafeHtml {
  const g = st.group;
  if (!ctx.deps.can(ctx.principal, 'dlq:update')) {
    return html`<section class="card" aria-labelledby="all-h"><h2 id="all-h">Resolve all in this group</h2>
<p>Your token (${ctx.principal.tokenName}) may read investigations but not resolve them (it lacks dlq:update).</p></section>`;
  }
  if (st.previewProblem) {
    return html`<section class="card" aria-labelledby="all-h"><h2 id="all-h">Resolve all in this group</h2>
<p class="notice error" role="alert">${st.previewProblem}</p></section>`;
  }
  const p = st.preview;
  if (g.pending === 0 || p?.matched === 0) {
    return html`<section class="card" aria-labelledby="all-h"><h2 id="all-h">Resolve all in this group</h2>
<p id="resolve-all-none">No pending entry is left in this group.</p></section>`;
  }
  if (!p) {
    // The preview reads every pending entry's id (to fix the set): only when asked for.
    return html`<section class="card" aria-labelledby="all-h"><h2 id="all-h">Resolve all in this group</h2>
<p>${g.pending} pending ${g.pending === 1 ? 'entry' : 'entries'}. See exactly which would be resolved, then resolve them together in one transaction.</p>
<p><a href="/groups/${g.fingerprint}?resolve=1#all-h" id="resolve-all-preview">Resolve all in this group…</a></p></section>`;
  }
  return html`<section class="card" aria-labelledby="all-h"><h2 id="all-h">Resolve all in this group</h2>
<p><strong id="resolve-all-count">${p.matched}</strong> pending ${p.matched === 1 ? 'entry' : 'entries'}, resolved together in one transaction with one audit row. Exactly these are resolved: if the group changes before you press the button (an entry opened or resolved meanwhile), nothing is, and the new count is shown.</p>
<form method="post" action="/groups/${g.fingerprint}/resolve">${csrfInput(ctx.csrf)}
<input type="hidden" name="expected_fingerprint" value="${p.fingerprint}"><input type="hidden" name="expected_matched" value="${p.matched}">
<p><label for="g-status">Status</label><select id="g-status" name="status">${TERMINAL_RESOLUTION_STATUSES.map((s) => html`<option value="${s}"${st.draft?.status === s ? html` selected` : ''}>${s}</option>`)}</select></p>
<p><label for="g-notes">Notes</label><textarea id="g-notes" name="notes" required maxlength="10000" placeholder="What the cause was and what was done">${st.draft?.notes ?? ''}</textarea></p>
<p><button type="submit" id="resolve-all">Resolve all ${p.matched} in this group</button></p></form></section>`;
}

function entriesSection(st: GroupPageState): SafeHtml {
  const g = st.group;
  const pages = Math.max(1, Math.ceil(st.entries.total / GROUP_ENTRIES_PAGE_SIZE));
  const link = (status: GroupEntryStatus, page?: number) =>
    `/groups/${g.fingerprint}${queryString({ status: status === 'pending' ? undefined : status, page: page && page > 1 ? page : undefined })}`;
  const tab = (status: GroupEntryStatus, label: string) =>
    html`<a href="${link(status)}"${st.status === status ? html` aria-current="page"` : ''}>${label}</a>`;
  return html`<section class="card" aria-labelledby="entries-h"><h2 id="entries-h">Entries</h2>
<nav class="view-switch" aria-label="Which entries">${tab('pending', `Pending (${g.pending})`)} ${tab('resolved', `Resolved (${g.resolved})`)}</nav>
<p class="muted"><span id="group-entries-total">${st.entries.total}</span> ${st.status} ${st.entries.total === 1 ? 'entry' : 'entries'}${st.status === 'pending' ? ', longest waiting first' : ', newest first'}.</p>
<div class="table-wrap"><table class="responsive" id="group-entries">
<thead><tr><th scope="col">Entry</th><th scope="col">Status</th><th scope="col">Waiting</th><th scope="col">Its diagnosis</th></tr></thead>
<tbody>${
    st.entries.entries.length === 0
      ? html`<tr><td colspan="4">None.</td></tr>`
      : st.entries.entries.map(
          (e) => html`<tr data-entry="${e.dlq_entry_uuid}">
<td data-label="Entry"><a href="/dlq/${e.dlq_entry_uuid}">${formatTime(e.dlq_timestamp)}</a><br><span class="muted">task ${e.task_uuid}</span></td>
<td data-label="Status">${e.resolution_status}${e.resolved_by ? html`<br><span class="muted">by ${e.resolved_by}</span>` : ''}</td>
<td data-label="Waiting">${formatMinutes(Math.max(0, e.minutes_in_dlq))}${e.overdue ? html` <span class="badge bad">overdue</span>` : ''}</td>
<td data-label="Its diagnosis">${e.summary ?? html`<span class="muted">—</span>`}</td></tr>`,
        )
  }</tbody></table></div>
<nav class="pager" aria-label="Pages of entries">
${st.page > 1 ? html`<a href="${link(st.status, st.page - 1)}" rel="prev">Previous page</a>` : ''}
<span>Page ${st.page} of ${pages}</span>
${st.page < pages ? html`<a href="${link(st.status, st.page + 1)}" rel="next">Next page</a>` : ''}
</nav></section>`;
}

export function groupPage(ctx: PageContext, st: GroupPageState): SafeHtml {
  const g = st.group;
  const template = templateLabel({
    namespace_name: g.template.namespace,
    task_name: g.template.name,
    template_version: g.template.version,
  });
  return html`<p><a href="/">← Queue</a></p>
<h1 id="group-diagnosis">${g.diagnosis}</h1>
<p class="muted">A group of investigations: every entry whose task had the same template, reason, state when detected, and blocking steps with the same errors (numbers, ids, times and quoted values aside).</p>
${g.current_rules ? '' : html`<p class="notice warn" id="older-rules">Made by an older rule set (version ${g.rule_version}): its pending entries are moving to the groups the current rules give them; its resolved ones stay here.</p>`}
<dl class="kv card"><dt>Pending</dt><dd id="group-pending">${g.pending}${g.overdue ? html` <span class="badge bad">overdue</span>` : ''}</dd>
<dt>Resolved</dt><dd id="group-resolved">${g.resolved}</dd>
<dt>Template</dt><dd>${template}</dd><dt>Reason</dt><dd>${g.dlq_reason}</dd><dt>State when detected</dt><dd>${g.original_state}</dd>
<dt>First seen</dt><dd>${formatTime(g.first_seen_at)}</dd><dt>Last seen</dt><dd>${formatTime(g.last_seen_at)}</dd>
<dt>New since</dt><dd>${formatTime(g.new_at)}</dd>
<dt>Oldest pending</dt><dd>${g.oldest_pending_at ? formatTime(g.oldest_pending_at) : '—'}</dd>
${g.sample_dlq_entry_uuid ? html`<dt>Sample</dt><dd><a href="/dlq/${g.sample_dlq_entry_uuid}" id="group-sample">${g.pending > 0 ? 'the newest pending entry' : 'a resolved entry'}</a></dd>` : ''}
<dt>Fingerprint</dt><dd><code>${g.fingerprint}</code> <span class="muted">(rules v${g.rule_version})</span></dd></dl>
<div class="grid2"><section class="card" aria-labelledby="cause-h"><h2 id="cause-h">What they share</h2>
${
  g.graph === 'read'
    ? g.blocking && g.blocking.length > 0
      ? html`<ul id="group-blocking">${g.blocking.map((b) => html`<li><strong>${b.step}</strong>${b.error === null ? html` <span class="muted">(no error recorded)</span>` : html`: ${b.error}`}</li>`)}</ul>${(g.blocking_total ?? 0) > g.blocking.length ? html`<p class="muted">and ${(g.blocking_total ?? 0) - g.blocking.length} more (step, error) pairs.</p>` : ''}`
      : html`<p>No blocking step: every unfinished step waits on another.</p>`
    : html`<p>${g.diagnosis}</p>`
}
<h3>Last 24 hours</h3><p>${sparkline(g.trend, { width: 240, height: 48 })}<br><span class="muted" id="group-trend-words">${trendWords(g.trend)}</span></p>
<details class="more"><summary>By hour</summary>${trendTable(g.trend)}</details></section>
${resolveAllSection(ctx, st)}</div>
${entriesSection(st)}`;
}
