import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from '../../src/db/embedded.ts';
import { waitFor } from './wait.ts';

/**
 * A real primary and a streaming replica of it, for test/e2e/replica.test.ts: initdb, a primary
 * with wal_level replica, `pg_basebackup -R` (which writes standby.signal and primary_conninfo),
 * and the replica started on the copy, all with the same binaries. The embedded PostgreSQL 18
 * package has no pg_basebackup, so these are the newest Debian PostgreSQL's
 * (/usr/lib/postgresql/<major>/bin, which CI installs for its PostgreSQL 15 run). PostgreSQL
 * refuses to run as root: as root every process runs as the `postgres` user (as the embedded
 * database's do, src/db/embedded.ts), in a temporary directory that user owns.
 */

export interface Node {
  port: number;
  url(database: string): string;
  /** Stops the server (fast shutdown); start() starts it again on the same data and port. */
  stop(): Promise<void>;
  start(): Promise<void>;
}

export interface ReplicatedCluster {
  primary: Node;
  replica: Node;
  binDir: string;
  stop(): Promise<void>;
}

export function postgresBinDir(): string {
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root)
    ? readdirSync(root)
        .filter((d) => existsSync(join(root, d, 'bin', 'pg_basebackup')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (majors.length === 0)
    throw new Error(`no ${root}/<major>/bin/pg_basebackup: apt-get install postgresql (CI installs it)`);
  return join(root, majors[0]!, 'bin');
}

function userIds(name: string): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync('id', [flag, name], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

export async function startReplicatedCluster(): Promise<ReplicatedCluster> {
  const bin = postgresBinDir();
  const asUser = process.getuid?.() === 0 ? userIds('postgres') : undefined;
  const dir = mkdtempSync(join(tmpdir(), 'tasker-replica-'));
  if (asUser) chownSync(dir, asUser.uid, asUser.gid);
  const run = (file: string, args: string[]) =>
    execFileSync(join(bin, file), args, { stdio: 'pipe', ...(asUser ?? {}) });
  const primaryDir = join(dir, 'primary');
  const replicaDir = join(dir, 'replica');
  run('initdb', ['-D', primaryDir, '-U', 'postgres', '--auth=trust', '--no-sync']);
  const node = (dataDir: string, port: number, extra: string[]): Node => {
    let child: ChildProcess | undefined;
    let output = '';
    const url = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`;
    return {
      port,
      url,
      async start() {
        output = '';
        child = spawn(
          join(bin, 'postgres'),
          [
            '-D',
            dataDir,
            '-p',
            String(port),
            '-c',
            'listen_addresses=127.0.0.1',
            '-c',
            `unix_socket_directories=${dir}`,
            '-c',
            'fsync=off',
            ...extra,
          ],
          { stdio: ['ignore', 'pipe', 'pipe'], ...(asUser ?? {}) },
        );
        child.stdout?.on('data', (d) => {
          output += d;
        });
        child.stderr?.on('data', (d) => {
          output += d;
        });
        await waitFor(`PostgreSQL on port ${port} to accept connections`, async () => {
          if (child?.exitCode !== null) throw new Error(`postgres exited: ${output}`);
          const client = new pg.Client({ connectionString: url('postgres') });
          try {
            await client.connect();
            await client.query('SELECT 1');
            return true;
          } catch {
            return false;
          } finally {
            await client.end().catch(() => undefined);
          }
        });
      },
      async stop() {
        const c = child;
        child = undefined;
        if (!c || c.exitCode !== null) return;
        const exited = new Promise((resolve) => c.once('exit', resolve));
        c.kill('SIGINT'); // fast shutdown
        await exited;
      },
    };
  };
  const primary = node(primaryDir, await freePort(), ['-c', 'wal_level=replica', '-c', 'max_wal_senders=4']);
  await primary.start();
  run('pg_basebackup', [
    '-h',
    '127.0.0.1',
    '-p',
    String(primary.port),
    '-U',
    'postgres',
    '-D',
    replicaDir,
    '-R',
    '-X',
    'stream',
  ]);
  const replica = node(replicaDir, await freePort(), ['-c', 'hot_standby=on']);
  await replica.start();
  return {
    primary,
    replica,
    binDir: bin,
    async stop() {
      await replica.stop();
      await primary.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
