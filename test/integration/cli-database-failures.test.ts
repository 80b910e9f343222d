/**
 * Every way of not getting a database ends the same way for the person at the terminal: exit 1,
 * one line naming the cause and the fix, no stack trace (unless --debug), no password, and no
 * hanging on a half-open connection. A PostgreSQL of its own with password authentication (the
 * suite's server may trust everyone) holds the roles and databases the cases need.
 */
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { type EmbeddedServer, freePort, startEmbeddedPostgres } from '../../src/db/embedded.ts';
import { runCli } from '../helpers/cli-process.ts';

let server: EmbeddedServer;

beforeAll(async () => {
  server = await startEmbeddedPostgres({
    dataDir: mkdtempSync(join(tmpdir(), 'tasker-failures-pg-')),
    persistent: false,
  });
  const admin = new pg.Client({ connectionString: server.url('postgres') });
  await admin.connect();
  await admin.query("CREATE ROLE outsider LOGIN PASSWORD 'outsider-pw'");
  await admin.query('CREATE DATABASE private_db');
  await admin.query('REVOKE CONNECT ON DATABASE private_db FROM PUBLIC');
  await admin.end();
});

afterAll(async () => {
  await server?.stop();
});

/** One CLI run against url; the line it printed, its exit code and how long it took. */
async function statusAgainst(url: string, extra: string[] = []) {
  const started = Date.now();
  const result = await runCli(['status', ...extra], { DATABASE_URL: url });
  return { ...result, seconds: (Date.now() - started) / 1000 };
}

function expectOneLineFailure(
  result: { code: number | null; stderr: string; seconds: number },
  pattern: RegExp,
) {
  expect(result.code).toBe(1);
  expect(result.stderr).toMatch(pattern);
  expect(result.stderr.trim().split('\n')).toHaveLength(1);
  expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
  // Not hanging until the server's authentication_timeout (60 s) is what the bound tells apart; a
  // CLI run alone took 20.6 s on a CI machine under load average 30.
  expect(result.seconds).toBeLessThan(45);
}

describe('a command that cannot get its database', () => {
  it('nothing listening: connection refused, with the fix', async () => {
    const port = await freePort();
    expectOneLineFailure(
      await statusAgainst(`postgres://postgres:postgres@127.0.0.1:${port}/postgres`),
      new RegExp(
        `^error: cannot connect to 127\\.0\\.0\\.1:${port}/postgres: nothing listens there .*Start PostgreSQL there, or check DATABASE_URL`,
      ),
    );
  });

  it('a host that does not resolve', async () => {
    expectOneLineFailure(
      await statusAgainst('postgres://postgres:postgres@no-such-host.invalid/postgres'),
      /^error: cannot connect to no-such-host\.invalid:5432\/postgres: the host "no-such-host\.invalid" cannot be resolved/,
    );
  });

  it('a wrong password: names the user, never the password', async () => {
    const result = await statusAgainst(`postgres://postgres:not-the-pw@127.0.0.1:${server.port}/postgres`);
    expectOneLineFailure(
      result,
      /^error: PostgreSQL at .* refused the password of user "postgres": check the user and password in DATABASE_URL/,
    );
    expect(result.stderr).not.toContain('not-the-pw');
  });

  it('no password where the server wants one: says so at once instead of hanging 60 s', async () => {
    expectOneLineFailure(
      await statusAgainst(`postgres://postgres@127.0.0.1:${server.port}/postgres`),
      /^error: PostgreSQL at .* asks for a password and none was given: put it in DATABASE_URL .* or set PGPASSWORD/,
    );
  });

  it('a database that does not exist', async () => {
    expectOneLineFailure(
      await statusAgainst(`postgres://postgres:postgres@127.0.0.1:${server.port}/no_such_db`),
      /^error: the database "no_such_db" does not exist on 127\.0\.0\.1:\d+: create it \(createdb no_such_db\)/,
    );
  });

  it('a user without CONNECT on the database', async () => {
    expectOneLineFailure(
      await statusAgainst(`postgres://outsider:outsider-pw@127.0.0.1:${server.port}/private_db`),
      /^error: user "outsider" may not connect to .*private_db \(permission denied for database "private_db"\): GRANT CONNECT ON DATABASE private_db TO outsider/,
    );
  });

  it('--debug adds the stack trace, still without the password', async () => {
    const result = await statusAgainst(`postgres://postgres:not-the-pw@127.0.0.1:${server.port}/postgres`, [
      '--debug',
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: PostgreSQL at .* refused the password/);
    expect(result.stderr).toMatch(/\n\s+at /);
    expect(result.stderr).not.toContain('not-the-pw');
  });
});

describe('npm start when the embedded PostgreSQL cannot start', () => {
  const startWith = (dataDir: string, extra: Record<string, string> = {}) =>
    runCli(['start', '--no-demo'], {
      TASKER__database__embedded_data_dir: JSON.stringify(dataDir),
      TASKER__database__embedded_port: String(extra.port ?? server.port),
      TASKER__metrics__port: '0',
    });

  it('a data directory that is a file', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'tasker-bad-data-')), 'pg');
    writeFileSync(file, 'not a cluster');
    const result = await startWith(file);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `error: ${file} is not a PostgreSQL data directory (it is a file): remove it or point database.embedded_data_dir at an empty or new directory\n`,
    );
  });

  it('a data directory of another PostgreSQL major version', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tasker-old-data-'));
    writeFileSync(join(dir, 'PG_VERSION'), '16\n');
    const result = await startWith(dir);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      new RegExp(
        `^error: ${dir} holds a PostgreSQL 16 cluster, but the embedded server is PostgreSQL 18: remove it \\(rm -rf ${dir}\\) to start afresh`,
      ),
    );
  });

  it('a port already taken: names the port and the setting that changes it', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'tasker-port-data-'));
    chmodSync(parent, 0o755); // reachable by the server's user when we run as root
    const dir = join(parent, 'pg');
    const result = await startWith(dir); // the suite's own embedded server holds server.port
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      new RegExp(
        `^error: the embedded PostgreSQL did not start \\(.*\\)\\. Another program .* uses port ${server.port} on 127\\.0\\.0\\.1: stop it, or choose another port with database\\.embedded_port`,
      ),
    );
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });
});
