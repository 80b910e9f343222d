/**
 * The embedded PostgreSQL (src/db/embedded.ts) on real binaries: the data directory's life cycle
 * (made, reused, started afresh, leftovers of an interrupted initdb) and, as root, a checkout in a
 * private directory, which the server's unprivileged user cannot enter.
 */
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { EmbeddedDatabaseError, startEmbeddedPostgres } from '../../src/db/embedded.ts';

const asRoot = process.getuid?.() === 0;

async function query(url: string, sql: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

/** A directory other users can enter (mkdtemp makes it 0700). */
function openDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}

describe('the data directory', () => {
  it('is made on first start, kept by a persistent server, and used again', async () => {
    const dataDir = join(openDir('tasker-embedded-'), 'pg');
    let server = await startEmbeddedPostgres({ dataDir, persistent: true });
    await query(server.url('postgres'), 'CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)');
    await server.stop();
    server = await startEmbeddedPostgres({ dataDir, persistent: false });
    try {
      expect((await query(server.url('postgres'), 'SELECT x FROM kept')).rows).toEqual([{ x: 42 }]);
    } finally {
      await server.stop();
    }
    expect(existsSync(dataDir)).toBe(false);
  });

  it('leftovers of an interrupted initdb are removed and a fresh cluster is made', async () => {
    const parent = openDir('tasker-embedded-');
    const leftover = join(parent, 'pg.initdb-abc123');
    mkdirSync(leftover);
    writeFileSync(join(leftover, 'PG_VERSION'), '18\n'); // half made: no base/, no global/
    const server = await startEmbeddedPostgres({ dataDir: join(parent, 'pg'), persistent: false });
    try {
      expect(existsSync(leftover)).toBe(false);
      expect((await query(server.url('postgres'), 'SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    } finally {
      await server.stop();
    }
  });

  it('a directory holding something else is refused, untouched', async () => {
    const dataDir = openDir('tasker-embedded-');
    writeFileSync(join(dataDir, 'notes.txt'), 'mine');
    await expect(startEmbeddedPostgres({ dataDir, persistent: false })).rejects.toThrow(
      new EmbeddedDatabaseError(
        `${dataDir} is not a PostgreSQL data directory (it is not empty and has no PG_VERSION file): remove it or point database.embedded_data_dir at an empty or new directory`,
      ),
    );
    expect(existsSync(join(dataDir, 'notes.txt'))).toBe(true);
  });
});

// Only root runs the server as another user; CI runs as root.
(asRoot ? describe : describe.skip)('as root, from a private directory (mode 0700)', () => {
  it('runs, keeps its data behind a link at the configured path, and starts afresh once the link is removed', async () => {
    const checkout = mkdtempSync(join(tmpdir(), 'tasker-private-')); // 0700, like root's home
    const dataDir = join(checkout, '.tasker', 'pg');
    let server = await startEmbeddedPostgres({ dataDir, persistent: true });
    const target = server.dataDir;
    try {
      expect(lstatSync(dataDir).isSymbolicLink()).toBe(true);
      expect(readlinkSync(dataDir)).toBe(target);
      expect(target).toMatch(/^\/var\/tmp\/tasker-lifecycle\/[0-9a-f]{16}\/pg$/);
      await query(server.url('postgres'), 'CREATE TABLE kept (x int)');
      await server.stop();

      server = await startEmbeddedPostgres({ dataDir, persistent: true });
      expect(server.dataDir).toBe(target);
      expect(
        (await query(server.url('postgres'), "SELECT to_regclass('kept') IS NOT NULL AS kept")).rows,
      ).toEqual([{ kept: true }]);
      await server.stop();

      rmSync(join(checkout, '.tasker'), { recursive: true }); // the README's reset
      server = await startEmbeddedPostgres({ dataDir, persistent: true });
      expect(
        (await query(server.url('postgres'), "SELECT to_regclass('kept') IS NOT NULL AS kept")).rows,
      ).toEqual([{ kept: false }]);
    } finally {
      await server.stop();
      rmSync(dirname(target), { recursive: true, force: true });
      rmSync(checkout, { recursive: true, force: true });
    }
  });
});
