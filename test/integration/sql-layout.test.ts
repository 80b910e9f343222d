/**
 * The SQL layout: tables, types, indexes and data changes in numbered migrations; every function,
 * view and trigger in a file of its own (migrations/functions|views|triggers), applied when its
 * checksum changes. A database migrated by the previous layout (every object restated in the
 * numbered files, up to commit 7ef2c80) moves to this one with no change to any object, and ends
 * identical to one migrated from scratch.
 */
import { execFileSync } from 'node:child_process';
import {
  appendFileSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  CHECKSUMS_BEFORE_OBJECT_FILES,
  migrate,
  migrationStatus,
  readMigrations,
  readObjectFiles,
} from '../../src/install/sql.ts';
import { migrationsDir, projectRoot } from '../../src/paths.ts';
import { catalogSnapshot } from '../helpers/catalog.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';

/** The last commit whose numbered migrations restated every function, view and trigger. */
const PREVIOUS_LAYOUT = '7ef2c80896932dc9faa2f3fe707e856bcb3b6af3';
/** The commit that moved them to files of their own, changing no object. */
const LAYOUT_CHANGE = '5ffe197ab757246e3e74fc5f00f25e87c93ad4d1';
const BOOKKEEPING = ['tasker_lifecycle_migrations', 'tasker_lifecycle_sql_objects'];

/**
 * A commit's migrations directory (from git), with numbered files up to a version only, in a
 * directory of its own.
 */
function migrationsAt(commit: string, upToVersion = Number.POSITIVE_INFINITY): string {
  const dir = mkdtempSync(join(tmpdir(), 'tasker-migrations-at-'));
  const git = (...args: string[]) => execFileSync('git', args, { cwd: projectRoot, encoding: 'utf8' });
  for (const path of git('ls-tree', '-r', '--name-only', commit, 'migrations/').trim().split('\n')) {
    const file = path.slice('migrations/'.length);
    if (!file.endsWith('.sql') || Number(file.slice(0, 4)) > upToVersion) continue;
    mkdirSync(join(dir, dirname(file)), { recursive: true });
    writeFileSync(join(dir, file), git('show', `${commit}:${path}`));
  }
  return dir;
}

/** When each of our functions was last written (pg_proc.xmin): unchanged unless re-created. */
async function functionVersions(db: TestDatabase): Promise<Record<string, string>> {
  const { rows } = await db.pool.query<{ name: string; xmin: string }>(
    `SELECT proname AS name, xmin::text FROM pg_proc WHERE pronamespace = 'public'::regnamespace`,
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.xmin]));
}

let fromScratch: TestDatabase;
beforeAll(async () => {
  fromScratch = await createTestDatabase(); // the template: migrated from scratch by this build
});
afterAll(async () => {
  await fromScratch.drop();
});

describe('a database migrated by the previous layout', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase({ template: false });
  });
  afterAll(async () => {
    await db.drop();
  });

  it('moves to the object files with no change to any object, and ends identical to one migrated from scratch', async () => {
    const old = migrationsAt(PREVIOUS_LAYOUT);
    // The previous layout's files are exactly the ones whose checksums this build accepts.
    for (const m of readMigrations(old)) {
      const now = readMigrations().find((n) => n.version === m.version)!;
      expect([now.checksum, CHECKSUMS_BEFORE_OBJECT_FILES[m.version]]).toContain(m.checksum);
    }
    await migrate(db.pool, old);
    const before = await catalogSnapshot(db.pool, BOOKKEEPING);
    expect(Object.keys(before.functions).length).toBeGreaterThan(30);

    // The commit that moved every object to its file changed none of them…
    const moved = migrationsAt(LAYOUT_CHANGE);
    const result = await migrate(db.pool, moved);
    expect(result.applied).toEqual([]);
    expect(result.objectsApplied.sort()).toEqual(
      readObjectFiles(moved)
        .map((o) => o.file)
        .sort(),
    );
    expect(await catalogSnapshot(db.pool, BOOKKEEPING)).toEqual(before); // every pg_get_functiondef, and the rest

    // …and this build's files take it where they take a database migrated from scratch.
    await migrate(db.pool);
    expect(await catalogSnapshot(db.pool, BOOKKEEPING)).toEqual(
      await catalogSnapshot(fromScratch.pool, BOOKKEEPING),
    );
    expect(await migrationStatus(db.pool)).toEqual({
      pending: [],
      unknown: [],
      objectsMissing: [],
      objectsChanged: [],
    });
  });
});

it('a database the previous layout took only up to 0060 ends identical to one migrated from scratch', async () => {
  const db = await createTestDatabase({ template: false });
  try {
    await migrate(db.pool, migrationsAt(PREVIOUS_LAYOUT, 60));
    const result = await migrate(db.pool);
    expect(result.applied).toEqual(
      readMigrations()
        .filter((m) => m.version > 60)
        .map((m) => m.file),
    );
    expect(await catalogSnapshot(db.pool, BOOKKEEPING)).toEqual(
      await catalogSnapshot(fromScratch.pool, BOOKKEEPING),
    );
  } finally {
    await db.drop();
  }
});

describe('object files', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });

  it('applying them again changes nothing', async () => {
    const before = await functionVersions(db);
    const result = await migrate(db.pool);
    expect(result).toMatchObject({ applied: [], objectsApplied: [] });
    expect(result.objectsUnchanged).toBe(readObjectFiles().length);
    expect(await functionVersions(db)).toEqual(before);
  });

  it('a changed file is applied again, and only it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tasker-migrations-'));
    cpSync(migrationsDir, dir, { recursive: true });
    appendFileSync(join(dir, 'functions', 'dlq_and_more.sql'), '-- edited\n');
    const before = await functionVersions(db);
    expect((await migrationStatus(db.pool, dir)).objectsChanged).toEqual(['functions/dlq_and_more.sql']);

    const result = await migrate(db.pool, dir);
    expect(result.objectsApplied).toEqual(['functions/dlq_and_more.sql']);
    const after = await functionVersions(db);
    expect(after.dlq_and_more).not.toBe(before.dlq_and_more);
    expect({ ...after, dlq_and_more: 'x' }).toEqual({ ...before, dlq_and_more: 'x' });
    await migrate(db.pool); // back to this build's files
  });

  it('a file that fails rolls back every object file of that run, and names the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tasker-migrations-'));
    cpSync(migrationsDir, dir, { recursive: true });
    appendFileSync(join(dir, 'functions', 'dlq_and_more.sql'), '-- edited\n');
    writeFileSync(
      join(dir, 'views', 'v_dlq_dashboard.sql'),
      'CREATE OR REPLACE VIEW v_dlq_dashboard AS SELECT no_such_column FROM tasker_tasks_dlq;\n',
    );
    const before = await functionVersions(db);
    await expect(migrate(db.pool, dir)).rejects.toThrow(
      /views\/v_dlq_dashboard\.sql: column "no_such_column"/,
    );
    expect(await functionVersions(db)).toEqual(before);
    expect((await migrationStatus(db.pool, dir)).objectsChanged.sort()).toEqual([
      'functions/dlq_and_more.sql',
      'views/v_dlq_dashboard.sql',
    ]);
  });

  it('a file must define only the object it is named after, with CREATE OR REPLACE', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tasker-migrations-'));
    mkdirSync(join(dir, 'functions'));
    writeFileSync(
      join(dir, 'functions', 'one.sql'),
      'CREATE FUNCTION one() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;',
    );
    expect(() => readObjectFiles(dir)).toThrow(/functions\/one\.sql: write "CREATE OR REPLACE FUNCTION one"/);
    writeFileSync(
      join(dir, 'functions', 'one.sql'),
      'CREATE OR REPLACE FUNCTION two() RETURNS int LANGUAGE sql AS $$ SELECT 2 $$;',
    );
    expect(() => readObjectFiles(dir)).toThrow(
      /functions\/one\.sql must define only function one, not function two/,
    );
  });
});

it('every function body compiles (migrate applies them with check_function_bodies off)', async () => {
  const { rows } = await fromScratch.pool.query<{ oid: number; name: string; lang: string }>(
    `SELECT p.oid, p.oid::regprocedure::text AS name, l.lanname AS lang
       FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
      WHERE p.pronamespace = 'public'::regnamespace AND l.lanname IN ('plpgsql', 'sql')`,
  );
  expect(rows.length).toBeGreaterThan(30);
  const broken: string[] = [];
  for (const r of rows) {
    const validator = r.lang === 'plpgsql' ? 'plpgsql_validator' : 'fmgr_sql_validator';
    await fromScratch.pool
      .query(`SELECT ${validator}($1)`, [r.oid])
      .catch((err: Error) => broken.push(`${r.name}: ${err.message}`));
  }
  expect(broken).toEqual([]);
});

describe('each function, view and trigger is defined in exactly one file', () => {
  /** Every `CREATE [OR REPLACE] FUNCTION|VIEW|TRIGGER name` in any .sql file under migrations/. */
  function definitions(): Map<string, string[]> {
    const found = new Map<string, string[]>();
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (entry.name.endsWith('.sql')) {
          const code = readFileSync(path, 'utf8').replace(/--[^\n]*/g, '');
          for (const m of code.matchAll(
            /\bcreate\s+(?:or\s+replace\s+)?(function|view|trigger)\s+([a-z_0-9]+)/gi,
          )) {
            const key = `${m[1]!.toLowerCase()} ${m[2]!.toLowerCase()}`;
            const files = found.get(key) ?? [];
            found.set(key, [...new Set([...files, relative(migrationsDir, path)])]);
          }
        }
      }
    };
    walk(migrationsDir);
    return found;
  }

  it('no definition appears in two files', () => {
    const twice = [...definitions()].filter(([, files]) => files.length > 1);
    expect(twice).toEqual([]);
  });

  it("every object in the migrated database has its file: the engine's in 0001, ours in functions/, views/ or triggers/", async () => {
    const { rows } = await fromScratch.pool.query<{ kind: string; name: string }>(`
      SELECT DISTINCT 'function' AS kind, proname::text AS name FROM pg_proc
       WHERE pronamespace = 'public'::regnamespace
      UNION ALL
      SELECT 'view', relname::text FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'v'
      UNION ALL
      SELECT 'trigger', tgname::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
       WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace`);
    const defined = definitions();
    const where = Object.fromEntries(
      rows.map((r) => [`${r.kind} ${r.name}`, defined.get(`${r.kind} ${r.name}`)]),
    );
    const expected = Object.fromEntries(
      rows.map((r) => {
        const own = `${r.kind}s/${r.name}.sql`;
        const engine = (defined.get(`${r.kind} ${r.name}`) ?? []).includes('0001_core_tables.sql');
        return [`${r.kind} ${r.name}`, [engine ? '0001_core_tables.sql' : own]];
      }),
    );
    expect(where).toEqual(expected);
    // …and every object file's object exists.
    const inDatabase = new Set(rows.map((r) => `${r.kind} ${r.name}`));
    expect(readObjectFiles().filter((o) => !inDatabase.has(`${o.kind} ${o.name}`))).toEqual([]);
  });
});
