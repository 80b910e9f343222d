/**
 * The `web` process through PgBouncer in transaction pooling mode: many requests on a few client
 * connections that PgBouncer hands to different server connections. Anything that keeps session
 * state on a pooled connection (a named prepared statement above all: PgBouncer 1.18 does not
 * track them) fails here with "prepared statement ... does not exist". Slow-ish (an embedded
 * server and a PgBouncer): run by `npm run test:e2e`.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import pg from 'pg';
import { type EmbeddedServer, startEmbeddedPostgres } from '../../src/db/embedded.ts';
import { runCli } from '../helpers/cli-process.ts';
import { type RunningPgBouncer, startPgBouncer } from '../helpers/pgbouncer.ts';
import { startWeb, tokenWith } from '../web/web-process.ts';

const DATABASE = 'web_bouncer';
let server: EmbeddedServer;
let bouncer: RunningPgBouncer | undefined;

beforeAll(async () => {
  server = await startEmbeddedPostgres({
    dataDir: mkdtempSync(join(tmpdir(), 'tasker-web-bouncer-pg-')),
    persistent: false,
  });
  const admin = new pg.Client({ connectionString: server.url('postgres') });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${DATABASE}`); // a fixed identifier, not input
  await admin.end();
}, 120_000);

afterAll(async () => {
  await bouncer?.stop();
  await server?.stop({ fast: true });
}, 60_000);

it('serves every request through PgBouncer in transaction mode', async () => {
  const direct = server.url(DATABASE);
  const migrated = await runCli(['migrate'], { DATABASE_URL: direct });
  expect(migrated.code).toBe(0);
  const pool = new pg.Pool({ connectionString: direct, max: 1 });
  const token = await tokenWith(pool, 'through-bouncer', ['*']);
  await pool.end();

  // Two server connections for the web process's ten clients: statements move between sessions.
  bouncer = await startPgBouncer({
    serverPort: server.port,
    user: 'postgres',
    password: 'postgres',
    poolSize: 2,
  });
  const web = await startWeb(bouncer.url(DATABASE), {
    TASKER__database__max_connections_per_process: '10',
  });
  try {
    const paths = [
      '/v1/dlq',
      '/v1/dlq/investigation-queue',
      '/v1/dlq/stats',
      '/v1/dlq?resolution_status=pending',
    ];
    const failures: Record<string, string[]> = {};
    for (let round = 0; round < 10; round++) {
      const responses = await Promise.all(
        Array.from({ length: 20 }, (_, i) => paths[i % paths.length]!).map(async (path) => ({
          path,
          response: await web.request('GET', path, { token }),
        })),
      );
      for (const { path, response } of responses) {
        if (response.status === 200) continue;
        failures[path] = [...(failures[path] ?? []), `${response.status} ${JSON.stringify(response.body)}`];
      }
    }
    expect(failures).toEqual({});
    expect(bouncer.log()).not.toMatch(/prepared statement/i);
  } finally {
    await web.stop();
  }
}, 180_000);
