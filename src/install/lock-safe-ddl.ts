import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import type { MigrateConfig } from '../config/schema.ts';
import {
  backendPid,
  currentLockAndStatementTimeouts,
  type LockHolder,
  type LockWait,
  lockWaitOf,
  longTransactionsOnTable,
  restoreLockAndStatementTimeouts,
  setLockAndStatementTimeouts,
} from '../db/queries/schema-locks.ts';
import { MigrateBlockedError } from '../errors.ts';

/**
 * Schema changes beside a live engine: every statement `migrate` runs that takes a lock an engine
 * write could wait on runs under a short lock_timeout ([migrate] lock_timeout_ms). A change that
 * cannot have its lock that soon gives it up, so the engine's writes queued behind it go on, and is
 * tried again after a doubling delay; after lock_retries it gives up with a MigrateBlockedError
 * naming what it waited for and the session that held it (pid, application_name, state, how long
 * its transaction has been open, its query).
 *
 * Who held the lock is seen by a second connection (the watcher) that, while a statement runs,
 * asks pg_blocking_pids who the migrating session waits for; the statement's own connection cannot
 * ask while it waits, and after the timeout the wait is gone.
 */

/** A lock a schema change did not get (or, for an index build, would have waited for too long). */
export class LockNotTaken extends Error {
  override name = 'LockNotTaken';
  /** What it waited for and who held it, as the watcher last saw it; null if it saw nothing. */
  readonly wait: LockWait | null;
  readonly timeoutMs: number;
  readonly setting: string;
  /** Found by the check before an index build (nothing waited yet), not by a lock timeout. */
  readonly beforeBuilding: boolean;

  constructor(
    message: string,
    o: {
      wait: LockWait | null;
      timeoutMs: number;
      setting: string;
      beforeBuilding?: boolean;
      cause?: unknown;
    },
  ) {
    super(message, { cause: o.cause });
    this.wait = o.wait;
    this.timeoutMs = o.timeoutMs;
    this.setting = o.setting;
    this.beforeBuilding = o.beforeBuilding ?? false;
  }
}

/** SQLSTATEs after which trying again may succeed: lock_timeout, a deadlock. */
const LOCK_FAILURES = new Set(['55P03', '40P01']);

export function isLockFailure(err: unknown): boolean {
  return LOCK_FAILURES.has((err as { code?: string }).code ?? '');
}

export interface LockSafeDdlOptions {
  settings: Readonly<MigrateConfig>;
  /** Opens the watcher's connection (to the same database), on first need. */
  connectWatcher: () => Promise<pg.Client>;
  /** Progress lines. */
  log?: (message: string) => void;
}

export class LockSafeDdl {
  readonly client: pg.PoolClient;
  readonly settings: Readonly<MigrateConfig>;
  readonly #connectWatcher: () => Promise<pg.Client>;
  readonly #log: (message: string) => void;
  #watcher: pg.Client | undefined;
  #pid: number | undefined;

  constructor(client: pg.PoolClient, options: LockSafeDdlOptions) {
    this.client = client;
    this.settings = options.settings;
    this.#connectWatcher = options.connectWatcher;
    this.#log = options.log ?? (() => undefined);
  }

  log(message: string): void {
    this.#log(message);
  }

  /**
   * work() in one transaction under lock_timeout_ms and statement_timeout_ms (SET LOCAL), rolled
   * back whole and tried again after a lock failure (retrying()).
   */
  async transaction<T>(what: string, work: () => Promise<T>, afterGivingUp?: string): Promise<T> {
    return this.retrying(
      what,
      () => this.transactionOnce(work, true),
      afterGivingUp ?? 'It was rolled back: nothing of it is applied.',
    );
  }

  /**
   * work() in one transaction under lock_timeout_ms and statement_timeout_ms, once: committed, or
   * rolled back when `commit` is false (a probe). A lock failure is a LockNotTaken.
   */
  async transactionOnce<T>(work: () => Promise<T>, commit: boolean): Promise<T> {
    const s = this.settings;
    await this.client.query('BEGIN');
    try {
      await setLockAndStatementTimeouts(this.client, s.lock_timeout_ms, s.statement_timeout_ms, true);
      const result = await this.#watched(work, s.lock_timeout_ms, 'migrate.lock_timeout_ms');
      await this.client.query(commit ? 'COMMIT' : 'ROLLBACK');
      return result;
    } catch (err) {
      await this.client.query('ROLLBACK').catch(() => undefined); // report the work's error
      throw err;
    }
  }

  /**
   * One statement outside a transaction (CREATE / DROP INDEX CONCURRENTLY, ALTER INDEX RENAME),
   * under index_build_lock_timeout_ms (or lock_timeout_ms: `short`) and statement_timeout_ms; not
   * retried here (the caller decides what a retry starts from).
   */
  async outsideTransaction(work: () => Promise<void>, options: { short?: boolean } = {}): Promise<void> {
    const s = this.settings;
    const [timeoutMs, setting] = options.short
      ? [s.lock_timeout_ms, 'migrate.lock_timeout_ms']
      : [s.index_build_lock_timeout_ms, 'migrate.index_build_lock_timeout_ms'];
    const saved = await currentLockAndStatementTimeouts(this.client);
    await setLockAndStatementTimeouts(this.client, timeoutMs, s.statement_timeout_ms, false);
    try {
      await this.#watched(work, timeoutMs, setting);
    } finally {
      await restoreLockAndStatementTimeouts(this.client, saved);
    }
  }

  /**
   * Refuses (LockNotTaken, which retrying() retries) while a transaction open longer than
   * lock_timeout_ms holds a lock on `table`: CREATE INDEX CONCURRENTLY would wait for it, and
   * could only fail part way. Checked before building anything.
   */
  async noLongTransactionOn(table: string): Promise<void> {
    const s = this.settings;
    const holders = await longTransactionsOnTable(
      this.client,
      table,
      s.lock_timeout_ms,
      await this.#ownPid(),
    );
    if (holders.length === 0) return;
    throw new LockNotTaken(
      `a transaction open longer than ${s.lock_timeout_ms} ms holds a lock on ${table}`,
      {
        wait: { locktype: 'relation', mode: 'ShareLock', relation: table, holders },
        timeoutMs: s.lock_timeout_ms,
        setting: 'migrate.lock_timeout_ms',
        beforeBuilding: true,
      },
    );
  }

  /**
   * attempt() until it does not fail with a lock failure (LockNotTaken, lock_timeout, deadlock), at
   * most 1 + lock_retries times, waiting lock_retry_delay_ms (doubling, with jitter, up to
   * lock_retry_delay_max_ms) between attempts; then a MigrateBlockedError naming what it waited
   * for and who held it, ending with `afterGivingUp` (what state it left).
   */
  async retrying<T>(
    what: string,
    attempt: (n: number) => Promise<T>,
    afterGivingUp: string | (() => Promise<string>),
  ): Promise<T> {
    const s = this.settings;
    const started = Date.now();
    for (let n = 1; ; n++) {
      try {
        return await attempt(n);
      } catch (err) {
        const lockFailure = err instanceof LockNotTaken || isLockFailure(err);
        if (!lockFailure) throw err;
        if (n > s.lock_retries) {
          const after = typeof afterGivingUp === 'string' ? afterGivingUp : await afterGivingUp();
          throw new MigrateBlockedError(
            `${what}: migrate gave up after ${n} attempt${n === 1 ? '' : 's'} over ${((Date.now() - started) / 1000).toFixed(1)} s rather than keep the engine waiting: ${describeLockFailure(err)}. ${after}`,
            { cause: err },
          );
        }
        const delay = Math.min(s.lock_retry_delay_max_ms, s.lock_retry_delay_ms * 2 ** (n - 1));
        const jittered = Math.round(delay * (0.5 + Math.random() / 2));
        this.#log(`${what}: ${describeLockFailure(err)}; trying again in ${jittered} ms (attempt ${n + 1})`);
        await sleep(jittered);
      }
    }
  }

  async close(): Promise<void> {
    await this.#watcher?.end().catch(() => undefined);
    this.#watcher = undefined;
  }

  async #ownPid(): Promise<number> {
    this.#pid ??= await backendPid(this.client);
    return this.#pid;
  }

  /**
   * Runs work while the watcher looks, a few times per timeout, at what this session waits for.
   * A lock failure comes out as LockNotTaken carrying the last wait seen.
   */
  async #watched<T>(work: () => Promise<T>, timeoutMs: number, setting: string): Promise<T> {
    const pid = await this.#ownPid();
    const watcher = await this.#watcherClient();
    let seen: LockWait | null = null;
    let running = true;
    let polling: Promise<void> = Promise.resolve();
    const interval = Math.max(20, Math.min(250, Math.floor(timeoutMs / 3)));
    const timer = setInterval(() => {
      polling = polling.then(async () => {
        if (!running) return;
        const wait = await lockWaitOf(watcher, pid).catch(() => null);
        if (wait && wait.holders.length > 0) seen = wait;
      });
    }, interval);
    try {
      return await work();
    } catch (err) {
      if (!isLockFailure(err)) throw err;
      throw new LockNotTaken((err as Error).message, { wait: seen, timeoutMs, setting, cause: err });
    } finally {
      running = false;
      clearInterval(timer);
      await polling;
    }
  }

  async #watcherClient(): Promise<pg.Client> {
    if (!this.#watcher) {
      const watcher = await this.#connectWatcher();
      watcher.on('error', () => undefined); // a lost watcher only costs the blocker's name
      await watcher.query("SELECT set_config('statement_timeout', '5s', false)");
      this.#watcher = watcher;
    }
    return this.#watcher;
  }
}

/** "it waited for X on T longer than N ms (setting), held by pid … (…)". */
export function describeLockFailure(err: unknown): string {
  if (!(err instanceof LockNotTaken)) return (err as Error).message;
  const wait = err.wait;
  const deadlock = (err.cause as { code?: string } | undefined)?.code === '40P01';
  const limit = `${err.timeoutMs} ms (${err.setting})`;
  if (!wait) {
    return deadlock
      ? `it was chosen as the victim of a deadlock (${err.message})`
      : `it waited for a lock longer than ${limit}, held by a session that was gone before it could be named (${err.message})`;
  }
  const holders = `${wait.holders.map(describeHolder).join('; ')}. End ${wait.holders.length === 1 ? 'it' : 'them'} (${wait.holders.map((h) => `SELECT pg_terminate_backend(${h.pid})`).join('; ')}) or run migrate again once ${wait.holders.length === 1 ? 'it has' : 'they have'} ended`;
  if (err.beforeBuilding) {
    return `${wait.relation} is locked by a transaction open longer than ${limit}, which CREATE INDEX CONCURRENTLY would wait for: ${holders}`;
  }
  const what =
    wait.locktype === 'relation'
      ? `${wait.mode} on ${wait.relation}`
      : wait.locktype === 'virtualxid' || wait.locktype === 'transactionid'
        ? 'the end of another transaction (CREATE / DROP INDEX CONCURRENTLY wait for every transaction holding a lock on the table, then for every older snapshot)'
        : `${wait.mode} (${wait.locktype}${wait.relation ? ` on ${wait.relation}` : ''})`;
  return `${deadlock ? 'it was chosen as the victim of a deadlock while waiting for' : 'it waited longer than'} ${deadlock ? what : `${limit} for ${what}`}, held by ${holders}`;
}

function describeHolder(h: LockHolder): string {
  const open =
    h.transaction_ms === null ? 'no transaction open' : `transaction open ${formatMs(h.transaction_ms)}`;
  const parts = [
    `application_name ${JSON.stringify(h.application_name)}`,
    `state ${JSON.stringify(h.state ?? 'unknown')}`,
    open,
    ...(h.mode ? [`holding ${h.mode}`] : []),
    `query ${JSON.stringify(h.query ?? '')}`,
  ];
  return `pid ${h.pid} (${parts.join(', ')})`;
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}
