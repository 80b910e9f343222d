import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/db/embedded.ts';

/**
 * A real PgBouncer (Debian's /usr/sbin/pgbouncer, 1.18) in transaction pooling mode in front of a
 * PostgreSQL on 127.0.0.1, for the scale-out test. Its settings are the ones docs/operating.md's "Scaling out"
 * recommends. PgBouncer refuses to run as root: as root it runs as the `postgres` user, with its
 * configuration and password file in a temporary directory that user owns.
 */

export const PGBOUNCER = '/usr/sbin/pgbouncer';

export interface PgBouncerOptions {
  /** PostgreSQL's port on 127.0.0.1. */
  serverPort: number;
  /** The role and password PgBouncer logs in with, and accepts from clients (SCRAM). */
  user: string;
  password: string;
  /** Server connections per database and user (default_pool_size). */
  poolSize: number;
}

export interface RunningPgBouncer {
  port: number;
  /** A URL through PgBouncer to a database on the server. */
  url(database: string): string;
  /** URL of PgBouncer's admin console (SHOW POOLS, SHOW STATS). */
  adminUrl: string;
  /** Everything PgBouncer logged so far. */
  log(): string;
  stop(): Promise<void>;
}

export async function startPgBouncer(o: PgBouncerOptions): Promise<RunningPgBouncer> {
  if (!existsSync(PGBOUNCER)) {
    throw new Error(`${PGBOUNCER} is missing: apt-get install pgbouncer (.ci/run installs it)`);
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tasker-pgbouncer-'));
  const asUser = process.getuid?.() === 0 ? userIds('postgres') : undefined;
  const ini = join(dir, 'pgbouncer.ini');
  const userlist = join(dir, 'userlist.txt');
  writeFileSync(
    ini,
    [
      '[databases]',
      `* = host=127.0.0.1 port=${o.serverPort}`,
      '',
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = scram-sha-256',
      `auth_file = ${userlist}`,
      `admin_users = ${o.user}`,
      'pool_mode = transaction',
      // The session timeouts every process sends (database.session_timeouts): PgBouncer 1.18
      // refuses startup parameters it does not know (docs/scaling.md, "PgBouncer").
      'ignore_startup_parameters = statement_timeout, lock_timeout, idle_in_transaction_session_timeout',
      'max_client_conn = 2000',
      `default_pool_size = ${o.poolSize}`,
      'min_pool_size = 0',
      'reserve_pool_size = 0',
      `max_db_connections = ${o.poolSize}`,
      'server_idle_timeout = 60',
      'server_lifetime = 3600',
      'log_connections = 0',
      'log_disconnections = 0',
      'log_pooler_errors = 1',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  writeFileSync(userlist, `"${o.user}" "${o.password}"\n`, { mode: 0o600 });
  if (asUser) for (const path of [dir, ini, userlist]) chownSync(path, asUser.uid, asUser.gid);

  const child = spawn(PGBOUNCER, [ini], {
    ...(asUser ?? {}),
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  });
  let output = '';
  child.stdout!.on('data', (d) => {
    output += d;
  });
  child.stderr!.on('data', (d) => {
    output += d;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    await stopProcess(child, exited);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await untilListening(port, child, () => output);
  } catch (err) {
    await stop();
    throw err;
  }
  const url = (database: string) =>
    `postgres://${encodeURIComponent(o.user)}:${encodeURIComponent(o.password)}@127.0.0.1:${port}/${database}`;
  return { port, url, adminUrl: url('pgbouncer'), log: () => output, stop };
}

function userIds(name: string): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync('id', [flag, name], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

async function untilListening(port: number, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`pgbouncer exited (${child.signalCode ?? child.exitCode}) at start:\n${output()}`);
    }
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`pgbouncer not listening on ${port} after 30 s:\n${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** SIGTERM (PgBouncer's immediate shutdown), SIGKILL after 10 s. */
async function stopProcess(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
  child.kill('SIGTERM');
  await exited;
  clearTimeout(kill);
}
