/**
 * The migration runner: safe when several processes start at once, records what it applied,
 * refuses changed or unknown migrations; and the schema's structural promises (every foreign key
 * indexed).
 */
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { migrate, migrationStatus, readMigrations, readObjectFiles } from '../../src/install/sql.ts';
import { migrationsDir } from '../../src/paths.ts';
import { runCli } from '../helpers/cli-process.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';

describe('on an empty database', () => {
  let empty: TestDatabase;
  beforeAll(async () => {
    empty = await createTestDatabase({ template: false });
  });
  afterAll(async () => {
    await empty.drop();
  });

  it('four `migrate` processes at once: all succeed, each migration applied exactly once', async () => {
    const runs = await Promise.all(
      [1, 2, 3, 4].map(() => runCli(['migrate', '--json'], { DATABASE_URL: empty.url })),
    );
    for (const r of runs) expect(r.code).toBe(0);
    const applied = runs.flatMap((r) => JSON.parse(r.stdout).applied);
    expect(applied.sort()).toEqual(
      readMigrations()
        .map((m) => m.file)
        .sort(),
    );
    const { rows } = await empty.pool.query(
      'SELECT version, name FROM tasker_lifecycle_migrations ORDER BY version',
    );
    expect(rows.map((r) => r.version)).toEqual(readMigrations().map((m) => m.version));
    // The object files too: each applied by exactly one of the four.
    const objects = runs.flatMap((r) => JSON.parse(r.stdout).objectsApplied);
    expect(objects.sort()).toEqual(
      readObjectFiles()
        .map((o) => o.file)
        .sort(),
    );
    // The indexes on the engine's tables: 0001 and 0060 made two of them with the definitions of
    // their day; one of the four replaced each with its file's, concurrently, and no other did.
    const indexes = runs.flatMap((r) => JSON.parse(r.stdout).indexes.map((i: { file: string }) => i.file));
    expect(indexes.sort()).toEqual([
      'indexes/idx_task_transitions_in_flight.sql',
      'indexes/idx_tasks_unfinished_by_template.sql',
    ]);
    expect(await migrationStatus(empty.pool)).toEqual({
      pending: [],
      unknown: [],
      objectsMissing: [],
      objectsChanged: [],
    });
  });
});

describe('on a migrated database', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });

  it('running again applies nothing', async () => {
    expect(await migrate(db.pool)).toEqual({
      applied: [],
      alreadyApplied: readMigrations().length,
      objectsApplied: [],
      objectsUnchanged: readObjectFiles().length,
      indexes: [],
      engineTables: 'verified',
      archiveChanges: [],
      archiveChangesLeft: [],
      archivalKeyProblems: [],
      partitionChanges: [],
    });
  });

  it('refuses a migration file changed after it was applied', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tasker-migrations-'));
    cpSync(migrationsDir, dir, { recursive: true });
    writeFileSync(join(dir, '0002_dlq.sql'), '-- edited\n', { flag: 'a' });
    await expect(migrate(db.pool, dir)).rejects.toThrow(
      /migration 0002_dlq\.sql was changed after it was applied/,
    );
  });

  it('refuses a database that has a migration this build does not know, and reports pending ones', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tasker-migrations-'));
    cpSync(migrationsDir, dir, { recursive: true });
    writeFileSync(join(dir, '9999_future.sql'), 'SELECT 1;');
    const status = await migrationStatus(db.pool, dir);
    expect(status.pending.map((m) => m.file)).toEqual(['9999_future.sql']);
    await db.pool.query(
      `INSERT INTO tasker_lifecycle_migrations (version, name, checksum) VALUES (9998, 'newer', 'x')`,
    );
    try {
      await expect(migrate(db.pool)).rejects.toThrow(/migration\(s\) 9998 that this build does not have/);
    } finally {
      await db.pool.query('DELETE FROM tasker_lifecycle_migrations WHERE version = 9998');
    }
  });

  it('every foreign key has an index that starts with its columns', async () => {
    const { rows } = await db.pool.query(`
      SELECT c.conrelid::regclass::text AS table_name, c.conname
        FROM pg_constraint c
       WHERE c.contype = 'f'
         AND c.connamespace = 'public'::regnamespace
         AND NOT EXISTS (
           SELECT 1 FROM pg_index i
            WHERE i.indrelid = c.conrelid
              AND (i.indkey::int2[])[0:array_length(c.conkey, 1) - 1] = c.conkey)`);
    expect(rows).toEqual([]);
  });
});
