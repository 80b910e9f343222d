import type { ArchiveMonth } from '../../db/queries/archive.ts';
import type { ArchivedGraph } from '../../db/queries/archive-lookup.ts';
import { formatTime, html, type SafeHtml } from './html.ts';
import { csrfInput, type PageContext } from './layout.ts';

/** Archive: monthly statistics, looking up an archived task graph by task uuid, and "Restore". */
export function archivePage(
  ctx: PageContext,
  months: readonly ArchiveMonth[],
  lookup: { taskUuid: string; graph: ArchivedGraph | undefined } | undefined,
  notice?: { ok: boolean; text: string },
): SafeHtml {
  const mayRestore = ctx.deps.can(ctx.principal, 'archive:restore');
  const task = lookup?.graph?.task;
  return html`<h1>Archive</h1>
${notice ? html`<p class="notice${notice.ok ? '' : ' error'}" role="${notice.ok ? 'status' : 'alert'}" id="archive-notice">${notice.text}</p>` : ''}
<form class="filters" method="get" action="/archive" role="search" aria-label="Look up an archived task">
<div><label for="a-task">Task uuid</label><input id="a-task" name="task_uuid" size="38" value="${lookup?.taskUuid ?? ''}"></div>
<div><button type="submit">Look up</button></div></form>
${
  lookup
    ? task
      ? html`<section class="card" aria-labelledby="found-h" id="archived-task"><h2 id="found-h">Archived task ${lookup.taskUuid}</h2>
<dl class="kv"><dt>Archived at</dt><dd>${formatTime(task.archived_at as string)}</dd><dt>Created</dt><dd>${formatTime(task.created_at as string)}</dd>
<dt>Steps</dt><dd>${lookup.graph!.steps.length}</dd><dt>Transitions</dt><dd>${lookup.graph!.transitions.length} task, ${lookup.graph!.step_transitions.length} step</dd>
<dt>Investigations</dt><dd>${lookup.graph!.dlq_entries.length}</dd></dl>
${
  mayRestore
    ? html`<form method="post" action="/archive/${lookup.taskUuid}/restore">${csrfInput(ctx.csrf)}<p><button type="submit">Restore</button> <span class="muted">moves the whole graph back to the live tables</span></p></form>`
    : html`<p class="muted">Restoring needs the archive:restore permission.</p>`
}</section>`
      : html`<p class="notice" role="status">Task ${lookup.taskUuid} is not in the archive.</p>`
    : ''
}
<h2>By month</h2>
<div class="table-wrap"><table class="responsive" id="archive-months"><thead><tr><th scope="col">Month</th><th scope="col">Tasks</th><th scope="col">Templates</th><th scope="col">Complete</th><th scope="col">Failed</th><th scope="col">Cancelled</th><th scope="col">Resolved manually</th><th scope="col">Average lifetime</th></tr></thead>
<tbody>${
    months.length === 0
      ? html`<tr><td colspan="8">Nothing archived yet.</td></tr>`
      : months.map(
          (
            m,
          ) => html`<tr><td data-label="Month">${m.archive_month}</td><td data-label="Tasks">${m.tasks_archived}</td><td data-label="Templates">${m.distinct_task_templates}</td>
<td data-label="Complete">${m.completed}</td><td data-label="Failed">${m.failed}</td><td data-label="Cancelled">${m.cancelled}</td><td data-label="Resolved manually">${m.resolved_manually}</td>
<td data-label="Average lifetime">${m.avg_task_lifetime_days === null ? '—' : `${Number(m.avg_task_lifetime_days).toFixed(1)} d`}</td></tr>`,
        )
  }</tbody></table></div>`;
}
