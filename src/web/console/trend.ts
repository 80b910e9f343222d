import type { TrendPoint } from '../../domain/dlq-groups.ts';
import { formatTime, html, type SafeHtml } from './html.ts';

/**
 * A group's last 24 hours drawn small (issue 27): pending at the end of each hour as a line, the
 * hours entries were opened in as ticks along the bottom. Its text alternative says what the line
 * shows (from, to, peak, opened and resolved in all), so a screen reader hears the trend too.
 */

/** "pending 0 → 5 over 24 h (peak 5); 5 opened, 0 resolved". */
export function trendWords(points: readonly TrendPoint[]): string {
  if (points.length === 0) return 'no trend';
  const first = points[0]!.pending;
  const last = points.at(-1)!.pending;
  const peak = Math.max(...points.map((p) => p.pending));
  const opened = points.reduce((n, p) => n + p.opened, 0);
  const resolved = points.reduce((n, p) => n + p.resolved, 0);
  return `pending ${first} → ${last} over ${points.length} h (peak ${peak}); ${opened} opened, ${resolved} resolved`;
}

export function sparkline(
  points: readonly TrendPoint[],
  o: { width?: number; height?: number } = {},
): SafeHtml {
  const width = o.width ?? 120;
  const height = o.height ?? 28;
  const peak = Math.max(1, ...points.map((p) => p.pending));
  const step = points.length > 1 ? (width - 2) / (points.length - 1) : 0;
  const y = (v: number) => (height - 5 - (v / peak) * (height - 8)).toFixed(1);
  const line = points.map((p, i) => `${(1 + i * step).toFixed(1)},${y(p.pending)}`).join(' ');
  const ticks = points
    .map((p, i) => (p.opened > 0 ? `M${(1 + i * step).toFixed(1)} ${height} v-3` : ''))
    .join(' ');
  const words = trendWords(points);
  return html`<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${words}"><title>${words}</title>
<polyline points="${line}" fill="none" stroke="#1f4fbf" stroke-width="1.5"/>${ticks ? html`<path d="${ticks}" stroke="#8a4b00" stroke-width="1.5"/>` : ''}</svg>`;
}

/** The same hours as a table (the group page's), newest first, hours with nothing left out. */
export function trendTable(points: readonly TrendPoint[]): SafeHtml {
  const busy = points.filter((p) => p.opened > 0 || p.resolved > 0).reverse();
  if (busy.length === 0) return html`<p class="muted">Nothing opened or resolved in the last 24 hours.</p>`;
  return html`<div class="table-wrap"><table id="trend-hours"><caption class="muted">Hours with entries opened or resolved (UTC), newest first</caption>
<thead><tr><th scope="col">Hour</th><th scope="col">Opened</th><th scope="col">Resolved</th><th scope="col">Pending at its end</th></tr></thead>
<tbody>${busy.map((p) => html`<tr><td>${formatTime(p.hour)}</td><td>${p.opened}</td><td>${p.resolved}</td><td>${p.pending}</td></tr>`)}</tbody></table></div>`;
}
