import { queueFilterChoices } from '../../db/queries/dlq-console.ts';
import { type Group, listGroups, ungroupedPending } from '../../db/queries/dlq-groups.ts';
import { templateLabel } from '../../domain/dlq-groups.ts';
import { formatTime, html, queryString, type SafeHtml } from './html.ts';
import type { PageContext } from './layout.ts';
import { filterForm, linkParams, type QueueQuery, refreshToggle, viewSwitch } from './queue-page.ts';
import { sparkline } from './trend.ts';

/**
 * The queue as it opens (issue 27): pending investigations grouped by cause, most pending first.
 * Each group shows its count (and whether its oldest entry is overdue), its last 24 hours, the
 * shared diagnosis linking to the group's page, its template, reason and state, and when it was
 * first and last seen. The queue's filters apply (to the groups' template and reason, and to their
 * oldest pending entry's age); a switch shows the same filters as single entries. Entries in no
 * group yet (awaiting enrichment) are counted, with a link to them. The rows refresh in place.
 */

export const GROUPS_PAGE_SIZE = 25;
/** Ungrouped pending entries are counted up to this many. */
export const UNGROUPED_CAP = 10_000;

const REASON_BADGE: Record<string, string> = {
  dependency_cycle_detected: 'bad',
  max_retries_exceeded: 'bad',
  staleness_timeout: 'warn',
  worker_unavailable: 'warn',
  manual_dlq: 'muted',
};

function filterOf(q: QueueQuery) {
  return {
    reason: q.reason || undefined,
    namespace: q.namespace || undefined,
    template: q.template || undefined,
    minAgeMinutes: typeof q.min_age_minutes === 'number' ? q.min_age_minutes : undefined,
    overdueOnly: q.overdue === '1',
  };
}

export async function loadGroups(ctx: PageContext, q: QueueQuery) {
  const page = q.page ?? 1;
  return listGroups(
    ctx.deps.db,
    filterOf(q),
    { limit: GROUPS_PAGE_SIZE, offset: (page - 1) * GROUPS_PAGE_SIZE },
    ctx.deps.now(),
  );
}

export function groupRows(groups: readonly Group[]): SafeHtml {
  if (groups.length === 0)
    return html`<tr><td colspan="6">No group of pending investigations matches these filters.</td></tr>`;
  return html`${groups.map(
    (g) => html`<tr data-group="${g.fingerprint}">
<td data-label="Pending"><strong class="group-pending">${g.pending}</strong>${g.overdue ? html` <span class="badge bad">overdue</span>` : ''}<br><span class="muted">${g.resolved} resolved</span></td>
<td data-label="Last 24 h">${sparkline(g.trend)}</td>
<td data-label="Cause"><a href="/groups/${g.fingerprint}">${g.diagnosis}</a><br><span class="badge ${REASON_BADGE[g.dlq_reason] ?? 'muted'}">${g.dlq_reason}</span> <span class="muted">in ${g.original_state}</span>${g.current_rules ? '' : html` <span class="badge muted">older rules (v${g.rule_version})</span>`}</td>
<td data-label="Template">${templateLabel({ namespace_name: g.template.namespace, task_name: g.template.name, template_version: g.template.version })}</td>
<td data-label="Seen">${formatTime(g.first_seen_at)}<br><span class="muted">to ${formatTime(g.last_seen_at)}</span></td>
<td data-label="Sample">${g.sample_dlq_entry_uuid ? html`<a href="/dlq/${g.sample_dlq_entry_uuid}">a sample entry</a>` : html`<span class="muted">—</span>`}</td>
</tr>`,
  )}`;
}

export async function groupsQueuePage(ctx: PageContext, q: QueueQuery): Promise<SafeHtml> {
  const page = q.page ?? 1;
  const [{ total, total_pending, groups }, ungrouped, choices] = await Promise.all([
    loadGroups(ctx, q),
    ungroupedPending(ctx.deps.db, UNGROUPED_CAP),
    queueFilterChoices(ctx.deps.db, 200),
  ]);
  const pages = Math.max(1, Math.ceil(total / GROUPS_PAGE_SIZE));
  const fragmentUrl = `/groups/rows${queryString(linkParams(q, page))}`;
  const entriesHref = `/${queryString({ ...linkParams(q), view: 'entries' })}`;
  const seconds = ctx.deps.queueRefreshSeconds ?? 10;
  const filtered = Boolean(
    q.reason || q.namespace || q.template || q.min_age_minutes !== undefined || q.overdue,
  );
  return html`<h1>Pending investigations</h1>
${viewSwitch(q)}
${filterForm(q, choices, new Set())}
<p><strong id="groups-total">${total}</strong> ${total === 1 ? 'group' : 'groups'} of <strong id="groups-pending">${total_pending}</strong> pending ${total_pending === 1 ? 'entry' : 'entries'} ${total === 1 ? 'matches' : 'match'}, by cause, most pending first. ${refreshToggle(seconds)} <span id="live-status" class="muted" role="status" aria-live="polite"></span></p>
${
  ungrouped.count > 0
    ? html`<p class="notice" id="ungrouped"><strong>${ungrouped.more ? `More than ${ungrouped.count}` : ungrouped.count}</strong> pending ${ungrouped.count === 1 && !ungrouped.more ? 'entry is' : 'entries are'} in no group yet${filtered ? ' (counted whatever the filters)' : ''}: not enriched yet (a group is known once an entry is enriched), or enrichment failing. <a href="${entriesHref}">See ${filtered ? 'the filtered entries' : 'them'} as single entries</a>.</p>`
    : ''
}
<div class="table-wrap"><table class="responsive" id="groups">
<caption class="muted">Page ${page} of ${pages}</caption>
<thead><tr><th scope="col">Pending</th><th scope="col">Last 24 h</th><th scope="col">Cause</th><th scope="col">Template</th><th scope="col">Seen</th><th scope="col">Sample</th></tr></thead>
<tbody data-refresh-url="${fragmentUrl}" data-refresh-seconds="${seconds}">${groupRows(groups)}</tbody>
</table></div>
<nav class="pager" aria-label="Pages">
${page > 1 ? html`<a href="/${queryString(linkParams(q, page - 1))}" rel="prev">Previous page</a>` : ''}
<span>Page ${page} of ${pages}</span>
${page < pages ? html`<a href="/${queryString(linkParams(q, page + 1))}" rel="next">Next page</a>` : ''}
</nav>`;
}
