import type { BlockingStep, BoundedList } from '../../domain/dlq-enrichment.ts';
import { html, type SafeHtml } from './html.ts';

/**
 * The task's dependency graph as server-side SVG, from an enriched snapshot: steps in columns by
 * depth (longest path from a root, cycle edges left out of the depth), coloured by state; blocking
 * steps get a thick dark-red border and "blocking", steps on a cycle a dashed border and "cycle",
 * and the edges that close a cycle are drawn dashed red.
 */

export interface GraphStep {
  workflow_step_uuid: string;
  name: string;
  state: string;
}

export interface GraphEdge {
  from_step_uuid: string;
  to_step_uuid: string;
}

export interface GraphInput {
  steps: BoundedList<GraphStep>;
  edges: BoundedList<GraphEdge>;
  blocking: readonly Pick<BlockingStep, 'workflow_step_uuid'>[];
  cycle: readonly { workflow_step_uuid: string }[];
}

export const STATE_FILL: Readonly<Record<string, string>> = {
  pending: '#eceff3',
  enqueued: '#e3dcf5',
  in_progress: '#cfe0fa',
  enqueued_for_orchestration: '#dcd3f0',
  enqueued_as_error_for_orchestration: '#f3d6e4',
  waiting_for_retry: '#fbe3c2',
  complete: '#cfe8d5',
  error: '#f6c9c9',
  cancelled: '#dddddd',
  resolved_manually: '#d5eef0',
};

const NODE_W = 150;
const NODE_H = 46;
const COL_GAP = 60;
const ROW_GAP = 18;
const PAD = 12;

export interface GraphLayout {
  /** Column (depth) of each step. */
  depth: Map<string, number>;
  /** Edges that close a cycle (found as back edges of a depth-first search). */
  backEdges: Set<string>;
}

export function edgeKey(e: GraphEdge): string {
  return `${e.from_step_uuid}>${e.to_step_uuid}`;
}

/** Depths by longest path over the edges that are not back edges; iterative, bounded by the lists. */
export function layoutGraph(stepIds: readonly string[], edges: readonly GraphEdge[]): GraphLayout {
  const ids = new Set(stepIds);
  const out = new Map<string, string[]>();
  for (const id of stepIds) out.set(id, []);
  const drawn = edges.filter((e) => ids.has(e.from_step_uuid) && ids.has(e.to_step_uuid));
  for (const e of drawn) out.get(e.from_step_uuid)!.push(e.to_step_uuid);
  const backEdges = new Set<string>();
  const color = new Map<string, 0 | 1 | 2>();
  const order: string[] = []; // post-order
  for (const root of stepIds) {
    if (color.get(root)) continue;
    const stack: Array<{ id: string; next: number }> = [{ id: root, next: 0 }];
    color.set(root, 1);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const children = out.get(top.id)!;
      if (top.next < children.length) {
        const child = children[top.next++]!;
        const c = color.get(child) ?? 0;
        if (c === 1) backEdges.add(`${top.id}>${child}`);
        else if (c === 0) {
          color.set(child, 1);
          stack.push({ id: child, next: 0 });
        }
      } else {
        color.set(top.id, 2);
        order.push(top.id);
        stack.pop();
      }
    }
  }
  const depth = new Map<string, number>();
  for (const id of stepIds) depth.set(id, 0);
  for (let i = order.length - 1; i >= 0; i--) {
    const id = order[i]!;
    for (const child of out.get(id)!) {
      if (backEdges.has(`${id}>${child}`)) continue;
      depth.set(child, Math.max(depth.get(child)!, depth.get(id)! + 1));
    }
  }
  return { depth, backEdges };
}

function shorten(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function graphSvg(input: GraphInput): SafeHtml {
  const steps = input.steps.items;
  if (steps.length === 0) return html`<p class="muted">No steps in the snapshot.</p>`;
  const blocking = new Set(input.blocking.map((b) => b.workflow_step_uuid));
  const onCycle = new Set(input.cycle.map((c) => c.workflow_step_uuid));
  const ids = steps.map((s) => s.workflow_step_uuid);
  const { depth, backEdges } = layoutGraph(ids, input.edges.items);
  const rows = new Map<number, number>();
  const pos = new Map<string, { x: number; y: number }>();
  for (const s of steps) {
    const col = depth.get(s.workflow_step_uuid)!;
    const row = rows.get(col) ?? 0;
    rows.set(col, row + 1);
    pos.set(s.workflow_step_uuid, {
      x: PAD + col * (NODE_W + COL_GAP),
      y: PAD + row * (NODE_H + ROW_GAP),
    });
  }
  const cols = Math.max(...depth.values()) + 1;
  const maxRows = Math.max(...rows.values());
  const width = PAD * 2 + cols * NODE_W + (cols - 1) * COL_GAP;
  const height = PAD * 2 + maxRows * NODE_H + (maxRows - 1) * ROW_GAP;

  const edgeMarks = input.edges.items
    .filter((e) => pos.has(e.from_step_uuid) && pos.has(e.to_step_uuid))
    .map((e) => {
      const a = pos.get(e.from_step_uuid)!;
      const b = pos.get(e.to_step_uuid)!;
      const back = backEdges.has(edgeKey(e));
      const cyc = back || (onCycle.has(e.from_step_uuid) && onCycle.has(e.to_step_uuid));
      if (back) {
        // Loop back over the top of the two nodes.
        const x1 = a.x + NODE_W / 2;
        const x2 = b.x + NODE_W / 2;
        const top = Math.min(a.y, b.y) - 4;
        return html`<path d="M ${x1} ${a.y} C ${x1} ${top - 30}, ${x2} ${top - 30}, ${x2} ${b.y}" class="edge cycle" marker-end="url(#arrow-cycle)"/>`;
      }
      return html`<path d="M ${a.x + NODE_W} ${a.y + NODE_H / 2} L ${b.x - 2} ${b.y + NODE_H / 2}" class="${cyc ? 'edge cycle' : 'edge'}" marker-end="url(${cyc ? '#arrow-cycle' : '#arrow'})"/>`;
    });
  const nodeMarks = steps.map((s) => {
    const p = pos.get(s.workflow_step_uuid)!;
    const marks = [
      blocking.has(s.workflow_step_uuid) ? 'blocking' : '',
      onCycle.has(s.workflow_step_uuid) ? 'cycle' : '',
    ]
      .filter(Boolean)
      .join(', ');
    const cls = [
      'node',
      blocking.has(s.workflow_step_uuid) ? 'blocking' : '',
      onCycle.has(s.workflow_step_uuid) ? 'on-cycle' : '',
    ]
      .filter(Boolean)
      .join(' ');
    return html`<g class="${cls}" data-step="${s.name}" data-state="${s.state}"><title>${s.name}: ${s.state}${marks ? ` (${marks})` : ''}</title>
<rect x="${p.x}" y="${p.y}" width="${NODE_W}" height="${NODE_H}" rx="6" fill="${STATE_FILL[s.state] ?? '#ffffff'}"/>
<text x="${p.x + 8}" y="${p.y + 18}" class="name">${shorten(s.name, 20)}</text>
<text x="${p.x + 8}" y="${p.y + 36}" class="state">${shorten(s.state + (marks ? ` · ${marks}` : ''), 24)}</text></g>`;
  });
  const notDrawn = input.steps.total - steps.length;
  const edgesNotDrawn = input.edges.total - input.edges.items.length;
  // Its own scroll frame at a phone's width: focusable, so the keyboard can scroll it too.
  return html`<figure class="graph" tabindex="0" aria-labelledby="graph-title">
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 -40 ${width} ${height + 40}" width="${width}" height="${height + 40}" role="img" aria-labelledby="graph-title">
<title id="graph-title">Dependency graph: ${steps.length} steps, ${blocking.size} blocking, ${onCycle.size} on a cycle</title>
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#4a5366"/></marker>
<marker id="arrow-cycle" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#a4161a"/></marker></defs>
<style>.edge{fill:none;stroke:#4a5366;stroke-width:1.5}.edge.cycle{stroke:#a4161a;stroke-dasharray:5 3}
.node rect{stroke:#4a5366;stroke-width:1}.node.blocking rect{stroke:#a4161a;stroke-width:4}.node.on-cycle rect{stroke-dasharray:6 3;stroke:#a4161a;stroke-width:2.5}
.node.blocking.on-cycle rect{stroke-width:4}text{font:12px system-ui,sans-serif;fill:#1d2330}text.name{font-weight:700}</style>
${edgeMarks}${nodeMarks}</svg>
<figcaption>${legend()}${notDrawn > 0 ? html` <strong>${notDrawn} more steps not drawn (the snapshot's list was cut).</strong>` : ''}${edgesNotDrawn > 0 ? html` <strong>${edgesNotDrawn} more edges not drawn.</strong>` : ''}</figcaption>
</figure>`;
}

function legend(): SafeHtml {
  return html`<span class="muted">Thick dark-red border: blocking. Dashed red: on a dependency cycle. Fill by state:</span>
${Object.entries(STATE_FILL).map(
  ([state, fill]) => html` <span class="badge muted" style="background:${fill}">${state}</span>`,
)}`;
}
