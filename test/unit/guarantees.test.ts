/**
 * Every guarantee in docs/guarantees.md names the tests that prove it, as
 * `test/<path>.test.ts` › "title". Each named file must exist and contain that title (the exact
 * `it`/`describe` title or a distinctive part of it; a string match on the source). And every test
 * file any doc names exists.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { projectRoot } from '../../src/paths.ts';
import { markdownPages, proseOf, readPage } from '../helpers/markdown.ts';

const GUARANTEES = 'docs/guarantees.md';

interface TestReference {
  file: string;
  title: string;
  line: number;
}

/** `test/x.test.ts` › "title" references, in the page's prose (code blocks are not references). */
function testReferences(markdown: string): TestReference[] {
  const refs: TestReference[] = [];
  proseOf(markdown)
    .split('\n')
    .forEach((text, i) => {
      for (const m of text.matchAll(/`(test\/[\w./-]+\.test\.ts)`\s*›\s*"([^"]+)"/g))
        refs.push({ file: m[1]!, title: m[2]!, line: i + 1 });
    });
  return refs;
}

/** A title as it can appear in source: quoted with ', " or `, so an apostrophe may be escaped. */
function sourceContains(source: string, title: string): boolean {
  return source.includes(title) || source.includes(title.replaceAll("'", "\\'"));
}

describe(GUARANTEES, () => {
  const page = readPage(GUARANTEES);
  const refs = testReferences(page);

  it('names tests for its guarantees', () => {
    expect(refs.length).toBeGreaterThanOrEqual(40);
  });

  it('writes every test reference in the form the check reads', () => {
    // A `test/….test.ts` followed by › must be followed by a "quoted title" too.
    const malformed = proseOf(page)
      .split('\n')
      .flatMap((text, i) =>
        [...text.matchAll(/`(test\/[^`]+)`\s*›[ \t]*(?!["\s])/g)].map((m) => `line ${i + 1}: ${m[0]}`),
      );
    expect(malformed).toEqual([]);
  });

  it.each(refs.map((r) => [`${r.file} › "${r.title}"`, r] as const))('%s exists', (_, ref) => {
    const path = join(projectRoot, ref.file);
    const where = `${GUARANTEES}:${ref.line}`;
    expect({ where, file: ref.file, exists: existsSync(path) }).toEqual({
      where,
      file: ref.file,
      exists: true,
    });
    const found = sourceContains(readFileSync(path, 'utf8'), ref.title);
    expect({ where, title: ref.title, foundInFile: found }).toEqual({
      where,
      title: ref.title,
      foundInFile: true,
    });
  });
});

describe('test files named anywhere in the docs', () => {
  it.each(markdownPages().map((p) => [p]))('%s names only test files that exist', (page) => {
    const named = [...proseOf(readPage(page)).matchAll(/\btest\/[\w./-]+\.test\.ts\b/g)].map((m) => m[0]);
    expect(named.filter((file) => !existsSync(join(projectRoot, file)))).toEqual([]);
  });
});
