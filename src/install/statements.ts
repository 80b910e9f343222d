/**
 * SQL files read statement by statement, for `migrate --plan` (src/install/plan.ts): each
 * statement with the table locks it takes and whether it rewrites a table, read from its text (a
 * plan changes nothing, so it cannot take the locks to see). Covers the statements a migration
 * here is written with; anything else is reported as unknown, never guessed.
 */

/** PostgreSQL's table lock modes, weakest first. */
export const LOCK_MODES = [
  'ACCESS SHARE',
  'ROW SHARE',
  'ROW EXCLUSIVE',
  'SHARE UPDATE EXCLUSIVE',
  'SHARE',
  'SHARE ROW EXCLUSIVE',
  'EXCLUSIVE',
  'ACCESS EXCLUSIVE',
] as const;
export type LockMode = (typeof LOCK_MODES)[number];

/** What a lock of each mode keeps waiting: SELECT, INSERT/UPDATE/DELETE, or neither. */
export function lockBlocks(mode: LockMode): 'nothing' | 'writes' | 'reads and writes' {
  if (mode === 'ACCESS EXCLUSIVE') return 'reads and writes';
  if (mode === 'SHARE' || mode === 'SHARE ROW EXCLUSIVE' || mode === 'EXCLUSIVE') return 'writes';
  return 'nothing';
}

export interface StatementLock {
  /** A table, view or index, as written (an index's table is looked up by the plan). */
  relation: string;
  mode: LockMode;
  /** The relation is an index (DROP INDEX, ALTER INDEX): its table is locked too. */
  index?: boolean;
  /** The statement creates the relation: nobody else can be waiting for it. */
  created?: boolean;
}

export interface StatementEffect {
  locks: StatementLock[];
  /** Whether it rewrites (or copies) a whole table; null when that depends (a type change). */
  rewrites: boolean | null;
  /** Anything else worth knowing: a scan under the lock, a block whose locks are unknown, … */
  note?: string;
}

/**
 * The statements of a SQL text, split at top-level semicolons: not inside '…', E'…', "…",
 * $tag$…$tag$, -- comments or /* … *\/ comments (nested). Each is returned trimmed, with its
 * comments, without the semicolon; empty ones (only comments) are left out.
 */
export function splitStatements(sql: string): string[] {
  const statements: string[] = [];
  let start = 0;
  let i = 0;
  const n = sql.length;
  const push = (end: number) => {
    const text = sql.slice(start, end).trim();
    if (withoutComments(text).trim() !== '') statements.push(text);
  };
  while (i < n) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? n : end + 1;
    } else if (c === '/' && next === '*') {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
        } else i++;
      }
    } else if (c === "'") {
      const escapes = i > 0 && /[eE]/.test(sql[i - 1]!) && (i < 2 || !/[\w$]/.test(sql[i - 2]!));
      i++;
      while (i < n) {
        if (escapes && sql[i] === '\\') i += 2;
        else if (sql[i] === "'" && sql[i + 1] === "'") i += 2;
        else if (sql[i] === "'") break;
        else i++;
      }
      i++;
    } else if (c === '"') {
      const end = sql.indexOf('"', i + 1);
      i = end === -1 ? n : end + 1;
    } else if (c === '$' && !(i > 0 && /[\w$]/.test(sql[i - 1]!))) {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i));
      if (tag) {
        const end = sql.indexOf(tag[0], i + tag[0].length);
        i = end === -1 ? n : end + tag[0].length;
      } else i++;
    } else if (c === ';') {
      push(i);
      i++;
      start = i;
    } else i++;
  }
  push(n);
  return statements;
}

/** The text without -- and /* *\/ comments (outside quotes, as splitStatements reads them). */
export function withoutComments(sql: string): string {
  let out = '';
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? n : end;
    } else if (c === '/' && sql[i + 1] === '*') {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
        } else i++;
      }
      out += ' ';
    } else if (c === "'" || c === '"') {
      let j = i + 1;
      while (j < n && !(sql[j] === c && sql[j + 1] !== c)) j += sql[j] === c ? 2 : 1;
      out += sql.slice(i, j + 1);
      i = j + 1;
    } else if (c === '$' && !(i > 0 && /[\w$]/.test(sql[i - 1]!))) {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i));
      if (tag) {
        const end = sql.indexOf(tag[0], i + tag[0].length);
        const stop = end === -1 ? n : end + tag[0].length;
        out += sql.slice(i, stop);
        i = stop;
      } else {
        out += c;
        i++;
      }
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** One line: comments out, whitespace collapsed, cut at `max` characters with "…". */
export function oneLine(statement: string, max = Number.POSITIVE_INFINITY): string {
  const line = withoutComments(statement).replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

const NAME = String.raw`(?:"[^"]+"|[a-z_][a-z0-9_$]*)(?:\.(?:"[^"]+"|[a-z_][a-z0-9_$]*))?`;
const re = (source: string) => new RegExp(source.replaceAll('NAME', NAME), 'i');
const reAll = (source: string) => new RegExp(source.replaceAll('NAME', NAME), 'gi');
const unquote = (name: string) => name.replace(/"/g, '');

/** Functions whose value differs row by row: a column added with one as its default rewrites the table. */
const VOLATILE_DEFAULT =
  /\b(clock_timestamp|random|gen_random_uuid|uuid_generate_v[1-7]|nextval|timeofday)\s*\(/i;

const strongest = (a: LockMode, b: LockMode): LockMode =>
  LOCK_MODES.indexOf(a) >= LOCK_MODES.indexOf(b) ? a : b;

type Rule = readonly [RegExp, (m: RegExpExecArray, sql: string) => StatementEffect];

const names = (list: string) => list.split(/\s*,\s*/).map(unquote);

/** Statement kinds, first match wins. */
const RULES: readonly Rule[] = [
  [
    re(`^create (unique )?index concurrently (?:if not exists )?(?:NAME )?on (?:only )?(NAME)`),
    (m) => ({
      locks: [{ relation: unquote(m[2]!), mode: 'SHARE UPDATE EXCLUSIVE' }],
      rewrites: false,
      note: 'builds the index while reads and writes go on; waits for the transactions open on the table, before and after',
    }),
  ],
  [
    re(`^create (unique )?index (if not exists )?(?:NAME )?on (?:only )?(NAME)`),
    (m) => ({
      locks: [{ relation: unquote(m[3]!), mode: 'SHARE' }],
      rewrites: false,
      note: m[2]
        ? 'builds the index, reading the whole table under the lock (if the index exists it builds nothing, but takes the lock first)'
        : 'builds the index, reading the whole table under the lock',
    }),
  ],
  [
    re(String.raw`^drop index (concurrently )?(?:if exists )?(NAME(?:\s*,\s*NAME)*)`),
    (m) => ({
      locks: names(m[2]!).map((relation) => ({
        relation,
        mode: m[1] ? ('SHARE UPDATE EXCLUSIVE' as const) : ('ACCESS EXCLUSIVE' as const),
        index: true,
      })),
      rewrites: false,
    }),
  ],
  [
    re(`^alter index (?:if exists )?(NAME) rename to`),
    (m) => ({
      locks: [{ relation: unquote(m[1]!), mode: 'SHARE UPDATE EXCLUSIVE', index: true }],
      rewrites: false,
    }),
  ],
  [
    re(`^alter index (?:if exists )?(NAME)`),
    (m) => ({
      locks: [{ relation: unquote(m[1]!), mode: 'ACCESS EXCLUSIVE', index: true }],
      rewrites: false,
    }),
  ],
  [
    re(`^create (?:(?:global |local )?(?:temp|temporary|unlogged) )?table (?:if not exists )?(NAME)`),
    (m, sql) => ({
      locks: merge([
        { relation: unquote(m[1]!), mode: 'ACCESS EXCLUSIVE', created: true },
        ...[...sql.matchAll(reAll(String.raw`\breferences (NAME)`))].map((r) => ({
          relation: unquote(r[1]!),
          mode: 'SHARE ROW EXCLUSIVE' as const,
        })),
        ...[...sql.matchAll(reAll(String.raw`[(,]\s*like (NAME)`))].map((r) => ({
          relation: unquote(r[1]!),
          mode: 'ACCESS SHARE' as const,
        })),
      ]),
      rewrites: false,
    }),
  ],
  [re(`^alter table (?:if exists )?(?:only )?(NAME) (.*)$`), (m) => alterTable(unquote(m[1]!), m[2]!)],
  [
    re(String.raw`^(?:drop table|truncate(?: table)?) (?:if exists )?(?:only )?(NAME(?:\s*,\s*NAME)*)`),
    (m) => ({
      locks: names(m[1]!).map((relation) => ({ relation, mode: 'ACCESS EXCLUSIVE' as const })),
      rewrites: false,
    }),
  ],
  [
    re(String.raw`^(?:vacuum \(full[^)]*\)|vacuum full|cluster)(?: verbose)? (NAME)`),
    (m) => ({
      locks: [{ relation: unquote(m[1]!), mode: 'ACCESS EXCLUSIVE' }],
      rewrites: true,
      note: 'writes a new copy of the table and its indexes under the lock',
    }),
  ],
  [
    re(`^lock (?:table )?(?:only )?(NAME) in ([a-z ]+?) mode`),
    (m) => {
      const mode = m[2]!.toUpperCase() as LockMode;
      return {
        locks: [{ relation: unquote(m[1]!), mode: LOCK_MODES.includes(mode) ? mode : 'ACCESS EXCLUSIVE' }],
        rewrites: false,
      };
    },
  ],
  [
    re(
      String.raw`^(create (or replace )?(function|procedure|aggregate)|drop (function|procedure|aggregate|type)|create type|alter (function|procedure|type)|create schema|create extension|comment on (function|procedure|type|schema))\b`,
    ),
    () => ({ locks: [], rewrites: false }),
  ],
  [
    re(`^create (?:or replace )?(?:materialized )?view (NAME)`),
    (m) => ({
      locks: [{ relation: unquote(m[1]!), mode: 'ACCESS EXCLUSIVE' }],
      rewrites: false,
      note: 'replaces the view: its readers wait a moment',
    }),
  ],
  [
    re(`^drop (?:materialized )?view (?:if exists )?(NAME)`),
    (m) => ({ locks: [{ relation: unquote(m[1]!), mode: 'ACCESS EXCLUSIVE' }], rewrites: false }),
  ],
  [
    re(`^create (?:or replace )?(?:constraint )?trigger NAME .*? on (NAME)`),
    (m) => ({ locks: [{ relation: unquote(m[1]!), mode: 'SHARE ROW EXCLUSIVE' }], rewrites: false }),
  ],
  [
    re(`^drop trigger (?:if exists )?NAME on (NAME)`),
    (m) => ({ locks: [{ relation: unquote(m[1]!), mode: 'ACCESS EXCLUSIVE' }], rewrites: false }),
  ],
  [
    re(`^comment on (?:table|index|view) (NAME)`),
    (m) => ({ locks: [{ relation: unquote(m[1]!), mode: 'SHARE UPDATE EXCLUSIVE' }], rewrites: false }),
  ],
  [
    re(String.raw`^comment on column (NAME)\.[a-z_0-9"]+ is`),
    (m) => ({ locks: [{ relation: unquote(m[1]!), mode: 'SHARE UPDATE EXCLUSIVE' }], rewrites: false }),
  ],
  [
    /^(insert|update|delete|with)\b/i,
    (_, sql) => ({
      locks: merge(
        [
          ...sql.matchAll(
            reAll(String.raw`\b(?<!\bdo )(?:insert into|update(?: only)?|delete from(?: only)?) (NAME)`),
          ),
        ].map((t) => ({ relation: unquote(t[1]!), mode: 'ROW EXCLUSIVE' as const })),
      ),
      rewrites: false,
      note: 'changes rows: row locks on the rows it writes, held until the migration commits',
    }),
  ],
  [
    /^select\b/i,
    () => ({
      locks: [],
      rewrites: false,
      note: 'reads (ACCESS SHARE on what it reads); a function it calls may take more',
    }),
  ],
  [
    /^do\b/i,
    () => ({ locks: [], rewrites: null, note: 'runs a block: its locks are whatever it runs (unknown)' }),
  ],
  [
    /^(set|reset|begin|commit|start transaction|analyze|grant|revoke)\b/i,
    () => ({ locks: [], rewrites: false }),
  ],
];

/** The locks one statement takes and whether it rewrites a table, from its text. */
export function statementEffect(statement: string): StatementEffect {
  const sql = oneLine(statement);
  for (const [pattern, effect] of RULES) {
    const m = pattern.exec(sql);
    if (m) return effect(m, sql);
  }
  return { locks: [], rewrites: null, note: 'a statement the plan cannot read: its locks are unknown' };
}

/** ALTER TABLE t <actions>: the strongest lock among the actions, the tables they reference, rewrites. */
function alterTable(table: string, actions: string): StatementEffect {
  let mode: LockMode | null = null;
  let rewrites: boolean | null = false;
  const notes: string[] = [];
  const others: StatementLock[] = [];
  for (const action of topLevelParts(actions)) {
    let actionMode: LockMode = 'ACCESS EXCLUSIVE';
    const ref = re(String.raw`\breferences (NAME)`).exec(action);
    if (ref || /\bforeign key\b/i.test(action)) {
      actionMode = 'SHARE ROW EXCLUSIVE';
      if (ref) others.push({ relation: unquote(ref[1]!), mode: 'SHARE ROW EXCLUSIVE' });
      if (!/\bnot valid\b/i.test(action))
        notes.push('checks every row against the referenced table under the lock');
    } else if (
      /^validate constraint\b/i.test(action) ||
      /^set statistics\b|alter column \S+ set statistics\b/i.test(action)
    ) {
      actionMode = 'SHARE UPDATE EXCLUSIVE';
    } else if (/\b(type|set data type)\b/i.test(action) && /^alter (column )?/i.test(action)) {
      rewrites = rewrites === true ? true : null;
      notes.push(
        'a type change rewrites the table and its indexes unless the new type is binary-compatible (varchar widened, say)',
      );
    } else if (/^set (logged|unlogged)\b/i.test(action)) {
      rewrites = true;
    } else if (
      /^add (column )?/i.test(action) &&
      /\bdefault\b/i.test(action) &&
      VOLATILE_DEFAULT.test(action)
    ) {
      rewrites = true;
      notes.push('a column added with a volatile default rewrites the table');
    } else if (/^add (constraint \S+ )?check\b/i.test(action) && !/\bnot valid\b/i.test(action)) {
      notes.push('reads every row under the lock to check the constraint');
    } else if (/\bset not null\b/i.test(action)) {
      notes.push('reads every row under the lock to check NOT NULL');
    }
    mode = mode === null ? actionMode : strongest(mode, actionMode);
  }
  return {
    locks: merge([{ relation: table, mode: mode ?? 'ACCESS EXCLUSIVE' }, ...others]),
    rewrites,
    ...(notes.length > 0 ? { note: [...new Set(notes)].join('; ') } : {}),
  };
}

/** The comma-separated parts of a text, not splitting inside parentheses or quotes. */
function topLevelParts(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === "'" || c === '"') quote = c;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(text.slice(start).trim());
  return parts.filter((p) => p !== '');
}

/** One lock per relation: the strongest asked for. */
function merge(locks: StatementLock[]): StatementLock[] {
  const byRelation = new Map<string, StatementLock>();
  for (const lock of locks) {
    const have = byRelation.get(lock.relation);
    byRelation.set(lock.relation, have ? { ...have, mode: strongest(have.mode, lock.mode) } : lock);
  }
  return [...byRelation.values()];
}
