/**
 * How `migrate --plan` reads SQL (src/install/statements.ts): statements split where PostgreSQL
 * would end them, and each statement's table locks and rewrites read from its text; and the index
 * files' rules (src/install/index-files.ts).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { comparableDefinition, readIndexFiles } from '../../src/install/index-files.ts';
import { readMigrations, readObjectFiles } from '../../src/install/sql.ts';
import { splitStatements, statementEffect } from '../../src/install/statements.ts';

describe('splitStatements', () => {
  it('splits at semicolons outside quotes, dollar quotes and comments, and drops what is only comments', () => {
    const sql = `
      -- a comment; with a semicolon
      CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $body$
      BEGIN RETURN 'a;b' || $$;$$; END $body$;
      /* block; /* nested; */ still comment; */
      SELECT 'it''s; one', E'back\\'slash;', "odd;name" FROM t;
      SELECT $1::int;
      -- trailing comment only;
    `;
    expect(splitStatements(sql).map((s) => s.replace(/\s+/g, ' ').trim())).toEqual([
      "-- a comment; with a semicolon CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $body$ BEGIN RETURN 'a;b' || $$;$$; END $body$",
      `/* block; /* nested; */ still comment; */ SELECT 'it''s; one', E'back\\'slash;', "odd;name" FROM t`,
      'SELECT $1::int',
    ]);
  });
});

describe('statementEffect', () => {
  it.each([
    [
      'CREATE TABLE d (id uuid PRIMARY KEY, task_uuid uuid NOT NULL REFERENCES tasker_tasks (task_uuid))',
      [
        { relation: 'd', mode: 'ACCESS EXCLUSIVE', created: true },
        { relation: 'tasker_tasks', mode: 'SHARE ROW EXCLUSIVE' },
      ],
      false,
    ],
    [
      'CREATE TABLE a (LIKE tasker_tasks, archived_at timestamptz)',
      [
        { relation: 'a', mode: 'ACCESS EXCLUSIVE', created: true },
        { relation: 'tasker_tasks', mode: 'ACCESS SHARE' },
      ],
      false,
    ],
    [
      'CREATE INDEX CONCURRENTLY i ON tasker_task_transitions (created_at)',
      [{ relation: 'tasker_task_transitions', mode: 'SHARE UPDATE EXCLUSIVE' }],
      false,
    ],
    [
      'CREATE INDEX IF NOT EXISTS i ON tasker_tasks (a) WHERE NOT complete',
      [{ relation: 'tasker_tasks', mode: 'SHARE' }],
      false,
    ],
    ['DROP INDEX IF EXISTS i', [{ relation: 'i', mode: 'ACCESS EXCLUSIVE', index: true }], false],
    [
      'ALTER INDEX i_next RENAME TO i',
      [{ relation: 'i_next', mode: 'SHARE UPDATE EXCLUSIVE', index: true }],
      false,
    ],
    ['ALTER TABLE t ADD COLUMN c timestamptz', [{ relation: 't', mode: 'ACCESS EXCLUSIVE' }], false],
    [
      'ALTER TABLE t ADD COLUMN c timestamptz DEFAULT clock_timestamp()',
      [{ relation: 't', mode: 'ACCESS EXCLUSIVE' }],
      true,
    ],
    ['ALTER TABLE t ALTER COLUMN c TYPE bigint', [{ relation: 't', mode: 'ACCESS EXCLUSIVE' }], null],
    [
      'ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (x) REFERENCES tasker_tasks (task_uuid) NOT VALID',
      [
        { relation: 't', mode: 'SHARE ROW EXCLUSIVE' },
        { relation: 'tasker_tasks', mode: 'SHARE ROW EXCLUSIVE' },
      ],
      false,
    ],
    ['ALTER TABLE t VALIDATE CONSTRAINT fk', [{ relation: 't', mode: 'SHARE UPDATE EXCLUSIVE' }], false],
    [
      'CREATE OR REPLACE TRIGGER u BEFORE UPDATE ON tasker_tasks_dlq FOR EACH ROW EXECUTE FUNCTION f()',
      [{ relation: 'tasker_tasks_dlq', mode: 'SHARE ROW EXCLUSIVE' }],
      false,
    ],
    ['CREATE OR REPLACE VIEW v AS SELECT 1', [{ relation: 'v', mode: 'ACCESS EXCLUSIVE' }], false],
    ['CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ UPDATE x SET a = 1 $$', [], false],
    [
      "INSERT INTO s (k) VALUES ('a') ON CONFLICT (k) DO UPDATE SET k = excluded.k",
      [{ relation: 's', mode: 'ROW EXCLUSIVE' }],
      false,
    ],
    ['UPDATE tasker_tasks_dlq SET a = 1', [{ relation: 'tasker_tasks_dlq', mode: 'ROW EXCLUSIVE' }], false],
    ['DO $$ BEGIN PERFORM 1; END $$', [], null],
    ['VACUUM FULL t', [{ relation: 't', mode: 'ACCESS EXCLUSIVE' }], true],
    ['REINDEX TABLE t', [], null],
  ])('%s', (statement, locks, rewrites) => {
    const effect = statementEffect(statement);
    expect(effect.locks).toEqual(locks);
    expect(effect.rewrites).toBe(rewrites);
  });

  it('reads every statement of every migration and object file (none unknown)', () => {
    const unknown = [...readMigrations(), ...readObjectFiles()].flatMap((f) =>
      splitStatements(f.sql)
        .filter((s) => /cannot read|unknown/.test(statementEffect(s).note ?? ''))
        .map((s) => `${f.file}: ${s.slice(0, 80)}`),
    );
    expect(unknown).toEqual([]);
  });
});

describe('index files', () => {
  const dirWith = (name: string, sql: string) => {
    const dir = mkdtempSync(join(tmpdir(), 'tasker-index-files-'));
    mkdirSync(join(dir, 'indexes'));
    writeFileSync(join(dir, 'indexes', `${name}.sql`), sql);
    return dir;
  };

  it('each holds one CREATE INDEX CONCURRENTLY of its own name on an engine table', () => {
    expect(
      readIndexFiles(
        dirWith('idx_a', '-- why\nCREATE INDEX CONCURRENTLY idx_a ON tasker_tasks (created_at);\n'),
      ),
    ).toMatchObject([
      { name: 'idx_a', table: 'tasker_tasks', file: 'indexes/idx_a.sql', tail: '(created_at)' },
    ]);
    expect(() =>
      readIndexFiles(dirWith('idx_a', 'CREATE INDEX idx_a ON tasker_tasks (created_at);')),
    ).toThrow(
      'indexes/idx_a.sql must hold one statement, "CREATE INDEX CONCURRENTLY idx_a ON <engine table> …", and nothing else',
    );
    expect(() =>
      readIndexFiles(dirWith('idx_a', 'CREATE INDEX CONCURRENTLY idx_b ON tasker_tasks (created_at);')),
    ).toThrow('indexes/idx_a.sql must create the index it is named after (idx_a), not idx_b');
    expect(() =>
      readIndexFiles(dirWith('idx_a', 'CREATE INDEX CONCURRENTLY idx_a ON tasker_tasks_dlq (task_uuid);')),
    ).toThrow(/tasker_tasks_dlq is not one of the engine's tables .* goes in a numbered migration/);
    expect(() =>
      readIndexFiles(
        dirWith(
          'idx_a',
          'CREATE INDEX CONCURRENTLY idx_a ON tasker_tasks (a); CREATE INDEX CONCURRENTLY idx_c ON tasker_tasks (b);',
        ),
      ),
    ).toThrow(/must hold one statement/);
  });

  it('compares definitions without the names of the index and its table', () => {
    expect(
      comparableDefinition(
        'CREATE INDEX idx_x ON public.tasker_tasks USING btree (named_task_uuid, created_at) WHERE (NOT complete)',
      ),
    ).toBe(
      comparableDefinition(
        'CREATE INDEX tasker_lifecycle_index_probe_idx ON pg_temp_3.tasker_lifecycle_index_probe USING btree (named_task_uuid, created_at) WHERE (NOT complete)',
      ),
    );
  });
});
