/**
 * The layering docs/architecture.md describes, checked on every import in src/ and jobs/: no import
 * cycles (type-only imports count too: they tie modules together for a reader as much as for the
 * compiler), and each layer imports only the layers below it that LAYERS allows. A new folder must
 * be given a layer here before it can import anything. Imports are read with regular expressions
 * (static, type-only, re-exports, side-effect and literal dynamic imports of relative paths); the
 * reader and the cycle finder are tested on examples first, so a reader that finds nothing fails.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { projectRoot } from '../../src/paths.ts';

// --- the rules -----------------------------------------------------------------------------------

type Layer =
  | 'base'
  | 'validation'
  | 'db'
  | 'telemetry'
  | 'job kit'
  | 'worker'
  | 'jobs'
  | 'install'
  | 'worker process'
  | 'operations'
  | 'web'
  | 'cli';

/** Which layer a file is in: the first entry whose path it is or starts with. */
const LAYER_OF: readonly [string, Layer][] = [
  ['src/config/', 'base'],
  ['src/domain/', 'base'],
  ['src/errors.ts', 'base'],
  ['src/paths.ts', 'base'],
  ['src/redact.ts', 'base'],
  ['src/validation/', 'validation'],
  ['src/db/', 'db'],
  ['src/telemetry/', 'telemetry'],
  // What a job file is written with (defineJob, its context's types, cron helpers): jobs use it,
  // and never the machinery that schedules and runs them.
  ['src/worker/job.ts', 'job kit'],
  ['src/worker/cron.ts', 'job kit'],
  // A worker process's start and stop: it checks that the database is installed before it works,
  // so it sits above install, which in turn uses the worker's queue wiring.
  ['src/worker/process.ts', 'worker process'],
  ['src/worker/', 'worker'],
  ['jobs/', 'jobs'],
  ['src/install/', 'install'],
  ['src/operations/', 'operations'],
  ['src/web/', 'web'],
  ['src/cli/', 'cli'],
];

/** What each layer may import, besides itself. Anything not listed is refused. */
const MAY_IMPORT: Record<Layer, readonly Layer[]> = {
  base: [],
  validation: ['base'],
  db: ['base'],
  telemetry: ['base', 'db'],
  'job kit': ['base', 'telemetry'],
  worker: ['base', 'db', 'telemetry', 'job kit'],
  jobs: ['base', 'db', 'job kit'],
  install: ['base', 'db', 'telemetry', 'job kit', 'worker', 'jobs'],
  'worker process': ['base', 'db', 'telemetry', 'job kit', 'worker', 'install'],
  operations: ['base', 'validation', 'db', 'telemetry', 'job kit', 'worker', 'jobs'],
  web: ['base', 'validation', 'db', 'telemetry', 'job kit', 'worker', 'jobs', 'install', 'operations'],
  cli: [
    'base',
    'validation',
    'db',
    'telemetry',
    'job kit',
    'worker',
    'jobs',
    'install',
    'worker process',
    'operations',
    'web',
  ],
};

/** Type-only imports a layer may make beyond MAY_IMPORT: they are erased, nothing of it runs. */
const MAY_IMPORT_TYPES: Partial<Record<Layer, readonly Layer[]>> = {
  // jobs/index.ts lists the jobs as the worker's AnyJob.
  jobs: ['worker'],
};

/** Imports MAY_IMPORT grants a layer, but only to these of its files. */
const ONLY_FROM: readonly { from: Layer; to: Layer; files: readonly string[]; why: string }[] = [
  {
    from: 'cli',
    to: 'web',
    files: ['src/cli/commands/web.ts', 'src/cli/commands/start.ts'],
    why: 'the CLI imports the web layer only to start the server (`web`, `start`)',
  },
];

// --- reading imports -----------------------------------------------------------------------------

interface Import {
  /** The imported file, relative to the project root (relative specifiers only). */
  to: string;
  typeOnly: boolean;
}

/** The relative imports of one file's source, resolved against its path (root-relative). */
function importsOf(file: string, source: string): Import[] {
  const found: { specifier: string; typeOnly: boolean }[] = [];
  // import x from '…', import { a, b } from '…' (over several lines), import type …, export … from '…'
  for (const m of source.matchAll(/^[ \t]*(import|export)\s+(type\s+)?[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/gm))
    found.push({ specifier: m[3]!, typeOnly: m[2] !== undefined });
  // import '…' (side effects only)
  for (const m of source.matchAll(/^[ \t]*import\s*['"]([^'"]+)['"]/gm))
    found.push({ specifier: m[1]!, typeOnly: false });
  // import('…') with a literal path
  for (const m of source.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g))
    found.push({ specifier: m[1]!, typeOnly: false });
  return found
    .filter((f) => f.specifier.startsWith('.'))
    .map((f) => ({ to: normalize(join(dirname(file), f.specifier)), typeOnly: f.typeOnly }));
}

function sourceFiles(dir: string): string[] {
  return readdirSync(join(projectRoot, dir), { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

type Graph = Map<string, Import[]>;

function readGraph(): Graph {
  const files = ['src', 'jobs'].flatMap(sourceFiles).sort();
  return new Map(files.map((f) => [f, importsOf(f, readFileSync(join(projectRoot, f), 'utf8'))]));
}

// --- checking --------------------------------------------------------------------------------------

/** Every cycle found by a depth-first walk, each as "a → b → … → a" (one per closing import). */
function findCycles(graph: ReadonlyMap<string, readonly { to: string }[]>): string[] {
  const cycles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (file: string) => {
    state.set(file, 'open');
    path.push(file);
    for (const { to } of graph.get(file) ?? []) {
      if (!graph.has(to)) continue;
      if (state.get(to) === 'open') cycles.push([...path.slice(path.indexOf(to)), to].join(' → '));
      else if (!state.has(to)) visit(to);
    }
    path.pop();
    state.set(file, 'done');
  };
  for (const file of [...graph.keys()].sort()) if (!state.has(file)) visit(file);
  return cycles;
}

function layerOf(file: string): Layer | undefined {
  return LAYER_OF.find(([prefix]) => file === prefix || file.startsWith(prefix))?.[1];
}

/** Each import the rules refuse, as "from → to: why". */
function layerViolations(graph: Graph): string[] {
  const problems: string[] = [];
  for (const [from, imports] of graph) {
    const fromLayer = layerOf(from);
    if (fromLayer === undefined) continue; // reported by 'put every file in a layer'
    for (const { to, typeOnly } of imports) {
      const toLayer = layerOf(to);
      if (toLayer === undefined || toLayer === fromLayer) continue;
      const allowed =
        MAY_IMPORT[fromLayer].includes(toLayer) ||
        (typeOnly && (MAY_IMPORT_TYPES[fromLayer] ?? []).includes(toLayer));
      if (!allowed) {
        problems.push(`${from} → ${to}: ${fromLayer} may not import ${toLayer}`);
        continue;
      }
      const only = ONLY_FROM.find((o) => o.from === fromLayer && o.to === toLayer);
      if (only && !only.files.includes(from)) problems.push(`${from} → ${to}: ${only.why}`);
    }
  }
  return problems;
}

// --- the tests -------------------------------------------------------------------------------------

describe('the import reader', () => {
  it('finds static, multi-line, type-only, re-export, side-effect and dynamic imports', () => {
    const source = [
      "import { a } from './a.ts';",
      'import {',
      '  b,',
      '  type B,',
      "} from '../b.ts';",
      "import type { C } from './c.ts';",
      "export { d } from './d.ts';",
      "export type { E } from './e.ts';",
      "import './f.ts';",
      "const g = await import('./g.ts');",
      "import { z } from 'zod';",
      " * in a comment: import { h } from './h.ts' is prose, not an import",
    ].join('\n');
    expect(importsOf('src/x/y.ts', source)).toEqual([
      { to: 'src/x/a.ts', typeOnly: false },
      { to: 'src/b.ts', typeOnly: false },
      { to: 'src/x/c.ts', typeOnly: true },
      { to: 'src/x/d.ts', typeOnly: false },
      { to: 'src/x/e.ts', typeOnly: true },
      { to: 'src/x/f.ts', typeOnly: false },
      { to: 'src/x/g.ts', typeOnly: false },
    ]);
  });

  it('reads this project: every relative import names a file that exists', () => {
    const graph = readGraph();
    const edges = [...graph.values()].flat();
    expect(edges.length).toBeGreaterThan(300);
    expect(graph.get('src/web/server.ts')?.map((i) => i.to)).toContain('src/web/routes/dlq.ts');
    const missing = [...graph].flatMap(([from, imports]) =>
      imports
        .filter((i) => (i.to.startsWith('src/') || i.to.startsWith('jobs/')) && !graph.has(i.to))
        .map((i) => `${from} → ${i.to}`),
    );
    expect(missing).toEqual([]);
  });
});

describe('the cycle finder', () => {
  it('names each cycle in order, and finds none in a tree', () => {
    const g = (edges: Record<string, string[]>) =>
      new Map(Object.entries(edges).map(([k, v]) => [k, v.map((to) => ({ to }))]));
    expect(findCycles(g({ a: ['b'], b: ['c'], c: ['a'] }))).toEqual(['a → b → c → a']);
    expect(findCycles(g({ a: ['b', 'c'], b: ['c'], c: [] }))).toEqual([]);
  });
});

describe('src/ and jobs/', () => {
  const graph = readGraph();

  it('have no import cycles', () => {
    expect(findCycles(graph)).toEqual([]);
  });

  it('import one way, down the layers (docs/architecture.md)', () => {
    expect(layerViolations(graph)).toEqual([]);
  });

  it('put every file in a layer (a new folder gets one in LAYER_OF above)', () => {
    expect([...graph.keys()].filter((f) => layerOf(f) === undefined)).toEqual([]);
  });

  it("read and write pg-boss's tables only in src/db/queries/boss-jobs.ts (written for one pg-boss schema)", () => {
    const sql = /\b(FROM|JOIN|UPDATE|INTO)\s+pgboss\./i;
    const offenders = [...graph.keys()].filter(
      (f) => f !== 'src/db/queries/boss-jobs.ts' && sql.test(readFileSync(join(projectRoot, f), 'utf8')),
    );
    expect(offenders).toEqual([]);
  });
});
