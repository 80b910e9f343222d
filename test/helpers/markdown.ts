/**
 * Just enough markdown for the docs checks: the project's markdown pages, their relative links,
 * and GitHub's heading anchors.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/paths.ts';

/** README.md and every docs/*.md, as paths relative to the project root. */
export function markdownPages(): string[] {
  const docs = readdirSync(join(projectRoot, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`);
  return ['README.md', ...docs];
}

export function readPage(path: string): string {
  return readFileSync(join(projectRoot, path), 'utf8');
}

/** The text outside fenced code blocks (``` … ```), line numbers kept (fenced lines blanked). */
export function proseOf(markdown: string): string {
  let fenced = false;
  return markdown
    .split('\n')
    .map((line) => {
      if (/^\s*```/.test(line)) {
        fenced = !fenced;
        return '';
      }
      return fenced ? '' : line;
    })
    .join('\n');
}

export interface Link {
  target: string;
  line: number;
}

/**
 * Links and images (`[text](target)`, `![alt](target)`) outside fenced code and inline code spans.
 * Absolute URLs and mail links are left out: only what points into this repository is returned.
 */
export function relativeLinks(markdown: string): Link[] {
  const links: Link[] = [];
  proseOf(markdown)
    .split('\n')
    .forEach((text, i) => {
      const line = text.replace(/`[^`]*`/g, '``');
      for (const m of line.matchAll(/!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
        const target = m[1]!;
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, …
        links.push({ target, line: i + 1 });
      }
    });
  return links;
}

/**
 * The anchors GitHub gives a page's headings: lower case, punctuation other than `-` and `_`
 * dropped, spaces to `-`; a repeated heading gets `-1`, `-2`, ….
 */
export function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of proseOf(markdown).split('\n')) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = m[1]!
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1') // a link in a heading keeps its text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}
