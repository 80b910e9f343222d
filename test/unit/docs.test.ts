/**
 * The docs stay true where it can be checked mechanically: the configuration reference is the one
 * rendered from the schema, every CLI command is documented, the README stays a newcomer's page,
 * and every relative link (and heading anchor) in README.md and docs/*.md resolves.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { COMMANDS } from '../../src/cli/main.ts';
import {
  CONFIG_REFERENCE_COMMAND,
  CONFIG_REFERENCE_PATH,
  configReference,
  configReferencePage,
} from '../../src/config/reference.ts';
import { projectRoot } from '../../src/paths.ts';
import { headingAnchors, markdownPages, readPage, relativeLinks } from '../helpers/markdown.ts';

/**
 * Pages another branch is writing: a link to one passes while the file is absent, and is checked
 * like any other once it exists. Remove a page from this list when it has landed.
 */

/** The README is a newcomer's page: what it is, set-up, a tour and links. The rest is in docs/. */
const README_MAX_LINES = 300;

describe('the configuration reference', () => {
  it(`docs/configuration-reference.md is current (else run \`${CONFIG_REFERENCE_COMMAND}\`)`, () => {
    const path = relative(projectRoot, CONFIG_REFERENCE_PATH);
    const onDisk = existsSync(CONFIG_REFERENCE_PATH) ? readFileSync(CONFIG_REFERENCE_PATH, 'utf8') : '';
    const rendered = configReferencePage();
    if (onDisk !== rendered) {
      const have = onDisk.split('\n');
      const want = rendered.split('\n');
      const at = want.findIndex((line, i) => have[i] !== line);
      const line = at === -1 ? want.length : at;
      throw new Error(
        `${path} is stale: it does not match the configuration schema (src/config/schema.ts). ` +
          `Run \`${CONFIG_REFERENCE_COMMAND}\` and commit the file.\n` +
          `First difference, line ${line + 1}:\n  file:   ${have[line] ?? '(end of file)'}\n  schema: ${want[line] ?? '(end of file)'}`,
      );
    }
  });

  it('names what every key accepts, with no zod placeholder bounds', () => {
    const rows = configReference().trim().split('\n').slice(2);
    expect(rows.length).toBeGreaterThan(50);
    for (const row of rows) {
      const [, key, , allowedValues] = row.split(/(?<!\\)\|/).map((c) => c.trim());
      expect({ key, allowed: allowedValues }).toEqual({ key, allowed: expect.stringMatching(/\S/) });
      expect(row).not.toContain(String(Number.MAX_SAFE_INTEGER));
    }
  });
});

describe('docs/cli.md', () => {
  const cli = readPage('docs/cli.md');
  it.each(COMMANDS.map((c) => [c.name]))('documents the command `%s`', (name) => {
    expect(cli).toContain(`tasker-lifecycle ${name}`);
  });
  it.each(COMMANDS.flatMap((c) => Object.keys(c.args.flags ?? {}).map((flag) => [c.name, flag])))(
    'documents `%s --%s`',
    (_name, flag) => {
      expect(cli).toContain(`--${flag}`);
    },
  );
});

describe('README.md', () => {
  it(`stays under ${README_MAX_LINES} lines (move detail into docs/)`, () => {
    const lines = readPage('README.md').split('\n').length;
    expect({ lines, max: README_MAX_LINES, fits: lines <= README_MAX_LINES }).toMatchObject({ fits: true });
  });

  it('links every page in docs/', () => {
    const readme = readPage('README.md');
    const linked = new Set(relativeLinks(readme).map((l) => normalize(l.target.split('#')[0]!)));
    const missing = markdownPages()
      .filter((p) => p.startsWith('docs/'))
      .filter((p) => !linked.has(p));
    expect(missing).toEqual([]);
  });
});

describe('links', () => {
  const pages = markdownPages();

  it('finds the pages and their links', () => {
    expect(pages).toEqual(expect.arrayContaining(['README.md', 'docs/operating.md', 'docs/guarantees.md']));
    expect(pages.flatMap((p) => relativeLinks(readPage(p))).length).toBeGreaterThan(50);
  });

  it.each(pages.map((p) => [p]))(
    'every relative link in %s points at a file and heading that exist',
    (page) => {
      const broken: string[] = [];
      for (const { target, line } of relativeLinks(readPage(page))) {
        const [file = '', anchor] = target.split('#');
        const path = file === '' ? page : normalize(join(dirname(page), decodeURIComponent(file)));
        const where = `${page}:${line}: ${target}`;
        if (path.startsWith('..') || !existsSync(join(projectRoot, path))) {
          broken.push(`${where} (no file ${path})`);
          continue;
        }
        if (anchor === undefined || anchor === '') continue;
        if (!path.endsWith('.md') || statSync(join(projectRoot, path)).isDirectory()) {
          broken.push(`${where} (an anchor into a file that is not markdown)`);
          continue;
        }
        if (!headingAnchors(readPage(path)).has(anchor))
          broken.push(`${where} (no heading #${anchor} in ${path})`);
      }
      expect(broken).toEqual([]);
    },
  );
});
