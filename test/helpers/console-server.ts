import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import pg from 'pg';
import { type EmbeddedServer, startEmbeddedPostgres } from '../../src/db/embedded.ts';
import { migrate } from '../../src/db/migrate.ts';
import { createPool } from '../../src/db/pool.ts';
import { resolveEntry } from '../../src/db/queries/dlq.ts';
import type { ConsolePermission, ConsolePrincipal } from '../../src/web/console/deps.ts';
import { consoleRoutes } from '../../src/web/console/index.ts';

/**
 * A migrated database of its own (on DATABASE_URL's server, else an embedded PostgreSQL) and the
 * console served by fastify on a free loopback port.
 *
 * Tokens: until the branch with src/web/auth.ts (issue 11) is merged, the console is given an
 * in-memory token table here (secret -> name and permissions) with the same semantics as the
 * permissions list ("*" grants everything); resolving writes through resolveEntry with the token's
 * name as resolved_by. Once merged, this harness switches to the real `authenticateToken` and the
 * audit-writing service.
 */

export interface ConsoleHarness {
  url: string;
  pool: pg.Pool;
  /** A fresh token with these permissions; returns its secret. */
  token(name: string, permissions: ConsolePermission[]): string;
  close(): Promise<void>;
}

export async function startConsoleHarness(): Promise<ConsoleHarness> {
  let embedded: EmbeddedServer | undefined;
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    embedded = await startEmbeddedPostgres({
      dataDir: mkdtempSync(join(tmpdir(), 'tasker-console-pg-')),
      persistent: false,
      settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' },
    });
    adminUrl = embedded.url('postgres');
  }
  const name = `tasker_console_e2e_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const dbUrl = new URL(adminUrl);
  dbUrl.pathname = `/${name}`;
  const pool = createPool(dbUrl.toString(), { max: 10 });
  await migrate(pool);

  const tokens = new Map<string, ConsolePrincipal>();
  const can = (p: ConsolePrincipal, permission: ConsolePermission) =>
    p.permissions.includes('*') || p.permissions.includes(permission);
  const app: FastifyInstance = Fastify({ logger: false });
  await app.register(consoleRoutes, {
    db: pool,
    now: () => new Date(),
    authenticate: async (secret) => tokens.get(secret),
    can,
    resolve: async (principal, action, now) => {
      await resolveEntry(pool, { ...action, resolvedBy: principal.tokenName, now });
    },
    queueRefreshSeconds: 2,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    pool,
    token(tokenName, permissions) {
      const secret = `tl_${randomBytes(24).toString('base64url')}`;
      tokens.set(secret, { tokenName, permissions });
      return secret;
    },
    async close() {
      await app.close();
      await pool.end();
      const a = new pg.Client({ connectionString: adminUrl });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
      await embedded?.stop();
    },
  };
}
