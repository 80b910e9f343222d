import { AsyncLocalStorage } from 'node:async_hooks';
import type pg from 'pg';
import { redactCredentials } from '../redact.ts';
import { databaseTrouble } from './errors.ts';
import { createPool, type PoolLogger, type SessionTimeouts } from './pool.ts';
import { replicationState } from './queries/server.ts';

/**
 * Where read-only work goes (issue 25): database.replica_url when one is set, reachable and no
 * further behind than database.replica_max_lag_seconds, else the primary (database.url). The
 * replica's lag is measured at most once per CHECK_EVERY_MS, when a read needs it
 * (pg_last_xact_replay_timestamp, src/db/queries/server.ts): no timer, no load while nothing reads.
 * Going over to the primary is logged once, at warn, with why; coming back, at info.
 *
 * Only reads that nothing writes on go through here: the API's and console's reads, status, the
 * dlq and audit listings, the gauges. Writes, reads that decide a write, and pg-boss use the
 * primary's pool directly. A request that must see its caller's own write runs inside
 * `onPrimary` (the console after a change): its reads go to the primary.
 */

export const CHECK_EVERY_MS = 1000;

export interface ReplicaStatus {
  /** Whether a replica is configured at all. */
  configured: boolean;
  /** Where reads go now. */
  serving: 'replica' | 'primary';
  /** The replica's lag at the last check (null: none configured, or unreachable). */
  lag_seconds: number | null;
  /** Why reads go to the primary although a replica is configured (null: they do not). */
  fallback_reason: string | null;
}

export interface ReadRouter {
  readonly primary: pg.Pool;
  /** The pool for a read-only statement now. */
  pool(): Promise<pg.Pool>;
  /**
   * A Db whose every query goes where pool() says at that moment (for code that takes a Db and
   * only reads); inside onPrimary, to the primary.
   */
  readonly reads: pg.Pool;
  /** Runs fn with every read through `reads` sent to the primary (read-your-writes). */
  onPrimary<T>(fn: () => T): T;
  /** Where reads go and why, checking the replica if the last check is old. */
  status(): Promise<ReplicaStatus>;
  close(): Promise<void>;
}

export interface ReadRouterOptions {
  primary: pg.Pool;
  replicaUrl: string;
  maxLagSeconds: number;
  logger: PoolLogger & { info(message: string, meta?: Record<string, unknown>): unknown };
  max?: number;
  applicationName?: string;
  timeouts?: SessionTimeouts & { startupParameters: boolean };
}

const primaryOnly = new AsyncLocalStorage<boolean>();

export function createReadRouter(o: ReadRouterOptions): ReadRouter {
  const replica =
    o.replicaUrl === ''
      ? null
      : createPool(o.replicaUrl, {
          max: o.max ?? 2,
          applicationName: o.applicationName ?? 'tasker-lifecycle-replica',
          logger: o.logger,
          ...(o.timeouts ? { timeouts: o.timeouts } : {}),
        });
  let state: ReplicaStatus = {
    configured: replica !== null,
    serving: replica ? 'replica' : 'primary',
    lag_seconds: null,
    fallback_reason: null,
  };
  let checkedAt = Number.NEGATIVE_INFINITY;
  let checking: Promise<void> | null = null;
  let warned = false;

  const check = async (): Promise<void> => {
    if (!replica) return;
    let next: ReplicaStatus;
    try {
      const r = await replicationState(replica);
      if (!r.in_recovery) {
        next = {
          ...state,
          serving: 'primary',
          lag_seconds: null,
          fallback_reason: 'database.replica_url is not a replica (not in recovery)',
        };
      } else if (r.lag_seconds !== null && r.lag_seconds > o.maxLagSeconds) {
        next = {
          ...state,
          serving: 'primary',
          lag_seconds: r.lag_seconds,
          fallback_reason: `the replica lags ${r.lag_seconds.toFixed(1)} s, more than database.replica_max_lag_seconds (${o.maxLagSeconds})`,
        };
      } else {
        next = { ...state, serving: 'replica', lag_seconds: r.lag_seconds, fallback_reason: null };
      }
    } catch (err) {
      next = {
        ...state,
        serving: 'primary',
        lag_seconds: null,
        fallback_reason: `the replica cannot be read: ${redactCredentials((err as Error).message)}`,
      };
    }
    if (next.serving === 'primary' && !warned) {
      o.logger.warn('database: reads go to the primary instead of the replica', {
        reason: next.fallback_reason,
      });
      warned = true;
    } else if (next.serving === 'replica' && warned) {
      o.logger.info('database: reads go to the replica again', { lag_seconds: next.lag_seconds });
      warned = false;
    }
    state = next;
    checkedAt = performance.now();
  };
  const fresh = async () => {
    if (!replica || performance.now() - checkedAt < CHECK_EVERY_MS) return;
    checking ??= check().finally(() => {
      checking = null;
    });
    await checking;
  };
  const pool = async () => {
    if (!replica || primaryOnly.getStore()) return o.primary;
    await fresh();
    return state.serving === 'replica' ? replica : o.primary;
  };
  // A read the replica cannot answer because it went away since the last check is read again
  // from the primary, and the replica checked again at the next read.
  const query = async (args: unknown[]) => {
    const p = await pool();
    const run = (target: pg.Pool) =>
      (target.query as (...a: unknown[]) => Promise<unknown>).apply(target, args);
    if (p === o.primary) return run(p);
    try {
      return await run(p);
    } catch (err) {
      if (databaseTrouble(err) !== 'unavailable') throw err;
      checkedAt = Number.NEGATIVE_INFINITY;
      await fresh();
      return run(o.primary);
    }
  };
  // Only query() is used by the read-only query modules; anything else is the primary's.
  const reads = new Proxy(o.primary, {
    get(target, prop, receiver) {
      if (prop === 'query') return (...args: unknown[]) => query(args);
      return Reflect.get(target, prop, receiver);
    },
  }) as pg.Pool;
  return {
    primary: o.primary,
    pool,
    reads: replica ? reads : o.primary,
    onPrimary: (fn) => primaryOnly.run(true, fn),
    status: async () => {
      await fresh();
      return state;
    },
    close: async () => {
      await checking;
      await replica?.end();
    },
  };
}
