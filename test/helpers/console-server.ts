import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { type EmbeddedServer, freePort, startEmbeddedPostgres } from '../../src/db/embedded.ts';
import { createPool } from '../../src/db/pool.ts';
import { createToken, type Permission } from '../../src/operations/tokens.ts';
import { type CliProcess, runCli, startCli } from './cli-process.ts';
import { waitFor } from './wait.ts';

/**
 * A database of its own (on DATABASE_URL's server, else an embedded PostgreSQL), migrated by the
 * real `migrate` command, and a real `web` process serving the API and the console on a free
 * loopback port. Tokens are created with the same operation as `token create` (hashed, audited).
 */

export interface ConsoleHarness {
  url: string;
  databaseUrl: string;
  pool: pg.Pool;
  web: CliProcess;
  /** A fresh token with these permissions; returns its secret. */
  token(name: string, permissions: Permission[]): Promise<string>;
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
  const databaseUrl = dbUrl.toString();
  const env = { DATABASE_URL: databaseUrl, TASKER__logging__level: 'info' };
  const migrated = await runCli(['migrate'], env);
  if (migrated.code !== 0) throw new Error(`migrate failed: ${migrated.stderr}`);
  const pool = createPool(databaseUrl, { max: 10 });
  const port = await freePort();
  // The tests refuse many forms and tokens from one address on purpose: more than a minute's
  // per-address limit would let through.
  const web = startCli(['web'], {
    ...env,
    TASKER__web__host: '127.0.0.1',
    TASKER__web__port: String(port),
    TASKER__web__refusal_limit_per_address: '1000',
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`web on ${url} (log: ${web.stderrSoFar()})`, async () => (await fetch(`${url}/readyz`)).ok, {
    timeoutMs: 60_000,
  });
  return {
    url,
    databaseUrl,
    pool,
    web,
    async token(tokenName, permissions) {
      const created = await createToken(pool, {
        name: tokenName,
        permissions,
        actor: { kind: 'cli', name: 'e2e' },
        now: new Date(),
      });
      return created.token;
    },
    async close() {
      web.kill('SIGTERM');
      await web.done;
      await pool.end();
      const a = new pg.Client({ connectionString: adminUrl });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
      await embedded?.stop();
    },
  };
}
