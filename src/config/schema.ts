import { isIP } from 'node:net';
import { z } from 'zod';

/**
 * The whole configuration, as one strict zod schema. Section and key names follow the seed
 * (upstream-facts.md §4.1); ranges follow upstream's validators (§4.2) where it had them. The
 * defaults here are the only defaults; config/base.toml repeats them so the file documents every
 * key, and a test keeps the two equal. Every key has an effect; each description says which.
 *
 * Parse with loadConfig (src/config/load.ts), which merges the TOML layers and environment
 * variables, reports every problem by dotted key, and freezes the result.
 */

const DLQ_REASONS = [
  'staleness_timeout',
  'max_retries_exceeded',
  'dependency_cycle_detected',
  'worker_unavailable',
  'manual_dlq',
] as const;

/** Intervals pg-boss's cron (minute resolution) can keep evenly: whole minutes dividing an hour. */
export const DETECTION_INTERVALS_SECONDS = [
  60, 120, 180, 240, 300, 360, 600, 720, 900, 1200, 1800, 3600,
] as const;
/** Archival intervals cron can keep evenly: hours dividing a day, or a week. */
export const ARCHIVE_INTERVALS_HOURS = [1, 2, 3, 4, 6, 8, 12, 24, 168] as const;

const minutes = (what: string, def: number) =>
  z
    .int()
    .min(1)
    .max(1440)
    .default(def)
    .describe(
      `Default minutes a task may stay ${what} before it is stale (a template's lifecycle overrides it).`,
    );

export const StalenessThresholdsSchema = z.strictObject({
  waiting_for_dependencies_minutes: minutes('in waiting_for_dependencies', 60),
  waiting_for_retry_minutes: minutes('in waiting_for_retry', 30),
  steps_in_process_minutes: minutes('in steps_in_process', 30),
  task_max_lifetime_hours: z
    .int()
    .min(1)
    .max(168)
    .default(24)
    .describe(
      "Default hours a task may live (from creation) in any non-terminal state before it is stale; a template's lifecycle.max_duration_minutes overrides it.",
    ),
});

export const StalenessActionsSchema = z.strictObject({
  auto_transition_to_error: z
    .boolean()
    .default(true)
    .describe(
      'Move stale tasks to the error state. Templates can opt out (auto_fail_on_timeout = false), not in.',
    ),
  auto_move_to_dlq: z
    .boolean()
    .default(true)
    .describe(
      'Open a DLQ investigation for stale tasks. Templates can opt out (auto_dlq_on_timeout = false, staleness_action = "error").',
    ),
  emit_events: z
    .boolean()
    .default(true)
    .describe('Announce each task acted on with PostgreSQL NOTIFY on event_channel (delivered at commit).'),
  event_channel: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, {
      error:
        'expected a NOTIFY channel name: lowercase letters, digits and _, 1 to 63 characters, not starting with a digit',
    })
    .default('task_staleness_detected')
    .describe(
      'NOTIFY channel for detection events (payload: JSON with task_uuid, action_taken, dlq_reason, ...).',
    ),
});

export const StalenessDetectionSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Run the scheduled detection job.'),
    detection_interval_seconds: z
      .literal(DETECTION_INTERVALS_SECONDS, {
        error: `expected one of ${DETECTION_INTERVALS_SECONDS.join(', ')}: pg-boss schedules with cron, which has minute resolution, and only whole minutes dividing an hour repeat evenly`,
      })
      .default(300)
      .describe('Seconds between scheduled detection runs; cron-backed, so whole minutes dividing an hour.'),
    batch_size: z
      .int()
      .min(1)
      .max(10000)
      .default(100)
      .describe('Stale tasks handled per transaction (one call of the detection function).'),
    max_batches_per_run: z
      .int()
      .min(1)
      .max(1000)
      .default(10)
      .describe('Batches one run may take before it stops; a run also stops at the first short batch.'),
    dry_run: z
      .boolean()
      .default(false)
      .describe(
        'Report what detection would do without changing anything. The CLI overrides it per run: --dry-run, --no-dry-run.',
      ),
    batch_statement_timeout_ms: z
      .int()
      .min(100)
      .max(600000)
      .default(10000)
      .describe(
        'statement_timeout of each detection batch transaction, in milliseconds: a batch that hits it is rolled back whole and the run fails (pg-boss retries it).',
      ),
    thresholds: StalenessThresholdsSchema.prefault({}),
    actions: StalenessActionsSchema.prefault({}),
  })
  .refine((s) => s.actions.auto_transition_to_error || s.actions.auto_move_to_dlq, {
    error:
      'actions.auto_transition_to_error and actions.auto_move_to_dlq are both false, so detection would never act: set dry_run = true to watch without acting, or enabled = false to turn it off',
    path: ['actions'],
  });

export const DlqReasonsSchema = z.strictObject(
  Object.fromEntries(
    DLQ_REASONS.map((r) => [
      r,
      z
        .boolean()
        .default(true)
        .describe(
          r === 'manual_dlq'
            ? 'Allow operators to open investigations by hand (dlq add).'
            : r === 'staleness_timeout'
              ? 'Detection may open entries with the generic staleness reason (when no more specific enabled reason fits).'
              : `Detection may label entries ${r}; when off, the next fitting enabled reason is used.`,
        ),
    ]),
  ) as { [K in (typeof DLQ_REASONS)[number]]: z.ZodDefault<z.ZodBoolean> },
);

/** [dlq.enrichment]: the snapshot enrichment job (jobs/enrich-dlq-snapshots.ts). */
export const DlqEnrichmentSchema = z
  .strictObject({
    sweep_interval_seconds: z
      .literal(DETECTION_INTERVALS_SECONDS, {
        error: `expected one of ${DETECTION_INTERVALS_SECONDS.join(', ')}: pg-boss schedules with cron, which has minute resolution, and only whole minutes dividing an hour repeat evenly`,
      })
      .default(60)
      .describe(
        'Seconds between sweeps for pending entries not enriched yet and failed attempts due again (the entries of each detection batch are also sent, as one request per batch, by detection); cron-backed, so whole minutes dividing an hour.',
      ),
    batch_size: z
      .int()
      .min(1)
      .max(1000)
      .default(50)
      .describe('Entries enriched per transaction (one statement).'),
    max_batches_per_run: z
      .int()
      .min(1)
      .max(1000)
      .default(20)
      .describe('Batches one sweep may take before it stops; a sweep also stops at the first short batch.'),
    max_list_items: z
      .int()
      .min(1)
      .max(10000)
      .default(500)
      .describe(
        'Most steps and most edges stored per snapshot; the rest are counted as omitted (list marked truncated).',
      ),
    max_history_rows: z
      .int()
      .min(1)
      .max(10000)
      .default(200)
      .describe(
        'Most step transitions and most task transitions stored per snapshot, newest first; older ones are counted as omitted.',
      ),
    max_payload_bytes: z
      .int()
      .min(256)
      .max(1048576)
      .default(16384)
      .describe(
        'Largest JSON value stored as is (a step result or error, transition metadata, the template config), in bytes of JSON text; bigger ones become {"truncated": true, "original_bytes", "preview"}.',
      ),
    max_snapshot_bytes: z
      .int()
      .min(16384)
      .max(67108864)
      .default(1048576)
      .describe(
        'Largest enriched snapshot, in bytes of JSON text; a bigger one keeps only counts and the diagnosis (detail "compact", then "minimal").',
      ),
    batch_statement_timeout_ms: z
      .int()
      .min(100)
      .max(600000)
      .default(10000)
      .describe(
        'statement_timeout of each enrichment batch transaction, in milliseconds. A batch that fails (timeout or error) is retried one entry at a time; an entry that fails alone is tried again later (max_attempts, retry_delay_seconds).',
      ),
    max_attempts: z
      .int()
      .min(1)
      .max(100)
      .default(8)
      .describe(
        'Attempts at enriching one entry before it is given up: marked failed (task_snapshot.enrichment.gave_up) and skipped by later sweeps. 1: never tried again. With the default delays, 8 attempts span about two hours.',
      ),
    retry_delay_seconds: z
      .int()
      .min(1)
      .max(86400)
      .default(60)
      .describe(
        "Seconds after an entry's first failed attempt before the sweep tries it again; doubles after each further failed attempt, up to retry_delay_max_seconds.",
      ),
    retry_delay_max_seconds: z
      .int()
      .min(1)
      .max(604800)
      .default(3600)
      .describe('Longest wait between two attempts at one entry, in seconds.'),
  })
  .refine((e) => e.retry_delay_seconds <= e.retry_delay_max_seconds, {
    error: 'retry_delay_seconds must not exceed retry_delay_max_seconds',
    path: ['retry_delay_seconds'],
  })
  .refine((e) => e.max_payload_bytes <= e.max_snapshot_bytes, {
    error: 'max_payload_bytes must not exceed max_snapshot_bytes',
    path: ['max_payload_bytes'],
  });

export const DlqSchema = z.strictObject({
  enabled: z
    .boolean()
    .default(true)
    .describe('The DLQ as a whole: when false, detection opens no investigations and dlq add is refused.'),
  auto_dlq_on_staleness: z
    .boolean()
    .default(true)
    .describe('Detection opens investigations for stale tasks (with actions.auto_move_to_dlq).'),
  include_full_task_snapshot: z
    .boolean()
    .default(true)
    .describe(
      'Enrichment stores steps, transitions, edges and template config in the snapshot; when false, only counts and the diagnosis.',
    ),
  max_pending_age_hours: z
    .int()
    .min(1)
    .max(8760)
    .default(168)
    .describe(
      'A pending investigation older than this is overdue (dlq list/queue mark it, status counts it).',
    ),
  reasons: DlqReasonsSchema.prefault({}),
  enrichment: DlqEnrichmentSchema.prefault({}),
});

export const ArchivePoliciesSchema = z
  .strictObject({
    archive_completed: z.boolean().default(true).describe('Archive tasks that ended complete.'),
    archive_failed: z.boolean().default(true).describe('Archive tasks that ended in error.'),
    archive_cancelled: z.boolean().default(false).describe('Archive tasks that ended cancelled.'),
    archive_resolved_manually: z
      .boolean()
      .default(true)
      .describe(
        'Archive tasks that ended resolved_manually (an operator closed them; upstream never archived them, so they stayed live forever).',
      ),
    archive_dlq_resolved: z
      .boolean()
      .default(true)
      .describe(
        'Resolved DLQ entries move with their task; when false, a task with any DLQ history stays live. A task with a pending entry is never archived.',
      ),
  })
  .refine(
    (p) => p.archive_completed || p.archive_failed || p.archive_cancelled || p.archive_resolved_manually,
    {
      error:
        'archive_completed, archive_failed, archive_cancelled and archive_resolved_manually are all false, so archival would never archive anything: set archive.enabled = false to turn it off',
    },
  );

export const ArchiveSchema = z.strictObject({
  enabled: z.boolean().default(true).describe('Run the scheduled archival job.'),
  retention_days: z
    .int()
    .min(1)
    .max(3650)
    .default(30)
    .describe('Days a task must have been in its final state before it is archived.'),
  archive_batch_size: z
    .int()
    .min(1)
    .max(10000)
    .default(1000)
    .describe('Task graphs moved per archival transaction (the starting size; it shrinks after timeouts).'),
  archive_interval_hours: z
    .literal(ARCHIVE_INTERVALS_HOURS, {
      error: `expected one of ${ARCHIVE_INTERVALS_HOURS.join(', ')}: cron repeats evenly only for hours dividing a day, or a week`,
    })
    .default(24)
    .describe(
      'Hours between scheduled archival runs; cron-backed, so hours dividing a day, or 168 (weekly).',
    ),
  policies: ArchivePoliciesSchema.prefault({}),

  max_batches_per_run: z
    .int()
    .min(1)
    .max(100000)
    .default(1000)
    .describe(
      'Batches one archival run may take before it stops (the rest waits for the next run); a run also stops when no candidates are left.',
    ),
  batch_statement_timeout_ms: z
    .int()
    .min(100)
    .max(600000)
    .default(5000)
    .describe(
      'statement_timeout of each archival batch transaction, in milliseconds. A batch that hits it is rolled back and retried at half the size; the size doubles back after 3 good batches in a row.',
    ),
  pause_between_batches_ms: z
    .int()
    .min(0)
    .max(60000)
    .default(0)
    .describe(
      'Milliseconds an archival run waits between batches, at least. 0 (the default): the next batch starts at once (a pause does not lower the p99 of the live workload, which the batches themselves set; duty_cycle_percent is the throttle, in proportion to the batches).',
    ),
  duty_cycle_percent: z
    .int()
    .min(1)
    .max(100)
    .default(100)
    .describe(
      "Percent of an archival run's wall time spent in batches: after a batch of t ms the run waits t x (100 - p) / p ms (at least pause_between_batches_ms), so 50 halves the rate at which archival takes the database and 25 quarters it. 100: only the fixed pause.",
    ),
  batch_target_ms: z
    .int()
    .min(10)
    .max(600000)
    .default(500)
    .describe(
      "Milliseconds an archival batch should take: after each batch the next one is sized from the last one's pace (n x target / took, at most double, never above archive_batch_size), so batches stay near this length when the server is busy. Keep it well under batch_statement_timeout_ms.",
    ),
  dry_run: z
    .boolean()
    .default(false)
    .describe(
      'Scheduled runs only report what they would archive (and change nothing). The CLI overrides it per run: --dry-run, --no-dry-run.',
    ),
  max_rewrite_rows: z
    .int()
    .min(0)
    .max(1_000_000_000)
    .default(100_000)
    .describe(
      '`migrate` makes a change to an archive table that rewrites it (integer to bigint, a new column with a volatile default) only while the table has at most this many rows; on a larger one it leaves the change, names the statement, and archival and restore refuse until `migrate --allow-archive-rewrites` makes it in a maintenance window. Changes that touch only the catalog (a new column, varchar(n) to a longer varchar or to text) are made at any size.',
    ),
  keep_months: z
    .int()
    .min(0)
    .max(1200)
    .default(0)
    .describe(
      'Months of archive kept, besides the current one (UTC months of archived_at): after its batches, each real archival run drops every monthly archive partition that ended before the first of the month this many months back (detached concurrently, then dropped: no DELETE, no vacuum, no long lock). 0 (the default): retention off, the archive is kept for ever.',
    ),
  export_dir: z
    .string()
    .max(4096)
    .default('')
    .describe(
      'Retention exports each month to Parquet in <export_dir>/<YYYY-MM> (as `archive export` does, verified) before it drops the month, and keeps a month whose export fails. Empty (the default): retention drops months without exporting them.',
    ),
  alter_lock_timeout_ms: z
    .int()
    .min(10)
    .max(600000)
    .default(2000)
    .describe(
      "lock_timeout of each archive table's changes in `migrate`, in milliseconds: when another session holds the table (an archival batch, a restore, a long read of the archive), migrate gives that table up after 3 tries, says so, and archival and restore refuse until a later migrate makes the change.",
    ),
});

export const DatabaseSchema = z
  .strictObject({
    url: z
      .string()
      .default('')
      .refine((v) => v === '' || /^postgres(ql)?:\/\//.test(v), {
        error: 'expected a postgres:// or postgresql:// URL, or empty for the embedded database',
      })
      .meta({ allowed: 'a `postgres://` URL, or empty' })
      .describe(
        'PostgreSQL connection URL (DATABASE_URL sets it). Empty: the embedded PostgreSQL that npm start runs.',
      ),
    direct_url: z
      .string()
      .default('')
      .refine((v) => v === '' || /^postgres(ql)?:\/\//.test(v), {
        error: 'expected a postgres:// or postgresql:// URL, or empty to use database.url',
      })
      .meta({ allowed: 'a `postgres://` URL, or empty' })
      .describe(
        'A URL straight to PostgreSQL, for the work that needs a session of its own: `migrate` (and the migrate step of `start`) holds a session advisory lock. Set it when url points at PgBouncer in transaction pooling mode (DATABASE_DIRECT_URL sets it). Empty: url.',
      ),
    replica_url: z
      .string()
      .default('')
      .refine((v) => v === '' || /^postgres(ql)?:\/\//.test(v), {
        error: 'expected a postgres:// or postgresql:// URL of a streaming replica, or empty for none',
      })
      .meta({ allowed: 'a `postgres://` URL, or empty' })
      .describe(
        "A URL of a streaming replica of database.url's database, for read-only work: the API's and console's reads, `status`, `dlq list|show|queue|stats|groups|group`, `audit`, and the gauges (DATABASE_REPLICA_URL sets it). Writes, reads that decide a write (detection, enrichment, archival, resolve, restore), pg-boss, and a console page just after its own change stay on database.url. Reads fall back to database.url, with one warning, while the replica is unreachable or lags more than replica_max_lag_seconds. Empty: everything on database.url.",
      ),
    replica_max_lag_seconds: z
      .number()
      .min(0.1)
      .max(3600)
      .default(30)
      .describe(
        "Most replication lag (seconds behind database.url's last write, from pg_last_xact_replay_timestamp) at which reads still go to replica_url; beyond it they go to database.url until the replica catches up. It also bounds how long a console page after the caller's own change is read from database.url.",
      ),
    max_connections_per_process: z
      .int()
      .min(4)
      .max(200)
      .default(7)
      .describe(
        "Most connections one process (a worker, web, a CLI command) opens to database.url: pg-boss's pool takes max(3, a third), rounded down, this system's pool the rest (7: 3 and 4). A worker needs 4 of its own (one per job it runs, one for recovery and run history) and is refused below that. `migrate` opens 2 more to direct_url: its session, and one that watches whom its statements wait for.",
      ),
    pool_max: z
      .int()
      .min(1)
      .max(100)
      .optional()
      .describe(
        "Overrides this system's share of max_connections_per_process (unset: the budget minus pg-boss's share). pool_max + boss_pool_max must fit in the budget.",
      ),
    boss_pool_max: z
      .int()
      .min(2)
      .max(50)
      .optional()
      .describe(
        "Overrides pg-boss's share of max_connections_per_process (unset: max(3, a third of the budget)). pool_max + boss_pool_max must fit in the budget.",
      ),
    statement_timeout_ms: z
      .int()
      .min(100)
      .max(3_600_000)
      .default(30_000)
      .describe(
        "statement_timeout every session to database.url starts with, in milliseconds: a query that runs longer is cancelled, so one slow query cannot keep a process's connections. Batches set their own (the jobs' batch_statement_timeout_ms); `migrate` its own ([migrate]). Behind PgBouncer set it on the server (docs/scaling.md).",
      ),
    lock_timeout_ms: z
      .int()
      .min(100)
      .max(3_600_000)
      .default(5_000)
      .describe(
        'lock_timeout every session to database.url starts with, in milliseconds: a statement that waits longer for a lock (a row another session holds) is cancelled and answered as busy. Batches wait up to their own statement timeout.',
      ),
    session_timeouts: z
      .boolean()
      .default(true)
      .describe(
        'Send statement_timeout_ms, lock_timeout_ms and idle_in_transaction_timeout_ms as startup parameters of every connection to database.url. PgBouncer (1.18) refuses startup parameters it does not know: list them in its ignore_startup_parameters and set the timeouts on the server role, or set this to false. Batch transactions set theirs per transaction either way.',
      ),
    idle_in_transaction_timeout_ms: z
      .int()
      .min(1_000)
      .max(3_600_000)
      .default(15_000)
      .describe(
        'idle_in_transaction_session_timeout of every session and transaction, in milliseconds: a transaction left idle that long (its process frozen by a pause) is ended by the server and its locks released, so another worker can take its run over.',
      ),
    embedded_port: z
      .int()
      .min(1024)
      .max(65535)
      .default(54329)
      .describe('Port of the embedded PostgreSQL (used when url is empty).'),
    embedded_data_dir: z
      .string()
      .min(1)
      .default('.tasker/pg')
      .describe(
        'Data directory of the embedded PostgreSQL, relative to the project root (used when url is empty).',
      ),
  })
  .superRefine((d, ctx) => {
    const { pool, boss } = connectionShares(d);
    if (pool < 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['boss_pool_max'],
        message: `database.boss_pool_max (${boss}) leaves no connection of database.max_connections_per_process (${d.max_connections_per_process}) for this system's pool: lower boss_pool_max or raise max_connections_per_process`,
      });
    } else if (pool + boss > d.max_connections_per_process) {
      ctx.addIssue({
        code: 'custom',
        path: ['pool_max'],
        message: `database.pool_max (${pool}) + database.boss_pool_max (${boss}) = ${pool + boss} is more than database.max_connections_per_process (${d.max_connections_per_process}): raise max_connections_per_process to ${pool + boss}, or unset pool_max and boss_pool_max to split the budget (pg-boss max(2, a third), this system the rest)`,
      });
    }
  });

/**
 * [migrate]: how `migrate` (and the migrate step of `start`) takes the locks its schema changes
 * need, in a database where the workflow engine is writing (src/install/lock-safe-ddl.ts). Every
 * statement that takes a lock an engine write could wait on runs under lock_timeout_ms: an engine
 * write queued behind it waits at most that long, plus the moment the statement holds the lock.
 */
export const MigrateSchema = z
  .strictObject({
    lock_timeout_ms: z
      .int()
      .min(10)
      .max(60_000)
      .default(200)
      .describe(
        "lock_timeout of every schema change `migrate` makes in a transaction (numbered migrations, object files, renames), in milliseconds: a change that cannot have its lock that soon gives the lock up, so the engine's writes queued behind it go on, and is tried again (lock_retries). Also the age beyond which a transaction holding a lock on a table makes `migrate` put off building an index on it. With 200, no engine write waits 1 s on `migrate`.",
      ),
    lock_retries: z
      .int()
      .min(0)
      .max(1000)
      .default(10)
      .describe(
        'Times a schema change that gave its lock up (lock_timeout_ms, index_build_lock_timeout_ms, a deadlock) or an index build put off for a long transaction is tried again before `migrate` gives up, naming the session that held the lock.',
      ),
    lock_retry_delay_ms: z
      .int()
      .min(1)
      .max(60_000)
      .default(200)
      .describe(
        'Milliseconds before the first retry of a schema change that gave its lock up; the delay doubles per retry (with jitter), up to lock_retry_delay_max_ms.',
      ),
    lock_retry_delay_max_ms: z
      .int()
      .min(1)
      .max(600_000)
      .default(5_000)
      .describe(
        'Longest delay between two attempts of a schema change (the cap of the doubling). With the defaults, migrate waits about 30 s in all for a lock before it gives up.',
      ),
    index_build_lock_timeout_ms: z
      .int()
      .min(10)
      .max(3_600_000)
      .default(10_000)
      .describe(
        "lock_timeout of CREATE INDEX CONCURRENTLY and DROP INDEX CONCURRENTLY on the engine's tables, in milliseconds. Their locks (SHARE UPDATE EXCLUSIVE) block no read or write, but they wait for the transactions open on the table (and, at the end, for every older snapshot): a wait longer than this fails the build, its unfinished index is dropped, and the build is tried again (lock_retries). Over 1 s lets it outwait autovacuum, which PostgreSQL cancels after deadlock_timeout.",
      ),
    statement_timeout_ms: z
      .int()
      .min(1_000)
      .max(86_400_000)
      .default(3_600_000)
      .describe(
        'statement_timeout of each schema change and index build `migrate` makes (the migrations, object files and index files), in milliseconds: an index build on a very large table may need more than the default hour. A build cancelled by it has its unfinished index dropped (or dropped by the next migrate) and is not retried.',
      ),
    schema_lock_wait_seconds: z
      .int()
      .min(1)
      .max(86_400)
      .default(900)
      .describe(
        'Seconds a `migrate` waits for another one (which holds the migration lock, maybe building an index on a large table) before it gives up, naming it.',
      ),
  })
  .refine((m) => m.lock_retry_delay_max_ms >= m.lock_retry_delay_ms, {
    error:
      'lock_retry_delay_max_ms is below lock_retry_delay_ms: the cap of the doubling delay must be at least its first value',
    path: ['lock_retry_delay_max_ms'],
  });

/**
 * How one process's connection budget (database.max_connections_per_process) is split: pg-boss's
 * pool takes boss_pool_max, else max(3, a third of the budget) (a worker's pg-boss fetches three
 * queues, heartbeats its runs, evaluates schedules and supervises, and a heartbeat that waits for a
 * connection is a heartbeat missed); this system's pool takes pool_max, else the rest. 7 gives 3
 * and 4; 14 gives 4 and 10.
 */
export function connectionShares(d: {
  max_connections_per_process: number;
  pool_max?: number | undefined;
  boss_pool_max?: number | undefined;
}): { pool: number; boss: number } {
  const boss = d.boss_pool_max ?? Math.max(3, Math.floor(d.max_connections_per_process / 3));
  const pool = d.pool_max ?? d.max_connections_per_process - boss;
  return { pool, boss };
}

export const WorkerSchema = z.strictObject({
  shutdown_timeout_seconds: z
    .int()
    .min(1)
    .max(3600)
    .default(25)
    .describe(
      "On SIGTERM/SIGINT: seconds running jobs have to reach a batch boundary and hand the rest on. Must exceed each job's longest batch by 2 s (the worker refuses to start otherwise). A run still going 3 s before the end gives its run back (requeued, no retry used). The default stays under Kubernetes' 30 s grace period, leaving time to close.",
    ),
  polling_interval_seconds: z
    .number()
    .min(0.5)
    .max(60)
    .default(2)
    .describe('Seconds between fetches of a queue when it is empty.'),
  retry_limit: z
    .int()
    .min(0)
    .max(100)
    .default(3)
    .describe("Retries of a failed run before it goes to the job's dead-letter queue (<job>.failed)."),
  retry_delay_seconds: z
    .int()
    .min(1)
    .max(3600)
    .default(30)
    .describe('First retry delay; it doubles per attempt (with jitter), up to retry_delay_max_seconds.'),
  retry_delay_max_seconds: z
    .int()
    .min(1)
    .max(86400)
    .default(600)
    .describe('Longest delay before a retry of a failed run (the cap of the doubling backoff).'),
  job_expire_seconds: z
    .int()
    .min(60)
    .max(86400)
    .default(900)
    .describe('Longest a run may stay active before pg-boss fails it (then it is retried).'),
  heartbeat_seconds: z
    .int()
    .min(10)
    .max(3600)
    .default(15)
    .describe(
      "A run whose worker sent no heartbeat for this long is interrupted: a worker's recovery pass requeues it at once, without using up its retries. `migrate` installs it on the queues; a run is judged by the setting its job was queued with, not by the judging worker's, and every worker heartbeats every 3⅓ s, so a rolling change of it takes no healthy run for lost. pg-boss's own check, at twice this, is the backstop.",
    ),
  recovery_interval_seconds: z
    .int()
    .min(1)
    .max(600)
    .default(5)
    .describe(
      'How often each worker looks for runs whose worker was lost (and at start), requeues them, and records them as interrupted.',
    ),
  monitor_interval_seconds: z
    .int()
    .min(1)
    .max(600)
    .default(60)
    .describe(
      "How often pg-boss's supervise pass fails expired jobs (and, as a backstop, runs with missed heartbeats) so they are retried (one worker does it per interval).",
    ),
  cron_monitor_interval_seconds: z
    .int()
    .min(1)
    .max(45)
    .default(30)
    .describe(
      'How often pg-boss evaluates schedules (one worker per interval); the first scheduled run can come this much after start.',
    ),
  clock_monitor_interval_seconds: z
    .int()
    .min(1)
    .max(600)
    .default(600)
    .describe(
      "How often pg-boss measures the database's clock against this host's; schedules are evaluated on the database's clock.",
    ),
  run_history_days: z
    .int()
    .min(1)
    .max(365)
    .default(14)
    .describe('Days of run history (tasker_job_runs) kept for status.'),
});

/** A DNS host name: dot-separated labels of letters, digits and inner hyphens. */
/** An IP address, or a CIDR range such as 10.0.0.0/8 or fd00::/8 (web.trust_proxy). */
function isProxyAddress(v: string): boolean {
  const [address, bits, ...rest] = v.split('/');
  const family = isIP(address ?? '');
  if (family === 0 || rest.length > 0) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export const MetricsSchema = z.strictObject({
  enabled: z.boolean().default(true).describe('Serve /healthz, /readyz and /metrics from each worker.'),
  host: z
    .string()
    .default('0.0.0.0')
    .refine((v) => isIP(v) !== 0 || HOST_NAME.test(v), {
      error:
        'expected an IP address (0.0.0.0: every interface; 127.0.0.1: this machine only) or a host name of letters, digits, hyphens and dots',
    })
    .meta({ allowed: 'an IP address or a host name' })
    .describe("Address the worker's HTTP endpoints listen on."),
  port: z
    .int()
    .min(0)
    .max(65535)
    .default(9464)
    .describe(
      'Port of /healthz, /readyz and /metrics; 0 picks a free port (logged at start), for several workers on one host.',
    ),
  gauges_interval_seconds: z
    .int()
    .min(1)
    .max(600)
    .default(15)
    .describe(
      'Seconds between reads of the DLQ, backlog and failure-group gauges. One worker at a time reads them, once per interval (it holds a lease in the database for two thirds of an interval, renewed at each check), and every worker exports the stored values with their age (tasker_metrics_gauges_age_seconds); every worker checks the lease three times per interval (one primary-key statement), so a stopped holder is replaced within one interval.',
    ),
});

export const WebSchema = z.strictObject({
  host: z
    .string()
    .default('127.0.0.1')
    .refine((v) => isIP(v) !== 0 || HOST_NAME.test(v), {
      error:
        'expected an IP address (127.0.0.1: this machine only; 0.0.0.0: every interface) or a host name of letters, digits, hyphens and dots',
    })
    .meta({ allowed: 'an IP address or a host name' })
    .describe('Address the `web` command (HTTP API and console) listens on.'),
  port: z
    .int()
    .min(0)
    .max(65535)
    .default(8080)
    .describe('Port of the `web` command; 0 picks a free port (logged at start).'),
  trust_proxy: z
    .union(
      [
        z.boolean(),
        z
          .array(
            z.string().refine((v) => isProxyAddress(v), {
              error: 'expected an IP address or a CIDR range such as 10.0.0.0/8',
            }),
          )
          .min(1),
      ],
      { error: 'expected true, false, or a list of proxy addresses and CIDR ranges such as ["10.0.0.0/8"]' },
    )
    .default(false)
    .meta({ allowed: '`false`, `true`, or a list of proxy addresses and CIDR ranges' })
    .describe(
      "Whether to believe a proxy's X-Forwarded-For and X-Forwarded-Proto: false (the default) takes the client address and scheme from the connection; true believes any proxy; a list believes only those addresses. Behind a proxy set it, or every client shares the proxy's address (in the log, and for web.refusal_limit_per_address) and sessions never see https.",
    ),
  secure_cookies: z
    .enum(['auto', 'always'])
    .default('auto')
    .describe(
      'When the console marks its cookies Secure (sent over https only): auto, when the request came over https (TLS to this process, or a proxy trusted by web.trust_proxy that says X-Forwarded-Proto: https); always, on every request (for TLS ended by a proxy that does not say so; plain http then cannot sign in).',
    ),
  session_max_age_minutes: z
    .int()
    .min(5)
    .max(10_080)
    .default(480)
    .describe(
      "How long a console session lasts after signing in, at most (the token's own expiry and revocation end it sooner).",
    ),
  session_idle_timeout_minutes: z
    .int()
    .min(1)
    .max(10_080)
    .default(60)
    .describe('A console session without a request for this long has ended (sign in again).'),
  refusal_limit_per_address: z
    .int()
    .min(1)
    .max(100_000)
    .default(30)
    .describe(
      'Refused requests (bad token or session, missing permission, CSRF) one client address may make within web.refusal_window_seconds; past it, every request from the address gets 429 until the window ends. Counted per web process.',
    ),
  refusal_window_seconds: z
    .int()
    .min(1)
    .max(86_400)
    .default(60)
    .describe('The window web.refusal_limit_per_address counts refused requests in.'),
});

export const LoggingSchema = z.strictObject({
  level: z.enum(['error', 'warn', 'info', 'debug']).default('info').describe('Lowest level written.'),
  format: z
    .enum(['json', 'pretty'])
    .default('pretty')
    .describe('json: one JSON object per line; pretty: for people at a terminal.'),
});

export const ConfigSchema = z.strictObject({
  staleness_detection: StalenessDetectionSchema.prefault({}),
  dlq: DlqSchema.prefault({}),
  archive: ArchiveSchema.prefault({}),
  worker: WorkerSchema.prefault({}),
  metrics: MetricsSchema.prefault({}),
  web: WebSchema.prefault({}),
  database: DatabaseSchema.prefault({}),
  migrate: MigrateSchema.prefault({}),
  logging: LoggingSchema.prefault({}),
});

export type Config = z.infer<typeof ConfigSchema>;
export type StalenessDetectionConfig = Config['staleness_detection'];
export type DlqConfig = Config['dlq'];
export type DlqEnrichmentConfig = Config['dlq']['enrichment'];
export type ArchiveConfig = Config['archive'];
export type MigrateConfig = Config['migrate'];
