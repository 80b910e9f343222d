import { hostname } from 'node:os';
import type pg from 'pg';
import type { Db } from '../db/pool.ts';
import { pendingSummary } from '../db/queries/dlq.ts';
import { enrichmentBacklog } from '../db/queries/dlq-enrichment.ts';
import { groupGauges } from '../db/queries/dlq-groups.ts';
import { claimGaugeLease, releaseGaugeLease, storeGaugeReadings } from '../db/queries/gauge-readings.ts';
import { databaseNow } from '../db/queries/server.ts';
import { STALE_WAITING_CAP, staleTasksWaiting } from '../db/queries/staleness-backlog.ts';
import type { ReplicaStatus } from '../db/replica.ts';
import type { Logger } from './logger.ts';

/**
 * The DLQ, backlog and failure-group gauges, read once per cluster (issue 25). Three times per
 * `intervalSeconds` each worker runs one statement on the primary (claimGaugeLease: takes or
 * renews the lease if it is free, expired or its own, and returns the stored readings). Once per
 * interval the holder reads the gauges (five bounded reads, one after another, from `reader()`:
 * the replica when one is configured and fresh) and stores them under its generation; the others
 * take the stored readings. Every worker exports the same values with their age, so `max()` over
 * the workers (what the alerts and the dashboard use) is the same with 1 worker or 100, and the
 * database runs one copy of the reads per interval instead of one per worker per scrape.
 *
 * The lease lasts two checks (two thirds of an interval) and is renewed at every check: a holder
 * killed (SIGKILL) or frozen (SIGSTOP) stops renewing, its lease expires within two thirds of an
 * interval, and the first worker to check after that (a third of an interval at most) takes it
 * and reads at once: the gauges move to another worker within one interval of the holder's stop
 * (test/integration/gauge-lease.test.ts).
 */

/** Lease checks per interval: the lease lasts two of them, so a stopped holder is replaced within one interval. */
export const CHECKS_PER_INTERVAL = 3;

export interface GaugeReadings {
  pending: number;
  overdue: number;
  awaiting: number;
  oldestSeconds: number;
  oldestAwaitingSeconds: number;
  retrying: number;
  retryDue: number;
  failed: number;
  staleWaiting: number;
  oldestWaitingSeconds: number;
  pendingGroups: number;
  /** Fingerprints seen since install, by DLQ reason. */
  fingerprints: Record<string, number>;
  /** With database.replica_url: its lag (null: unreachable) and whether reads go to it. */
  replica?: { lagSeconds: number | null; serving: 'replica' | 'primary' };
}

/** The five reads of the gauges, one after another (a reading holds at most one connection). */
export async function readGauges(db: Db): Promise<{ readAt: Date; readings: GaugeReadings }> {
  const now = await databaseNow(db);
  const summary = await pendingSummary(db, now);
  const backlog = await enrichmentBacklog(db, now);
  const waiting = await staleTasksWaiting(db, now, STALE_WAITING_CAP);
  const groups = await groupGauges(db);
  const age = (at: Date | null) => (at ? Math.max(0, (now.getTime() - at.getTime()) / 1000) : 0);
  return {
    readAt: now,
    readings: {
      pending: Number(summary.pending),
      overdue: Number(summary.overdue),
      awaiting: Number(backlog.awaiting),
      oldestSeconds: age(summary.oldest_pending_at),
      oldestAwaitingSeconds: age(backlog.oldest_awaiting_at),
      retrying: Number(backlog.retrying),
      retryDue: Number(backlog.retry_due),
      failed: Number(backlog.failed),
      staleWaiting: Number(waiting.waiting),
      oldestWaitingSeconds: age(waiting.oldest_entered_at),
      pendingGroups: groups.pending_groups,
      fingerprints: Object.fromEntries(groups.fingerprints.map((f) => [f.dlq_reason, f.seen])),
    },
  };
}

export interface ClusterGaugesOptions {
  /** Where the lease row lives and readings are stored: the primary. */
  pool: pg.Pool;
  /** Where the holder reads the gauges (the replica when configured and fresh); default pool. */
  reader?: () => Promise<Db>;
  /** With a replica: its state, measured by the holder with the gauges (src/db/replica.ts). */
  replicaStatus?: () => Promise<ReplicaStatus>;
  intervalSeconds: number;
  /** This worker's name in the lease (default host:pid:random). */
  holder?: string;
  logger: Logger;
}

export interface ClusterGaugesState {
  readings: GaugeReadings | null;
  /** Seconds since the readings were read, as of now (null: none yet). */
  ageSeconds: number | null;
  /** Whether this worker holds the lease. */
  holder: boolean;
  /** Whether this worker's last check failed (the database away). */
  failing: boolean;
}

export interface ClusterGauges {
  /** The state for a scrape (waits for the first check, so a first scrape has values). */
  state(): Promise<ClusterGaugesState>;
  /** One check now (the timer's work; tests call it to step without waiting). */
  tick(): Promise<void>;
  stop(): Promise<void>;
}

export function startClusterGauges(o: ClusterGaugesOptions): ClusterGauges {
  const holder = o.holder ?? `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  const reader = o.reader ?? (async () => o.pool);
  const intervalMs = o.intervalSeconds * 1000;
  const checkMs = intervalMs / CHECKS_PER_INTERVAL;
  const leaseSeconds = (2 * checkMs) / 1000;
  let readings: GaugeReadings | null = null;
  // When this worker last read the gauges itself (this host's monotonic clock; null: not as the
  // current holder).
  let ownReadAt: number | null = null;
  // The readings' age at the last check, and when (this host's monotonic clock) that was.
  let ageAtCheck: number | null = null;
  let checkedAt = 0;
  let held = false;
  let failing = false;
  let running: Promise<void> | null = null;

  const check = async () => {
    try {
      const lease = await claimGaugeLease<GaugeReadings>(o.pool, holder, leaseSeconds);
      if (lease.held && !held) {
        o.logger.info('metrics: this worker now reads the cluster gauges', {
          generation: lease.generation,
          previous_holder: lease.previous_holder,
          previous_lease_expired_at: lease.previous_expires_at,
        });
      }
      if (!lease.held && held) o.logger.info('metrics: another worker reads the cluster gauges now');
      if (!lease.held) ownReadAt = null;
      held = lease.held;
      // The holder reads once per interval (a check that comes a little early still reads: half a
      // check's slack); between its reads it only renews the lease.
      const due = ownReadAt === null || performance.now() - ownReadAt >= intervalMs - checkMs / 2;
      if (held && !due) {
        ageAtCheck = (performance.now() - ownReadAt!) / 1000;
      } else if (held) {
        const fresh = await readGauges(await reader());
        if (o.replicaStatus) {
          const r = await o.replicaStatus();
          fresh.readings.replica = { lagSeconds: r.lag_seconds, serving: r.serving };
        }
        // A holder frozen past its lease finds it taken here, and stores nothing.
        held = await storeGaugeReadings(o.pool, holder, lease.generation, fresh.readAt, fresh.readings);
        readings = fresh.readings;
        ageAtCheck = 0;
        ownReadAt = held ? performance.now() : null;
      } else if (lease.readings !== null && lease.read_at !== null) {
        readings = lease.readings;
        ageAtCheck = Math.max(0, (lease.now.getTime() - lease.read_at.getTime()) / 1000);
      }
      checkedAt = performance.now();
      if (failing) o.logger.info('metrics: DLQ gauges read again');
      failing = false;
    } catch (err) {
      if (!failing) {
        o.logger.warn('metrics: could not read the DLQ gauges; reporting the last values, marked stale', {
          error: (err as Error).message,
        });
      }
      failing = true;
      held = false;
      ownReadAt = null;
    }
  };
  const tick = () => {
    running ??= check().finally(() => {
      running = null;
    });
    return running;
  };
  const first = tick();
  const timer = setInterval(() => void tick(), checkMs);
  timer.unref();
  return {
    tick,
    state: async () => {
      await first;
      return {
        readings,
        ageSeconds: ageAtCheck === null ? null : ageAtCheck + (performance.now() - checkedAt) / 1000,
        holder: held,
        failing,
      };
    },
    stop: async () => {
      clearInterval(timer);
      await running;
      // Handed over at once rather than at the expiry; a stop with the database away skips it.
      if (held) await releaseGaugeLease(o.pool, holder).catch(() => undefined);
      held = false;
    },
  };
}
