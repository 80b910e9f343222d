import { z } from 'zod';
import type { AuditRow } from '../../db/queries/audit.ts';
import { pointInTime, wholeNumber } from '../../validation/values.ts';
import { optionalField } from './filters.ts';
import { formatTime, html, queryString, type SafeHtml } from './html.ts';
import type { PageContext } from './layout.ts';

/**
 * The audit log, newest first, with filters (since: a time, a date or a span such as 1h; actor;
 * token id; target) and paging by audit_id. Who made each change is shown with the token (its id:
 * a name given again after a revocation is another token) or, for the CLI, the OS user. Each change reads as the CLI's: every value that changed, before →
 * after; a long value shows its start and a "more" toggle with the rest; a bulk resolution says how
 * many entries and lists them; an entry is shown with its template.
 */
export const AuditFilterQuery = z.strictObject({
  since: optionalField(pointInTime),
  actor: optionalField(z.string().trim().max(255)),
  token_id: optionalField(
    z
      .string()
      .trim()
      .regex(/^[0-9a-f]{16}$/, { error: 'expected a token id: 16 hex digits, as `token list` shows' }),
  ),
  target_id: optionalField(z.string().trim().max(255)),
  before_id: optionalField(wholeNumber(1, Number.MAX_SAFE_INTEGER)),
});
export type AuditFilterQuery = z.infer<typeof AuditFilterQuery>;
export const AUDIT_FILTERS = Object.keys(AuditFilterQuery.shape);

export const AUDIT_PAGE_SIZE = 50;

/**
 * A bulk resolution lists at most this many of its entries on a page (the database cuts the list:
 * listAudit's entryUuidsShown); the rest are in the API's and the CLI's audit output.
 */
export const BULK_ENTRIES_SHOWN = 100;

/** The summary of a bulk resolution's entry list: all of them, or the first few of how many. */
export function bulkEntriesSummary(shown: number, total: number): string {
  const noun = total === 1 ? 'entry' : 'entries';
  return shown < total
    ? `The first ${shown} of the ${total} ${noun} (all of them: tasker-lifecycle audit --json, or GET /v1/audit)`
    : `The ${total} ${noun}`;
}
/** Values longer than this show their start and a "more" toggle. */
export const AUDIT_VALUE_CHARS = 80;

function valueText(v: unknown): string {
  return v === undefined
    ? '(none)'
    : typeof v === 'string'
      ? JSON.stringify(v)
      : (JSON.stringify(v) ?? 'null');
}

/** A value: whole when short; else its start, and the rest behind "more". */
export function auditValue(v: unknown): SafeHtml {
  const text = valueText(v);
  if (text.length <= AUDIT_VALUE_CHARS) return html`<code>${text}</code>`;
  return html`<details class="more"><summary><code>${text.slice(0, AUDIT_VALUE_CHARS)}</code>… more (${text.length} characters)</summary><pre>${JSON.stringify(v, null, 2)}</pre></details>`;
}

/** The keys that changed, before → after (as `audit` prints them); a creation lists its values. */
export function auditChanges(row: AuditRow): Array<{ key: string; before: unknown; after: unknown }> {
  const before = (row.before ?? null) as Record<string, unknown> | null;
  const after = (row.after ?? null) as Record<string, unknown> | null;
  if (after === null || typeof after !== 'object') return [];
  return Object.keys(after)
    .filter((k) => JSON.stringify(before?.[k]) !== JSON.stringify(after[k]))
    .map((k) => ({ key: k, before: before === null ? undefined : before[k], after: after[k] }));
}

function changeCell(row: AuditRow, templates: ReadonlyMap<string, string>): SafeHtml {
  const changes = auditChanges(row);
  const list = html`<ul class="changes">${changes.map(
    (c) =>
      html`<li><span class="key">${c.key}</span>: ${c.before === undefined && row.before === null ? '' : html`${auditValue(c.before)} → `}${auditValue(c.after)}</li>`,
  )}</ul>`;
  if (row.action !== 'dlq.bulk_resolve') return list;
  const d = (row.details ?? {}) as { dlq_entry_uuids?: string[]; resolved?: number; matched?: number };
  const uuids = d.dlq_entry_uuids ?? [];
  const n = d.resolved ?? uuids.length;
  return html`<p class="bulk-count"><strong>${n} ${n === 1 ? 'entry' : 'entries'}</strong> resolved together</p>${list}
<details class="more"><summary>${bulkEntriesSummary(uuids.length, n)}</summary><ul>${uuids.map(
    (u) =>
      html`<li><a href="/dlq/${u}">${u}</a>${templates.has(u) ? html` <span class="muted">${templates.get(u)}</span>` : ''}</li>`,
  )}</ul></details>`;
}

function targetCell(row: AuditRow, templates: ReadonlyMap<string, string>): SafeHtml {
  if (row.target_kind === 'dlq_entry')
    return html`<a href="/dlq/${row.target_id}">${row.target_id}</a>${templates.has(row.target_id) ? html`<br><span class="muted template">${templates.get(row.target_id)}</span>` : ''}`;
  if (row.target_kind === 'dlq_filter') return html`filter ${auditValue(safeJson(row.target_id))}`;
  if (row.target_kind === 'task')
    return html`task <a href="/archive?task_uuid=${row.target_id}">${row.target_id}</a>`;
  if (row.target_kind === 'job') {
    const job =
      ((row.after ?? {}) as { job?: unknown }).job ?? ((row.details ?? {}) as { job?: unknown }).job;
    return typeof job === 'string'
      ? html`run <a href="/jobs/${job}/runs/${row.target_id}">${row.target_id}</a>`
      : html`job ${row.target_id}`;
  }
  return html`${row.target_kind} ${row.target_id}`;
}

/**
 * Who made a change, in words, wherever a page names an audit row's actor: the name and the token's
 * id ("kate (token 1a2b3c4d5e6f7a8b)"), or for the CLI the name and the OS user.
 */
export function actorText(row: Pick<AuditRow, 'actor' | 'actor_token_id' | 'actor_os_user'>): string {
  if (row.actor_token_id) return `${row.actor} (token ${row.actor_token_id})`;
  if (row.actor_os_user && row.actor_os_user !== row.actor)
    return `${row.actor} (OS user ${row.actor_os_user})`;
  return row.actor;
}

/**
 * Who made a change: the name, what kind (token, console, cli), and the identity behind it: the
 * token's id, linked to that token's changes, or the OS user who ran the CLI.
 */
export function whoCell(row: AuditRow): SafeHtml {
  const identity = row.actor_token_id
    ? html`, token <a href="/audit?token_id=${row.actor_token_id}" class="token-id">${row.actor_token_id}</a>`
    : row.actor_os_user
      ? html`, OS user ${row.actor_os_user}`
      : '';
  return html`${row.actor} <span class="muted">(${row.actor_kind}${identity})</span>`;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The entries an audit page names (targets and bulk members), for their templates. */
export function entriesNamed(rows: readonly AuditRow[]): string[] {
  const ids = new Set<string>();
  for (const r of rows) {
    if (r.target_kind === 'dlq_entry') ids.add(r.target_id);
    if (r.action === 'dlq.bulk_resolve')
      for (const u of ((r.details ?? {}) as { dlq_entry_uuids?: string[] }).dlq_entry_uuids ?? []) ids.add(u);
  }
  return [...ids].slice(0, 2000);
}

export function auditPage(
  _ctx: PageContext,
  values: Record<string, string | undefined>,
  rows: readonly AuditRow[],
  templates: ReadonlyMap<string, string>,
  problems: readonly string[] = [],
): SafeHtml {
  const last = rows[rows.length - 1];
  return html`<h1>Audit log</h1>
${problems.length > 0 ? html`<p class="notice error" role="alert" id="filter-problem">Not filtered: ${problems.join('; ')}</p>` : ''}
<form class="filters" method="get" action="/audit" role="search" aria-label="Filter the audit log">
<div><label for="au-since">Since (time, date, or 30m, 1h, 2d)</label><input id="au-since" name="since" value="${values.since ?? ''}" placeholder="1h"${problems.some((p) => p.startsWith('since')) ? html` aria-invalid="true"` : ''}></div>
<div><label for="au-actor">Actor</label><input id="au-actor" name="actor" value="${values.actor ?? ''}"></div>
<div><label for="au-token">Token id</label><input id="au-token" name="token_id" value="${values.token_id ?? ''}" size="18"${problems.some((p) => p.startsWith('token_id')) ? html` aria-invalid="true"` : ''}></div>
<div><label for="au-target">Entry, task, job or token</label><input id="au-target" name="target_id" value="${values.target_id ?? ''}"></div>
<div><button type="submit">Filter</button> <a href="/audit">Clear</a></div></form>
${
  problems.length > 0
    ? ''
    : html`<div class="table-wrap"><table class="responsive" id="audit"><thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">What</th><th scope="col">On</th><th scope="col">Change (before → after)</th></tr></thead>
<tbody>${
        rows.length === 0
          ? html`<tr><td colspan="5">No audit rows match.</td></tr>`
          : rows.map(
              (
                r,
              ) => html`<tr data-action="${r.action}"><td data-label="When">${formatTime(r.at)}</td><td data-label="Who">${whoCell(r)}</td>
<td data-label="What">${r.action}</td><td data-label="On">${targetCell(r, templates)}</td>
<td data-label="Change">${changeCell(r, templates)}</td></tr>`,
            )
      }</tbody></table></div>
${rows.length === AUDIT_PAGE_SIZE && last ? html`<nav class="pager" aria-label="Pages"><a href="/audit${queryString({ since: values.since, actor: values.actor, token_id: values.token_id, target_id: values.target_id, before_id: last.audit_id })}" rel="next">Older</a></nav>` : ''}`
}`;
}
