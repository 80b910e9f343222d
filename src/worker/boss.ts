import type { MeterProvider } from '@opentelemetry/api';
import { PgBoss } from 'pg-boss';
import { type Config, connectionShares } from '../config/schema.ts';
import type { Logger } from '../telemetry/logger.ts';

/**
 * pg-boss instances, in three roles: the worker (runs jobs, evaluates schedules, supervises), a
 * client (enqueue, status: sends and reads only) and the migrator (installs or upgrades pg-boss's
 * schema, queues and schedules: src/install/pgboss.ts). pg-boss's `error` and `warning` events are always logged: an unhandled `error` event
 * would end the process.
 */

export type BossRole = 'worker' | 'client' | 'migrate';

export const BOSS_SCHEMA = 'pgboss';

export function createBoss(
  config: Readonly<Config>,
  url: string,
  role: BossRole,
  logger: Logger,
  meterProvider?: MeterProvider,
): PgBoss {
  const w = config.worker;
  const boss = new PgBoss({
    connectionString: url,
    schema: BOSS_SCHEMA,
    application_name: `tasker-lifecycle-${role}`,
    // pg-boss's share of database.max_connections_per_process (src/config/schema.ts): a worker's
    // pg-boss fetches, heartbeats, evaluates schedules and supervises; a client or the migrator
    // needs 2 (every share is at least 2).
    max: role === 'worker' ? connectionShares(config.database).boss : 2,
    // The session defaults every pool to database.url has (src/db/pool.ts); not for the migrator,
    // whose schema changes may take their time.
    ...(role === 'migrate' || !config.database.session_timeouts
      ? {}
      : {
          statement_timeout: config.database.statement_timeout_ms,
          lock_timeout: config.database.lock_timeout_ms,
          idle_in_transaction_session_timeout: config.database.idle_in_transaction_timeout_ms,
        }),
    migrate: role === 'migrate',
    supervise: role === 'worker',
    schedule: role === 'worker',
    registerInstance: role === 'worker',
    superviseIntervalSeconds: w.monitor_interval_seconds,
    monitorIntervalSeconds: w.monitor_interval_seconds,
    cronMonitorIntervalSeconds: w.cron_monitor_interval_seconds,
    clockMonitorIntervalSeconds: w.clock_monitor_interval_seconds,
    // Each monitor pass records wait times and the oldest ready job's age per queue (the
    // queue_stats table, kept queueStatRetentionDays): tasker_queue_oldest_ready_age_seconds.
    persistQueueStats: role === 'worker',
    // pg-boss's own instruments (pgboss.queue.jobs, messaging.*) join ours on /metrics.
    ...(meterProvider ? { openTelemetry: { enabled: true, meterProvider } } : {}),
  });
  boss.on('error', (err) =>
    logger.error(`pg-boss: ${err.message}`, { component: 'pg-boss', error: err.message }),
  );
  boss.on('warning', (warning) =>
    logger.warn(`pg-boss warning: ${warning.message}`, { component: 'pg-boss', data: warning.data }),
  );
  return boss;
}
