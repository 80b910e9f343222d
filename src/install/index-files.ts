import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import type { Db } from '../db/pool.ts';
import {
  dropIndexConcurrently,
  type IndexState,
  indexState,
  probeIndexDefinition,
  renameIndex,
  tableExists,
} from '../db/queries/engine-indexes.ts';
import { ENGINE_TABLES } from '../db/queries/engine-schema.ts';
import { appliedObjectFiles, recordObjectFile } from '../db/queries/schema-history.ts';
import { LockNotTaken, type LockSafeDdl } from './lock-safe-ddl.ts';
import { oneLine, splitStatements } from './statements.ts';

/**
 * Indexes on the engine's tables, one per file: migrations/indexes/<index name>.sql, each one
 * `CREATE INDEX CONCURRENTLY <name> ON <engine table> …` with the definition this build wants.
 *
 * An index built inside a migration's transaction holds SHARE on its table for the whole build,
 * blocking every engine INSERT, UPDATE and DELETE. These are built CONCURRENTLY instead, outside
 * any transaction: SHARE UPDATE EXCLUSIVE, which no read or write waits on. `migrate` brings each
 * index to its file's definition, from what the catalog says now, so any step may be the first of
 * a run after a crash:
 *
 * - the same definition, valid: nothing;
 * - absent: built;
 * - INVALID (a CREATE INDEX CONCURRENTLY that failed or was cancelled): dropped concurrently, then
 *   built;
 * - valid with another definition (0031's older one, say): `<name>_next` is built concurrently with
 *   the file's, the old one dropped concurrently, and `<name>_next` renamed to `<name>`; a run that
 *   stopped half way leaves `<name>_next`, which the next run finishes with (or drops, if invalid).
 *
 * The wanted definition is PostgreSQL's own: the same index built on an empty temporary copy of the
 * table's columns, its pg_get_indexdef compared with the existing one's (names left out).
 *
 * `migrate` applies them before the pending numbered migrations where the engine's tables exist
 * (so the released migrations' `CREATE INDEX IF NOT EXISTS` of the same names find them and build
 * nothing), and again after them (where 0001 created the tables in the same run, and to catch any
 * numbered migration that changed one). Each file's checksum is recorded in
 * tasker_lifecycle_sql_objects (as "indexes/<name>.sql") once its index matches it.
 */

export interface IndexFile {
  /** The index's name: the file's name without .sql. */
  name: string;
  /** The engine table it is on. */
  table: string;
  /** Relative to the migrations directory: "indexes/<name>.sql". */
  file: string;
  sql: string;
  checksum: string;
  /** The statement, comments left out, without its semicolon. */
  statement: string;
  /** What follows `ON <table>`: USING, the columns, INCLUDE, WHERE. */
  tail: string;
}

/** One change to one index, in the order made. */
export interface IndexStep {
  action: 'build' | 'drop' | 'rename';
  /** The index built or dropped, or renamed from. */
  index: string;
  /** For a rename: the new name. */
  to?: string;
  /** The statement, as run. */
  sql: string;
  /** Why: "absent", "its definition differs from the file", … */
  why: string;
}

/** What was done to one index file's index. */
export interface IndexChange {
  file: string;
  steps: string[];
}

const STATEMENT =
  /^create\s+(unique\s+)?index\s+concurrently\s+(?:if\s+not\s+exists\s+)?([a-z_][a-z0-9_]*)\s+on\s+(?:only\s+)?([a-z_][a-z0-9_]*)\s+(\S[\s\S]*?)\s*;?\s*$/i;
/** PostgreSQL's identifier limit, less "_next". */
const MAX_NAME = 63 - '_next'.length;

/** The index files, by name. Each must hold one CREATE INDEX CONCURRENTLY of its own name on an engine table. */
export function readIndexFiles(dir: string): IndexFile[] {
  if (!existsSync(join(dir, 'indexes'))) return [];
  return readdirSync(join(dir, 'indexes'))
    .filter((f) => f.endsWith('.sql'))
    .sort()
    .map((f) => {
      const file = `indexes/${f}`;
      const sql = readFileSync(join(dir, file), 'utf8');
      const name = f.slice(0, -'.sql'.length);
      const statement = sql
        .replace(/--[^\n]*/g, '')
        .trim()
        .replace(/;\s*$/, '');
      const m = STATEMENT.exec(statement);
      if (!m || statement.includes(';')) {
        throw new Error(
          `${file} must hold one statement, "CREATE INDEX CONCURRENTLY ${name} ON <engine table> …", and nothing else`,
        );
      }
      const [, unique, indexName, table, tail] = m;
      if (indexName!.toLowerCase() !== name) {
        throw new Error(`${file} must create the index it is named after (${name}), not ${indexName}`);
      }
      if (!(ENGINE_TABLES as readonly string[]).includes(table!.toLowerCase())) {
        throw new Error(
          `${file}: ${table} is not one of the engine's tables (${ENGINE_TABLES.join(', ')}); an index on a table of this system's goes in a numbered migration`,
        );
      }
      if (unique)
        throw new Error(`${file}: a UNIQUE index cannot be swapped for another definition in place`);
      if (name.length > MAX_NAME)
        throw new Error(`${file}: an index name may have at most ${MAX_NAME} characters`);
      return {
        name,
        table: table!.toLowerCase(),
        file,
        sql,
        checksum: createHash('sha256').update(sql).digest('hex'),
        statement,
        tail: tail!,
      };
    });
}

const IF_NOT_EXISTS = /^create\s+index\s+if\s+not\s+exists\s+([a-z_][a-z0-9_]*)\s+on\b/i;

/**
 * A numbered migration's SQL without the `CREATE INDEX IF NOT EXISTS` of indexes an index file
 * keeps, where that index exists and is valid (the index files ran first). Such a statement builds
 * nothing, but PostgreSQL takes its SHARE lock on the table before it looks, and the migration's
 * transaction would hold it, keeping the engine's writes waiting, until it commits. The released
 * file, and its checksum, stay as they are; only what is run leaves the statement out. Returns the
 * SQL to run (the file's own text when nothing is left out) and the statements left out.
 */
export async function withoutExistingIndexBuilds(
  db: Db,
  sql: string,
  files: readonly IndexFile[],
): Promise<{ sql: string; skipped: string[] }> {
  const names = new Set(files.map((f) => f.name));
  if (![...names].some((name) => sql.includes(name))) return { sql, skipped: [] };
  const kept: string[] = [];
  const skipped: string[] = [];
  for (const statement of splitStatements(sql)) {
    const name = IF_NOT_EXISTS.exec(oneLine(statement))?.[1]?.toLowerCase();
    const state = name && names.has(name) ? await indexState(db, name) : null;
    if (state?.valid) skipped.push(oneLine(statement));
    else kept.push(statement);
  }
  if (skipped.length === 0) return { sql, skipped };
  return { sql: `${kept.join(';\n')};\n`, skipped };
}

/** A definition without the index's and the table's names, to compare two. */
export function comparableDefinition(definition: string): string {
  return definition.replace(/^CREATE (UNIQUE )?INDEX \S+ ON (ONLY )?\S+ /, 'CREATE $1INDEX ON ');
}

/** The statement building `name` with the file's definition. */
function buildStatement(f: IndexFile, name: string): string {
  return `CREATE INDEX CONCURRENTLY ${name} ON ${f.table} ${f.tail}`;
}

/**
 * The steps that bring f's index to its file's definition (`wanted`: pg_get_indexdef of the file's
 * index on a probe), from the catalog as it is now; none when it is there, valid, and the same.
 */
export async function indexSteps(db: Db, f: IndexFile, wanted: string): Promise<IndexStep[]> {
  const next = `${f.name}_next`;
  const current = await indexState(db, f.name);
  const pending = await indexState(db, next);
  for (const s of [current, pending]) {
    if (s && s.table !== f.table) {
      throw new Error(
        `${f.file}: the index ${s.name} exists on ${s.table}, not on ${f.table}: drop or rename it, then run migrate again`,
      );
    }
  }
  const same = (s: IndexState) =>
    s.valid && comparableDefinition(s.definition) === comparableDefinition(wanted);
  const drop = (index: string, why: string): IndexStep => ({
    action: 'drop',
    index,
    sql: `DROP INDEX CONCURRENTLY IF EXISTS ${index}`,
    why,
  });
  const build = (index: string, why: string): IndexStep => ({
    action: 'build',
    index,
    sql: buildStatement(f, index),
    why,
  });
  const rename: IndexStep = {
    action: 'rename',
    index: next,
    to: f.name,
    sql: `ALTER INDEX ${next} RENAME TO ${f.name}`,
    why: `${next} replaces ${f.name}`,
  };
  if (pending && same(pending)) {
    // Built by a run that stopped before the swap: finish it.
    return [...(current ? [drop(f.name, `${next}, built by an earlier migrate, replaces it`)] : []), rename];
  }
  const steps: IndexStep[] = [];
  if (pending) {
    steps.push(
      drop(
        next,
        pending.valid
          ? 'left by an earlier migrate with a definition that is not the file’s'
          : 'INVALID: left by a build that failed or was cancelled',
      ),
    );
  }
  if (!current) steps.push(build(f.name, 'absent'));
  else if (!current.valid) {
    steps.push(
      drop(f.name, 'INVALID: left by a build that failed or was cancelled'),
      build(f.name, 'rebuilt'),
    );
  } else if (!same(current)) {
    steps.push(
      build(next, `${f.name}'s definition differs from the file`),
      drop(f.name, `${next} replaces it`),
      rename,
    );
  }
  return steps;
}

/** "build idx_x (absent): CREATE INDEX CONCURRENTLY …" */
export function describeStep(step: IndexStep): string {
  if (step.action === 'rename') return `renamed ${step.index} to ${step.to}`;
  return `${step.action === 'build' ? 'built' : 'dropped'} ${step.index} (${step.why})`;
}

/**
 * Brings every index file whose table exists to its definition, concurrently, each step under the
 * lock timeouts of `ddl`; records each file once its index matches. Returns what changed.
 *
 * Before building, a transaction open on the table longer than lock_timeout_ms puts the build off
 * (CREATE INDEX CONCURRENTLY would wait for it, then fail part way), retried like a lock timeout:
 * a long engine transaction makes migrate give up having built nothing. A build that still fails
 * part way has its INVALID index dropped at once; if even that cannot be done, the next migrate
 * drops it and builds again.
 */
export async function applyIndexFiles(ddl: LockSafeDdl, files: readonly IndexFile[]): Promise<IndexChange[]> {
  const client = ddl.client;
  const changes: IndexChange[] = [];
  const recorded = new Map((await appliedObjectFiles(client)).map((r) => [r.file, r.checksum]));
  for (const f of files) {
    if (!(await tableExists(client, f.table))) continue;
    const done: string[] = [];
    await ddl.retrying(
      `${f.file} (index ${f.name} on ${f.table})`,
      async () => {
        const wanted = await ddl.transactionOnce(() => probeIndexDefinition(client, f.table, f.tail), false);
        const steps = await indexSteps(client, f, wanted);
        if (steps.some((s) => s.action === 'build')) await ddl.noLongTransactionOn(f.table);
        for (const step of steps) {
          ddl.log(`${f.file}: ${step.sql} (${step.why})`);
          try {
            await ddl.outsideTransaction(() => runStep(client, step), { short: step.action === 'rename' });
          } catch (err) {
            if (step.action === 'build') await dropIfInvalid(ddl, step.index);
            if (err instanceof LockNotTaken) throw err;
            throw new Error(
              `${f.file}: ${step.sql} failed: ${(err as Error).message}. ${await leftBehind(client, f)}`,
              {
                cause: err,
              },
            );
          }
          done.push(describeStep(step));
        }
      },
      () => leftBehind(client, f),
    );
    if (done.length > 0) changes.push({ file: f.file, steps: done });
    if (recorded.get(f.file) !== f.checksum) await recordObjectFile(client, f.file, f.checksum);
  }
  return changes;
}

async function runStep(client: pg.PoolClient, step: IndexStep): Promise<void> {
  if (step.action === 'build') await client.query(step.sql);
  else if (step.action === 'drop') await dropIndexConcurrently(client, step.index);
  else await renameIndex(client, step.index, step.to!);
}

/** After a failed build: its INVALID index dropped (concurrently) if it can be, at once. */
async function dropIfInvalid(ddl: LockSafeDdl, index: string): Promise<void> {
  const state = await indexState(ddl.client, index).catch(() => null);
  if (!state || state.valid) return;
  ddl.log(`dropping ${index}, left INVALID by the build that failed`);
  await ddl
    .outsideTransaction(() => dropIndexConcurrently(ddl.client, index))
    .catch((err: unknown) => ddl.log(`could not drop ${index} now (${(err as Error).message})`));
}

/** What a run that gave up left of f's index, for its message. */
async function leftBehind(client: pg.PoolClient, f: IndexFile): Promise<string> {
  const next = `${f.name}_next`;
  const invalid: string[] = [];
  let replacement = false;
  for (const name of [f.name, next]) {
    const state = await indexState(client, name).catch(() => null);
    if (state && !state.valid) invalid.push(name);
    else if (state && name === next) replacement = true;
  }
  const parts: string[] = [];
  if (invalid.length > 0) {
    parts.push(
      `It left the INVALID index ${invalid.join(' and ')} (a build that did not finish; PostgreSQL does not read it): the next migrate drops it and builds again.`,
    );
  }
  if (replacement) {
    parts.push(
      `It left ${next}, built with the file's definition: the next migrate puts it in place of ${f.name}.`,
    );
  }
  if (parts.length === 0) parts.push('No index was left half-built.');
  parts.push('Nothing after it was applied.');
  return parts.join(' ');
}
