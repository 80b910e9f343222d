import type { ArchiveMonth } from '../../db/queries/archive.ts';
import type { ArchiveHold } from '../../db/queries/archive-holds.ts';
import type { ArchivedGraph } from '../../db/queries/archive-lookup.ts';
import type { ArchiveMonthOverview } from '../../db/queries/archive-partitions.ts';
import { archivalOutlook, MAX_HOLD_DAYS } from '../../operations/archive.ts';
import { formatTime, html, type SafeHtml } from './html.ts';
import { csrfInput, type PageContext } from './layout.ts';

/**
 * Archive: look up a task by uuid (archived: what restoring it means, with the choice to hold it out
 * of archival, and "Restore"; live: its state and any hold), the tasks held out of archival, and
 * monthly statistics.
 */

export const HOLD_DAY_CHOICES = [1, 7, 30, 90] as const;

export interface ArchiveLookup {
  taskUuid: string;
  graph: ArchivedGraph | undefined;
  /** The task in the live tables: its state and when it entered it. */
  live: { state: string; entered_at: Date } | undefined;
  hold: ArchiveHold | undefined;
}

export interface ArchivePageData {
  months: readonly ArchiveMonth[];
  holds: readonly ArchiveHold[];
  lookup: ArchiveLookup | undefined;
  /** archive.retention_days of this process's configuration. */
  retentionDays: number;
  /** When the archival job runs next (its schedule), if it is scheduled. */
  nextArchivalAt: Date | undefined;
  /** Rows, size and export state per month (the rollup, the catalog, tasker_archive_exports). */
  overview: readonly ArchiveMonthOverview[];
  /** archive.keep_months (0: retention off) and archive.export_dir ('' : no export before a drop). */
  keepMonths: number;
  exportDir: string;
}

function bytesText(n: number | null): string {
  if (n === null) return 'in the adopted partition';
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} kB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

function retentionText(d: ArchivePageData, now: Date): string {
  if (d.keepMonths === 0) return 'Retention is off (archive.keep_months = 0): every month is kept.';
  const first = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - d.keepMonths, 1));
  return `Retention keeps this month and the ${d.keepMonths} before it: archival drops months before ${first.toISOString().slice(0, 7)}${d.exportDir ? `, exporting each to ${d.exportDir}/YYYY-MM first` : ', without exporting them'}.`;
}

/** The archived task's final state and when it entered it (its most recent transition). */
function finalStateOf(graph: ArchivedGraph): { state: string | null; entered_at: Date | null } {
  const last = graph.transitions.find((t) => t.most_recent === true) ?? graph.transitions.at(-1);
  return {
    state: typeof last?.to_state === 'string' ? last.to_state : null,
    entered_at: typeof last?.created_at === 'string' ? new Date(last.created_at) : null,
  };
}

function restoreForm(ctx: PageContext, d: ArchivePageData, l: ArchiveLookup, graph: ArchivedGraph): SafeHtml {
  const now = ctx.deps.now();
  const final = finalStateOf(graph);
  const outlook = archivalOutlook({ ...final, held_until: null }, d.retentionDays, now);
  const next = d.nextArchivalAt ? ` (next run ${formatTime(d.nextArchivalAt)})` : '';
  return html`<form method="post" action="/archive/${l.taskUuid}/restore">${csrfInput(ctx.csrf)}
${
  outlook.past_retention
    ? html`<p class="notice warn" id="restore-warning" role="note">Past retention: ${outlook.text}${next}, unless you hold it out of archival below.</p>`
    : html`<p class="muted" id="restore-warning">Once restored, ${outlook.text}.</p>`
}
<p><label for="hold-days">Hold out of archival for</label><select id="hold-days" name="hold_days">
${HOLD_DAY_CHOICES.map((n) => html`<option value="${n}"${outlook.past_retention && n === 7 ? html` selected` : ''}>${n} ${n === 1 ? 'day' : 'days'}</option>`)}
<option value=""${outlook.past_retention ? '' : html` selected`}>Do not hold${outlook.past_retention ? ' (it will be archived again)' : ''}</option></select></p>
<p><button type="submit">Restore</button> <span class="muted">moves the whole graph back to the live tables</span></p></form>`;
}

function lookupSection(ctx: PageContext, d: ArchivePageData, l: ArchiveLookup): SafeHtml {
  const mayRestore = ctx.deps.can(ctx.principal, 'archive:restore');
  const graph = l.graph;
  if (graph) {
    const task = graph.task;
    const final = finalStateOf(graph);
    return html`<section class="card" aria-labelledby="found-h" id="archived-task"><h2 id="found-h">Archived task ${l.taskUuid}</h2>
<dl class="kv"><dt>Archived at</dt><dd>${formatTime(task.archived_at as string)}</dd><dt>Created</dt><dd>${formatTime(task.created_at as string)}</dd>
<dt>Finished</dt><dd>${final.state ?? '—'} at ${formatTime(final.entered_at)}</dd>
<dt>Steps</dt><dd>${graph.steps.length}</dd><dt>Transitions</dt><dd>${graph.transitions.length} task, ${graph.step_transitions.length} step</dd>
<dt>Investigations</dt><dd>${graph.dlq_entries.length}</dd></dl>
${mayRestore ? restoreForm(ctx, d, l, graph) : html`<p class="muted">Restoring needs the archive:restore permission.</p>`}</section>`;
  }
  if (l.live) {
    const outlook = archivalOutlook(
      { state: l.live.state, entered_at: l.live.entered_at, held_until: l.hold?.held_until ?? null },
      d.retentionDays,
      ctx.deps.now(),
    );
    return html`<section class="card" aria-labelledby="live-h" id="live-task"><h2 id="live-h">Task ${l.taskUuid} is live</h2>
<dl class="kv"><dt>State</dt><dd>${l.live.state} since ${formatTime(l.live.entered_at)}</dd>
<dt>Archival</dt><dd id="task-archival">${outlook.text}</dd>
${l.hold ? html`<dt>Held by</dt><dd>${l.hold.held_by} (${l.hold.reason}), until ${formatTime(l.hold.held_until)}</dd>` : ''}</dl>
<p><a href="/dlq/${l.taskUuid}">Its investigations</a></p></section>`;
  }
  return html`<p class="notice" role="status">Task ${l.taskUuid} is not in the archive, nor live.</p>`;
}

export function archivePage(ctx: PageContext, d: ArchivePageData): SafeHtml {
  return html`<h1>Archive</h1>
<form class="filters" method="get" action="/archive" role="search" aria-label="Look up an archived task">
<div><label for="a-task">Task uuid</label><input id="a-task" name="task_uuid" size="38" value="${d.lookup?.taskUuid ?? ''}"></div>
<div><button type="submit">Look up</button></div></form>
${d.lookup ? lookupSection(ctx, d, d.lookup) : ''}
<h2>Held out of archival</h2>
${
  d.holds.length === 0
    ? html`<p class="muted">No task is held. A restore can hold a task out of archival for up to ${MAX_HOLD_DAYS} days.</p>`
    : html`<div class="table-wrap"><table class="responsive" id="archive-holds"><thead><tr><th scope="col">Task</th><th scope="col">Held until</th><th scope="col">By</th><th scope="col">Why</th></tr></thead><tbody>${d.holds.map(
        (h) =>
          html`<tr data-task="${h.task_uuid}"><td data-label="Task"><a href="/archive?task_uuid=${h.task_uuid}">${h.task_uuid}</a></td><td data-label="Held until">${formatTime(h.held_until)}</td><td data-label="By">${h.held_by}</td><td data-label="Why">${h.reason}</td></tr>`,
      )}</tbody></table></div>`
}
<h2>By month</h2>
<p id="archive-retention">${retentionText(d, ctx.deps.now())}</p>
<div class="table-wrap"><table class="responsive" id="archive-months"><thead><tr><th scope="col">Month</th><th scope="col">Rows</th><th scope="col">Size</th><th scope="col">Export</th><th scope="col">Tasks</th><th scope="col">Templates</th><th scope="col">Complete</th><th scope="col">Failed</th><th scope="col">Cancelled</th><th scope="col">Resolved manually</th><th scope="col">Average lifetime</th></tr></thead>
<tbody>${
    d.months.length === 0
      ? html`<tr><td colspan="11">Nothing archived yet.</td></tr>`
      : d.months.map((m) => {
          const o = d.overview.find((x) => x.month === m.archive_month);
          return html`<tr><td data-label="Month">${m.archive_month}</td><td data-label="Rows">${o?.rows ?? '—'}</td><td data-label="Size">${o ? bytesText(o.bytes) : '—'}</td>
<td data-label="Export">${o?.verified_at ? html`verified ${formatTime(o.verified_at)}, ${o.export_directory}` : 'not exported'}</td><td data-label="Tasks">${m.tasks_archived}</td><td data-label="Templates">${m.distinct_task_templates}</td>
<td data-label="Complete">${m.completed}</td><td data-label="Failed">${m.failed}</td><td data-label="Cancelled">${m.cancelled}</td><td data-label="Resolved manually">${m.resolved_manually}</td>
<td data-label="Average lifetime">${m.avg_task_lifetime_days === null ? '—' : `${Number(m.avg_task_lifetime_days).toFixed(1)} d`}</td></tr>`;
        })
  }</tbody></table></div>`;
}
