import { STALE_WAITING_CAP } from '../../db/queries/staleness-backlog.ts';
import { healthByTemplate, tasksNearestThreshold } from '../../db/queries/staleness-console.ts';
import {
  DRAIN_WINDOW_MINUTES,
  type Drain,
  type StormDrain,
  stormBacklog,
  stormDrain,
} from '../../db/queries/storm-backlog.ts';
import { formatMinutes, formatTime, html, type SafeHtml } from './html.ts';
import type { PageContext } from './layout.ts';
import { refreshToggle } from './queue-page.ts';
import { count } from './run-words.ts';

/**
 * Staleness: first the storm panel (what a stale storm leaves waiting and how fast the jobs drain
 * it: the figures of `status` and the gauges, src/db/queries/storm-backlog.ts, each a bounded
 * index-only read, refreshed in place), then per template the in-flight tasks healthy, in warning
 * and stale, and the tasks nearest their threshold. The page needs dlq:stats; the drain comes from
 * the jobs' runs, so it shows only to a token that may also read the jobs (jobs:read).
 */

export const STORM_REFRESH_SECONDS = 10;

/** Minutes from `at` to `now` (none: null). */
function minutesSince(at: Date | null, now: Date): number | null {
  return at === null ? null : Math.max(0, Math.floor((now.getTime() - at.getTime()) / 60_000));
}

/** What a job's runs drained in the window (shown with jobs:read only). */
function drainText(d: Drain | undefined, what: string): SafeHtml {
  if (d === undefined)
    return html`<span class="muted">shown with the permission jobs:read, which your token lacks</span>`;
  return html`${count(d.work)} ${what} in the last ${DRAIN_WINDOW_MINUTES} minutes (${d.per_second}/s), by ${d.runs === 1 ? '1 run' : `${count(d.runs)} runs`}`;
}

/** The storm panel's figures (the part that refreshes). */
export async function stormLive(ctx: PageContext): Promise<SafeHtml> {
  const now = ctx.deps.now();
  const mayReadJobs = ctx.deps.can(ctx.principal, 'jobs:read');
  const [{ stale, enrichment: e }, drain] = await Promise.all([
    stormBacklog(ctx.deps.db, now),
    mayReadJobs ? stormDrain(ctx.deps.db, now) : Promise.resolve<StormDrain | undefined>(undefined),
  ]);
  const longest = minutesSince(stale.oldest_entered_at, now);
  const oldest = minutesSince(e.oldest_awaiting_at, now);
  return html`<div class="grid2">
<div><h3>Detection</h3><dl class="kv">
<dt>Stale tasks waiting for detection</dt><dd id="storm-stale-waiting">${stale.capped ? html`<span class="badge bad">at least</span> ` : ''}${count(stale.waiting)}${longest === null ? '' : ` (longest ${formatMinutes(longest)} in its state)`}</dd>
<dt>Detected</dt><dd id="storm-detected">${drainText(drain?.detected, 'tasks')}</dd>
</dl>
<p class="muted">Stale by the default state thresholds (staleness_detection.thresholds), counted among the ${count(STALE_WAITING_CAP)} in-flight tasks longest in their state, so at most ${count(STALE_WAITING_CAP)}. Templates' own thresholds and task lifetimes are not applied here; the table below applies them.</p></div>
<div><h3>Enrichment</h3><dl class="kv">
<dt>Awaiting enrichment</dt><dd id="storm-awaiting">${count(e.awaiting)}${oldest === null ? '' : ` (oldest ${formatMinutes(oldest)})`}</dd>
<dt>Retrying</dt><dd id="storm-retrying">${count(e.retrying)} (${count(e.retry_due)} due now)</dd>
<dt>Given up</dt><dd id="storm-given-up">${e.failed > 0 ? html`<span class="badge bad">${count(e.failed)}</span> <span class="muted">failed for good: only the detection snapshot is there</span>` : '0'}</dd>
<dt>Enriched</dt><dd id="storm-enriched">${drainText(drain?.enriched, 'entries')}</dd>
</dl></div>
</div>
<p class="muted">Counted at ${formatTime(now)}.</p>`;
}

/** The storm panel: its figures, refreshed in place while the switch is on. */
async function stormPanel(ctx: PageContext): Promise<SafeHtml> {
  return html`<section class="card" id="storm" aria-labelledby="storm-h"><h2 id="storm-h">Storm: what waits, and how fast it drains</h2>
<p>${refreshToggle(STORM_REFRESH_SECONDS)} <span id="live-status" class="muted" role="status" aria-live="polite"></span></p>
<div data-refresh-url="/staleness/storm" data-refresh-seconds="${STORM_REFRESH_SECONDS}">${await stormLive(ctx)}</div>
</section>`;
}

/** The storm panel, then staleness per template (healthy, warning, stale) and the in-flight tasks nearest their threshold. */
export async function stalenessPage(ctx: PageContext): Promise<SafeHtml> {
  const [storm, templates, near] = await Promise.all([
    stormPanel(ctx),
    healthByTemplate(ctx.deps.db, 100),
    tasksNearestThreshold(ctx.deps.db, 20),
  ]);
  return html`<h1>Staleness</h1>
${storm}
<h2>By template</h2>
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
