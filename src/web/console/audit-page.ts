import { z } from 'zod';
import type { AuditRow } from '../../db/queries/audit.ts';
import { formatTime, html, jsonPreview, queryString, type SafeHtml } from './html.ts';
import type { PageContext } from './layout.ts';

/** The audit log, newest first, with filters (since, actor, target) and paging by audit_id. */
export const AuditFilterQuery = z.strictObject({
  since: z.union([z.literal(''), z.iso.date(), z.iso.datetime({ offset: true })]).optional(),
  actor: z.string().trim().max(255).optional(),
  target_id: z.string().trim().max(255).optional(),
  before_id: z.coerce.number().int().min(1).optional(),
});
export type AuditFilterQuery = z.infer<typeof AuditFilterQuery>;

export const AUDIT_PAGE_SIZE = 50;

function change(row: AuditRow): string {
  const before = row.before as Record<string, unknown> | null;
  const after = row.after as Record<string, unknown> | null;
  if (!after) return '';
  const keys = Object.keys(after).filter((k) => JSON.stringify(before?.[k]) !== JSON.stringify(after[k]));
  return jsonPreview(Object.fromEntries(keys.map((k) => [k, after[k]])), 300).text;
}

export function auditPage(_ctx: PageContext, q: AuditFilterQuery, rows: readonly AuditRow[]): SafeHtml {
  const last = rows[rows.length - 1];
  return html`<h1>Audit log</h1>
<form class="filters" method="get" action="/audit" role="search" aria-label="Filter the audit log">
<div><label for="au-since">Since (date or time)</label><input id="au-since" name="since" value="${q.since ?? ''}" placeholder="2026-11-29"></div>
<div><label for="au-actor">Actor</label><input id="au-actor" name="actor" value="${q.actor ?? ''}"></div>
<div><label for="au-target">Entry, task, job or token</label><input id="au-target" name="target_id" value="${q.target_id ?? ''}"></div>
<div><button type="submit">Filter</button> <a href="/audit">Clear</a></div></form>
<div class="table-wrap"><table class="responsive" id="audit"><thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">What</th><th scope="col">On</th><th scope="col">Change</th></tr></thead>
<tbody>${
    rows.length === 0
      ? html`<tr><td colspan="5">No audit rows match.</td></tr>`
      : rows.map(
          (
            r,
          ) => html`<tr data-action="${r.action}"><td data-label="When">${formatTime(r.at)}</td><td data-label="Who">${r.actor} <span class="muted">(${r.actor_kind})</span></td>
<td data-label="What">${r.action}</td><td data-label="On">${r.target_kind === 'dlq_entry' ? html`<a href="/dlq/${r.target_id}">${r.target_id}</a>` : `${r.target_kind} ${r.target_id}`}</td>
<td data-label="Change"><pre>${change(r)}</pre></td></tr>`,
        )
  }</tbody></table></div>
${rows.length === AUDIT_PAGE_SIZE && last ? html`<nav class="pager" aria-label="Pages"><a href="/audit${queryString({ since: q.since, actor: q.actor, target_id: q.target_id, before_id: last.audit_id })}" rel="next">Older</a></nav>` : ''}`;
}
