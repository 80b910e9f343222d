/**
 * The console's rendering without a browser: every value is escaped, the graph layout puts steps in
 * columns by depth and finds the edges that close cycles, and the SVG marks blocking and cycle steps.
 */
import { describe, expect, it } from '@jest/globals';
import { edgeKey, graphSvg, layoutGraph } from '../../src/web/console/graph.ts';
import { html, jsonPreview, queryString } from '../../src/web/console/html.ts';
import { csrfFor, csrfMatches } from '../../src/web/console/session.ts';

const list = <T>(items: T[], total = items.length) => ({
  items,
  total,
  truncated: total > items.length,
  omitted: total - items.length,
});

describe('html', () => {
  it('escapes interpolated values, keeps nested html, drops null, undefined and false', () => {
    const name = `<script>alert("x")</script>&'`;
    const out = html`<p title="${name}">${name}${html`<b>${'<i>'}</b>`}${null}${undefined}${false}${[1, '<', 2]}</p>`;
    expect(out.value).toBe(
      '<p title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;<b>&lt;i&gt;</b>1&lt;2</p>',
    );
  });

  it('builds query strings from the values given, and says how much of a long value it cut', () => {
    expect(queryString({ a: 'x y', b: '', c: undefined, d: 0 })).toBe('?a=x+y&d=0');
    expect(queryString({})).toBe('');
    const { text, cut } = jsonPreview({ blob: 'x'.repeat(100) }, 20);
    expect(text).toHaveLength(20);
    expect(cut).toBe(JSON.stringify({ blob: 'x'.repeat(100) }, null, 2).length - 20);
  });
});

describe('csrf', () => {
  it('matches only the value of the same session', () => {
    expect(csrfMatches('tlk_a', csrfFor('tlk_a'))).toBe(true);
    expect(csrfMatches('tlk_a', csrfFor('tlk_b'))).toBe(false);
    expect(csrfMatches('tlk_a', undefined)).toBe(false);
    expect(csrfMatches('tlk_a', '')).toBe(false);
  });
});

describe('graph', () => {
  const e = (from: string, to: string) => ({ from_step_uuid: from, to_step_uuid: to });

  it('lays steps out by longest path and leaves the edges that close a cycle out of the depth', () => {
    const { depth, backEdges } = layoutGraph(
      ['a', 'b', 'c', 'd', 'x', 'y'],
      [e('a', 'b'), e('b', 'c'), e('a', 'c'), e('c', 'd'), e('b', 'x'), e('x', 'y'), e('y', 'x')],
    );
    expect(Object.fromEntries(depth)).toEqual({ a: 0, b: 1, c: 2, d: 3, x: 2, y: 3 });
    expect([...backEdges]).toEqual([edgeKey(e('y', 'x'))]);
  });

  it('ignores edges to steps that are not drawn', () => {
    const { depth, backEdges } = layoutGraph(['a'], [e('a', 'gone')]);
    expect(Object.fromEntries(depth)).toEqual({ a: 0 });
    expect(backEdges.size).toBe(0);
  });

  it('marks blocking and cycle steps, escapes names, and says how many steps were not drawn', () => {
    const steps = [
      { workflow_step_uuid: 's1', name: 'fetch', state: 'complete' },
      { workflow_step_uuid: 's2', name: '<charge>', state: 'error' },
      { workflow_step_uuid: 's3', name: 'loop', state: 'pending' },
    ];
    const svg = graphSvg({
      steps: list(steps, 5),
      edges: list([e('s1', 's2'), e('s2', 's3'), e('s3', 's2')]),
      blocking: [{ workflow_step_uuid: 's2' }],
      cycle: [{ workflow_step_uuid: 's2' }, { workflow_step_uuid: 's3' }],
    }).value;
    expect(svg).toContain('class="node blocking on-cycle" data-step="&lt;charge&gt;" data-state="error"');
    expect(svg).toContain('class="node on-cycle" data-step="loop"');
    expect(svg).toContain('class="node" data-step="fetch"');
    expect(svg).not.toContain('<charge>');
    expect(svg.match(/class="edge cycle"/g)).toHaveLength(2);
    expect(svg).toContain('2 more steps not drawn');
  });
});
