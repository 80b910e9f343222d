import { healthByTemplate, tasksNearestThreshold } from '../../db/queries/staleness-console.ts';
import { formatMinutes, html, type SafeHtml } from './html.ts';
import type { PageContext } from './layout.ts';

/** Staleness per template (healthy, warning, stale) and the in-flight tasks nearest their threshold. */
export async function stalenessPage(ctx: PageContext): Promise<SafeHtml> {
  const [templates, near] = await Promise.all([
    healthByTemplate(ctx.deps.db, 100),
    tasksNearestThreshold(ctx.deps.db, 20),
  ]);
  return html`<h1>Staleness</h1>
<p class="muted">In-flight tasks by template: healthy (under 80% of their threshold), warning (80% or more), stale (past it; detection will move them to error).</p>
<div class="table-wrap"><table class="responsive" id="staleness"><thead><tr><th scope="col">Template</th><th scope="col">Healthy</th><th scope="col">Warning</th><th scope="col">Stale</th><th scope="col">Soonest stale in</th></tr></thead>
<tbody>${
    templates.length === 0
      ? html`<tr><td colspan="5">No tasks in flight.</td></tr>`
      : templates.map(
          (
            t,
          ) => html`<tr data-template="${t.namespace_name}/${t.task_name}"><td data-label="Template">${t.namespace_name}/${t.task_name}</td>
<td data-label="Healthy">${t.healthy}</td><td data-label="Warning">${t.warning > 0 ? html`<span class="badge warn">${t.warning}</span>` : 0}</td>
<td data-label="Stale">${t.stale > 0 ? html`<span class="badge bad">${t.stale}</span>` : 0}</td>
<td data-label="Soonest stale in">${t.min_minutes_until_stale === null ? '—' : formatMinutes(t.min_minutes_until_stale)}</td></tr>`,
        )
  }</tbody></table></div>
<h2>Nearest their threshold</h2>
<div class="table-wrap"><table class="responsive" id="nearest"><thead><tr><th scope="col">Task</th><th scope="col">State</th><th scope="col">In state</th><th scope="col">Threshold</th><th scope="col">Stale in</th></tr></thead>
<tbody>${
    near.length === 0
      ? html`<tr><td colspan="5">None.</td></tr>`
      : near.map(
          (
            t,
          ) => html`<tr><td data-label="Task">${t.namespace_name}/${t.task_name}<br><span class="muted">${t.task_uuid}</span></td>
<td data-label="State">${t.current_state}</td><td data-label="In state">${formatMinutes(t.time_in_state_minutes)} (${t.threshold_percentage}%)</td>
<td data-label="Threshold">${formatMinutes(t.staleness_threshold_minutes)}</td>
<td data-label="Stale in">${t.health_status === 'warning' ? html`<span class="badge warn">${formatMinutes(t.minutes_until_stale)}</span>` : formatMinutes(t.minutes_until_stale)}</td></tr>`,
        )
  }</tbody></table></div>`;
}
