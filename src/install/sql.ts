import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { type MigrateConfig, MigrateSchema } from '../config/schema.ts';
import {
  type AppliedMigration,
  appliedMigrations,
  appliedObjectFiles,
  createSchemaHistoryTables,
  lockSchemaChanges,
  recordMigration,
  recordObjectFile,
  type SchemaLockHolder,
  unlockSchemaChanges,
} from '../db/queries/schema-history.ts';
import { EngineSchemaError, MigrateBlockedError } from '../errors.ts';
import { migrationsDir } from '../paths.ts';
import { partitionArchiveTables } from './archive-partitions.ts';
import {
  type ArchiveTableOptions,
  type ArchiveTablesResult,
  DEFAULT_ARCHIVE_TABLE_OPTIONS,
  followLiveTables,
} from './archive-tables.ts';
import { engineSchemaProblems, hasEngineTables } from './engine-schema.ts';
import {
  applyIndexFiles,
  type IndexChange,
  readIndexFiles,
  withoutExistingIndexBuilds,
} from './index-files.ts';
import { LockSafeDdl } from './lock-safe-ddl.ts';

/**
 * This system's SQL, in two kinds of file (migrations/README.md):
 *
 * - Versioned migrations, migrations/NNNN_name.sql: tables, types, indexes and data changes,
 *   forward-only and immutable once applied, each applied once, in order, in its own transaction,
 *   and recorded in tasker_lifecycle_migrations (version, name, checksum). A file changed after it
 *   was applied is refused, as is a database that has a migration this build does not know.
 * - Object files, migrations/functions|views|triggers/<name>.sql: one function (all its
 *   signatures), view or trigger each, written `CREATE OR REPLACE`, applied after the versioned
 *   migrations whenever the file's checksum differs from the one recorded in
 *   tasker_lifecycle_sql_objects (Flyway's repeatable migrations). A function's history is the git
 *   history of its one file. All files that changed are applied in one transaction: functions
 *   (with check_function_bodies off, so their order does not matter), then views (a view after the
 *   views it names), then triggers.
 *
 * - Index files, migrations/indexes/<name>.sql: one index on an engine table each, built
 *   CONCURRENTLY outside any transaction, so the engine's reads and writes go on while it builds
 *   (index-files.ts). Applied before the pending versioned migrations where the engine's tables
 *   exist, and again after them.
 *
 * Every schema change runs under a short lock_timeout and is retried with backoff, then given up
 * naming the session in its way ([migrate], lock-safe-ddl.ts): an engine write never queues
 * behind `migrate` for longer than that timeout and the moment the change holds its lock.
 *
 * A session advisory lock makes it safe for any number of processes to run this at once: one
 * applies, the others wait (polling, up to migrate.schema_lock_wait_seconds) and then find nothing
 * left to do. The lock belongs to the session, so the pool passed in must reach PostgreSQL itself
 * (database.direct_url), never PgBouncer in transaction pooling mode, which would hand the lock's
 * server connection to other clients.
 *
 * The engine's tables belong to the engine (tasker-core). Migration 0001 creates them only where
 * none exists (standalone, demo, tests). Where any exists, they are checked against what this
 * system needs (engine-schema.ts) and refused with an EngineSchemaError naming each gap, before
 * changing anything; when all is there, 0001 is recorded as adopted instead of run. Last, the
 * archive tables are brought up to date with the live tables (columns the engine added, types it
 * widened; archive-tables.ts), and the foreign keys archival relies on are checked.
 */

/** The migration that creates the engine's tables (see above). */
export const ENGINE_MIGRATION_VERSION = 1;

/**
 * The checksums the versioned files had before their functions, views and triggers moved to files
 * of their own (commit 7ef2c80). A database migrated then recorded these; it is accepted as having
 * applied today's smaller file, because the objects the old file defined now come from the object
 * files, unchanged (test/integration/sql-layout.test.ts migrates with the old files, then with
 * these, and compares the catalog with a database migrated from scratch). The recorded checksum is
 * left as it is, so the previous build's workers, which check it, keep starting during an upgrade.
 */
export const CHECKSUMS_BEFORE_OBJECT_FILES: Readonly<Record<number, string>> = {
  2: 'ce73fbc90523dfe9dd4b5dcc8a4711ad2f2b39faf3c4578388da218e6f7f52e6',
  3: 'cf5e89d67c36e5fb90b81a54c7da38122d03b1cb5a4b84f91960c9f4667c9375',
  4: '0b9f9a0f19567eef82f5d9600b4330e3e66cc3084c053ec21c7eb4b5c0dc2070',
  5: '5b2dab3268006ea675d6903a3fa9cdc5092d0a4232ecbce4c3d43345c34c8558',
  6: 'f51064ac9c435ed67fb5631e1bd73a1c0ae71aa7ed574bd59615b1cfb8aaa907',
  10: 'e126beb6737886f6303e23ac6dcdfca028b56db51cc033841ce407d74e0d889a',
  30: 'd3af0ba2d148e105506c061b3a9ebc558f45de5f94d18445bcbe15ef0f30e3c5',
  40: 'af9ad5079fb45467943bc3b9586d454947f0038c7d0d9fb80ba02d1725878ed9',
  60: '48fd6c30caf5c9addacb8e6a47a834ecfdf262b781aa8a1766ac79f7ef00f26e',
  70: '5c642fe8660967c1b1752d03728ec707c0e3b862a5010af9e70d0a0789cb92e0',
  110: 'fa0e6deda26b6c7210cfeef104b955810c6c0a19a719e6c75088cfe8b37550ce',
  120: '6c941aa952e8131bbfce57a15d9ec55891da7d9c59456ae8a29e1d341fd88c52',
  130: '8bf14519e1be4c8aca10cce9d18b537e740a0d50713a1d8b383ba86d81cb17a5',
};

export interface Migration {
  version: number;
  name: string;
  file: string;
  sql: string;
  checksum: string;
}

export type ObjectKind = 'function' | 'view' | 'trigger';

/** One file of migrations/functions|views|triggers. */
export interface ObjectFile {
  kind: ObjectKind;
  /** The object's name: the file's name without .sql. */
  name: string;
  /** Relative to the migrations directory, e.g. "functions/archive_completed_tasks.sql". */
  file: string;
  sql: string;
  checksum: string;
}

export interface MigrationResult extends ArchiveTablesResult {
  applied: string[];
  alreadyApplied: number;
  /** Object files applied because their checksum changed (or they were new), in the order applied. */
  objectsApplied: string[];
  objectsUnchanged: number;
  /** Indexes on the engine's tables built, rebuilt or replaced (migrations/indexes/), with the steps taken. */
  indexes: IndexChange[];
  /**
   * The engine's tables: created by 0001 here, adopted (they existed; 0001 recorded, not run), or
   * verified (0001 applied before; checked again).
   */
  engineTables: 'created' | 'adopted' | 'verified';
  /** The archive's monthly partitions: adopted, made ahead of need (src/install/archive-partitions.ts). */
  partitionChanges: string[];
}

export interface MigrationStatus {
  pending: Migration[];
  /** Applied versions with no file here: the database is newer than this build. */
  unknown: number[];
  /** Object files (and index files) never applied to this database. */
  objectsMissing: string[];
  /**
   * Object files whose checksum differs from the one applied: this build's version of the object
   * is not the database's (a newer build migrated, or this build's `migrate` has not run yet).
   */
  objectsChanged: string[];
}

const FILE_PATTERN = /^(\d{4})_([a-z0-9_]+)\.sql$/;
const OBJECT_DIRS: ReadonlyArray<[string, ObjectKind]> = [
  ['functions', 'function'],
  ['views', 'view'],
  ['triggers', 'trigger'],
];

export function readMigrations(dir = migrationsDir): Migration[] {
  return readdirSync(dir)
    .filter((f) => FILE_PATTERN.test(f))
    .sort()
    .map((file) => {
      const [, version, name] = FILE_PATTERN.exec(file)!;
      const sql = readFileSync(join(dir, file), 'utf8');
      return { version: Number(version), name: name!, file, sql, checksum: sha256(sql) };
    });
}

/**
 * The object files in the order they are applied: functions, then views (each after the views it
 * names), then triggers; by name within a kind. A file must define only the object it is named
 * after, with CREATE OR REPLACE (so applying it again is harmless); anything else is refused here.
 */
export function readObjectFiles(dir = migrationsDir): ObjectFile[] {
  const files: ObjectFile[] = [];
  for (const [sub, kind] of OBJECT_DIRS) {
    if (!existsSync(join(dir, sub))) continue;
    const ofKind = readdirSync(join(dir, sub))
      .filter((f) => f.endsWith('.sql'))
      .sort()
      .map((f) => {
        const sql = readFileSync(join(dir, sub, f), 'utf8');
        const file = `${sub}/${f}`;
        const name = f.slice(0, -'.sql'.length);
        checkDefinesOnly(file, kind, name, sql);
        return { kind, name, file, sql, checksum: sha256(sql) };
      });
    files.push(...(kind === 'view' ? namedOnesFirst(ofKind) : ofKind));
  }
  return files;
}

function checkDefinesOnly(file: string, kind: ObjectKind, name: string, sql: string): void {
  const code = withoutComments(sql);
  const creates = [
    ...code.matchAll(/\bcreate\s+(or\s+replace\s+)?(function|view|trigger)\s+([a-z_0-9."]+)/gi),
  ];
  if (creates.length === 0) throw new Error(`${file} defines no ${kind}: it must create ${kind} ${name}`);
  for (const [statement, orReplace, createdKind, createdName] of creates) {
    if (createdKind!.toLowerCase() !== kind || createdName!.toLowerCase() !== name) {
      throw new Error(
        `${file} must define only ${kind} ${name}, not ${createdKind!.toLowerCase()} ${createdName}`,
      );
    }
    if (!orReplace)
      throw new Error(
        `${file}: write "${statement.replace(/^create/i, 'CREATE OR REPLACE')}", so it can be applied again`,
      );
  }
}

/** Views in an order where each comes after the views its text names (others keep their order). */
function namedOnesFirst(views: ObjectFile[]): ObjectFile[] {
  const ordered: ObjectFile[] = [];
  const visiting = new Set<string>();
  const visit = (v: ObjectFile) => {
    if (ordered.includes(v) || visiting.has(v.name)) return;
    visiting.add(v.name);
    const code = withoutComments(v.sql);
    for (const other of views) {
      if (other !== v && new RegExp(`\\b${other.name}\\b`).test(code)) visit(other);
    }
    ordered.push(v);
  };
  for (const v of views) visit(v);
  return ordered;
}

function withoutComments(sql: string): string {
  return sql.replace(/--[^\n]*/g, '');
}

export interface MigrateOptions {
  /** [migrate] of the configuration: lock and statement timeouts, retries; its defaults if absent. */
  settings?: Readonly<MigrateConfig>;
  /** Progress lines (an index build on a large table takes minutes). */
  log?: (message: string) => void;
  /** How the archive tables follow the live ones (src/install/archive-tables.ts). */
  archive?: ArchiveTableOptions;
}

export async function migrate(
  pool: pg.Pool,
  dir = migrationsDir,
  options: MigrateOptions = {},
): Promise<MigrationResult> {
  const settings = options.settings ?? MigrateSchema.parse({});
  const migrations = readMigrations(dir);
  const objects = readObjectFiles(dir);
  const indexFiles = readIndexFiles(dir);
  const client = await pool.connect();
  const ddl = new LockSafeDdl(client, {
    settings,
    // Sees who holds a lock this session waits for: the waiting session cannot ask.
    connectWatcher: async () => {
      const watcher = new pg.Client({ ...pool.options, application_name: 'tasker-lifecycle-migrate-watch' });
      await watcher.connect();
      return watcher;
    },
    ...(options.log ? { log: options.log } : {}),
  });
  try {
    const lock = await lockSchemaChanges(client, settings.schema_lock_wait_seconds * 1000);
    if (!lock.held) throw schemaLockBusy(lock.holder, lock.waitedMs);
    try {
      await ddl.transaction('creating the schema history tables', () => createSchemaHistoryTables(client));
      const pending = pendingMigrations(migrations, await appliedMigrations(client));
      // Before anything is changed: the engine's tables, if any exist, must have what we need.
      const engineFirst = await hasEngineTables(client);
      const core = migrations.find((m) => m.version === ENGINE_MIGRATION_VERSION);
      if (engineFirst && core) {
        const problems = await engineSchemaProblems(client, core.sql);
        if (problems.length > 0) {
          throw new EngineSchemaError(
            "the workflow engine's tables in this database lack what tasker-lifecycle needs (nothing was changed)",
            problems,
          );
        }
      }
      // The indexes on the engine's tables, concurrently, before the numbered migrations that name
      // them (whose CREATE INDEX IF NOT EXISTS then build nothing).
      const indexes = engineFirst ? await applyIndexFiles(ddl, indexFiles) : [];
      const done: string[] = [];
      let engineTables: MigrationResult['engineTables'] = 'verified';
      for (const m of pending) {
        const adopt = m.version === ENGINE_MIGRATION_VERSION && engineFirst;
        await ddl.transaction(`migration ${m.file}`, async () => {
          if (!adopt) {
            // Its CREATE INDEX IF NOT EXISTS of an index the index files built would take the
            // table's SHARE lock to build nothing: left out of what is run.
            const { sql, skipped } = await withoutExistingIndexBuilds(client, m.sql, indexFiles);
            for (const statement of skipped)
              ddl.log(`${m.file}: not run, the index exists (migrations/indexes/): ${statement}`);
            try {
              await client.query(sql);
            } catch (err) {
              throw Object.assign(
                new Error(`migration ${m.file} failed: ${(err as Error).message}`, { cause: err }),
                {
                  code: (err as { code?: string }).code,
                },
              );
            }
          }
          await recordMigration(client, m);
        });
        if (m.version === ENGINE_MIGRATION_VERSION) engineTables = adopt ? 'adopted' : 'created';
        if (!adopt) done.push(m.file);
      }
      const objectsApplied = await applyObjectFiles(ddl, objects);
      // Again: where 0001 created the engine's tables in this run, or a migration changed an index.
      for (const change of await applyIndexFiles(ddl, indexFiles)) {
        const earlier = indexes.find((c) => c.file === change.file);
        if (earlier) earlier.steps.push(...change.steps);
        else indexes.push(change);
      }
      const archiveTables = await followLiveTables(client, options.archive ?? DEFAULT_ARCHIVE_TABLE_OPTIONS);
      const { partitionChanges } = await partitionArchiveTables(ddl);
      return {
        applied: done,
        alreadyApplied: migrations.length - pending.length,
        objectsApplied,
        objectsUnchanged: objects.length - objectsApplied.length,
        indexes,
        engineTables,
        ...archiveTables,
        partitionChanges,
      };
    } finally {
      await unlockSchemaChanges(client);
    }
  } finally {
    await ddl.close();
    client.release();
  }
}

function schemaLockBusy(holder: SchemaLockHolder | null, waitedMs: number): MigrateBlockedError {
  const who = holder
    ? `pid ${holder.pid} (application_name ${JSON.stringify(holder.application_name)}, state ${JSON.stringify(holder.state ?? 'unknown')}, ${holder.state === 'active' ? 'running' : 'last ran'} ${JSON.stringify(holder.query ?? '')} for ${((holder.query_ms ?? 0) / 1000).toFixed(1)} s)`
    : 'a session that let it go just now';
  return new MigrateBlockedError(
    `another migrate holds the migration lock: ${who}. Waited ${(waitedMs / 1000).toFixed(1)} s for it (migrate.schema_lock_wait_seconds) and changed nothing. It may be building an index on a large table: let it finish, then run migrate again (it will find nothing left to do, or finish what that one did not)`,
  );
}

/** Applies the object files whose checksum changed, in one transaction; returns those applied. */
async function applyObjectFiles(ddl: LockSafeDdl, objects: ObjectFile[]): Promise<string[]> {
  const client = ddl.client;
  const recorded = new Map((await appliedObjectFiles(client)).map((r) => [r.file, r.checksum]));
  const changed = objects.filter((o) => recorded.get(o.file) !== o.checksum);
  if (changed.length === 0) return [];
  await ddl
    .transaction('the object files', async () => {
      // Function bodies are checked when they run, as pg_dump's restores do: one function may call
      // another that a later file defines. Views and triggers are always checked.
      await client.query('SET LOCAL check_function_bodies = off');
      for (const o of changed) {
        try {
          await client.query(o.sql);
        } catch (err) {
          // The code stays on the error: a lock timeout is retried (the whole transaction).
          throw Object.assign(new Error(`${o.file}: ${(err as Error).message}`, { cause: err }), {
            code: (err as { code?: string }).code,
          });
        }
        await recordObjectFile(client, o.file, o.checksum);
      }
    })
    .catch((err: unknown) => {
      if (err instanceof MigrateBlockedError) throw err;
      throw new Error(`the object files failed: ${(err as Error).message}`, { cause: err });
    });
  return changed.map((o) => o.file);
}

/** What this build's SQL would change in the database, without changing anything. */
export async function migrationStatus(
  db: pg.Pool | pg.PoolClient,
  dir = migrationsDir,
): Promise<MigrationStatus> {
  const { pending, unknown } = compare(readMigrations(dir), await appliedMigrations(db));
  const recorded = new Map((await appliedObjectFiles(db)).map((r) => [r.file, r.checksum]));
  const objects: Array<{ file: string; checksum: string }> = [
    ...readObjectFiles(dir),
    ...readIndexFiles(dir),
  ];
  return {
    pending,
    unknown,
    objectsMissing: objects.filter((o) => !recorded.has(o.file)).map((o) => o.file),
    objectsChanged: objects
      .filter((o) => recorded.has(o.file) && recorded.get(o.file) !== o.checksum)
      .map((o) => o.file),
  };
}

/**
 * The migrations not applied yet, as migrate sees them: it refuses (throws) a migration changed
 * after it was applied, and a database with migrations this build does not have.
 */
export function pendingMigrations(migrations: Migration[], applied: AppliedMigration[]): Migration[] {
  const { pending, unknown } = compare(migrations, applied);
  if (unknown.length > 0) {
    throw new Error(
      `the database has migration(s) ${unknown.join(', ')} that this build does not have: deploy the newer build instead`,
    );
  }
  return pending;
}

function compare(migrations: Migration[], applied: AppliedMigration[]) {
  const byVersion = new Map(migrations.map((m) => [m.version, m]));
  const appliedVersions = new Set<number>();
  for (const row of applied) {
    appliedVersions.add(row.version);
    const m = byVersion.get(row.version);
    if (m && m.checksum !== row.checksum && CHECKSUMS_BEFORE_OBJECT_FILES[m.version] !== row.checksum) {
      throw new Error(
        `migration ${m.file} was changed after it was applied (checksum ${row.checksum.slice(0, 12)} in the database, ${m.checksum.slice(0, 12)} on disk): migrations are immutable, add a new one instead`,
      );
    }
  }
  return {
    pending: migrations.filter((m) => !appliedVersions.has(m.version)),
    unknown: applied.filter((r) => !byVersion.has(r.version)).map((r) => r.version),
  };
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
