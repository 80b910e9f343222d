/**
 * The archive tables change only in `migrate`, and archival relies on the engine's foreign keys
 * (issue 21, part B). `migrate` makes changes that touch only the catalog at any size, a change
 * that rewrites an archive table only up to archive.max_rewrite_rows (otherwise it names the
 * statement and `migrate --allow-archive-rewrites`, and archival and restore refuse meanwhile), and
 * waits for each archive table's lock at most archive.alter_lock_timeout_ms. A schema whose keys
 * archival relies on are missing or not enforced refuses archival (real or dry) naming each key and
 * what to run, while detection, restore and migrate go on; without the key, a row the engine adds
 * during a move would be left live and orphaned.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type pg from 'pg';
import archiveJob, {
  type ArchiveFinishedTasksOptions,
  runArchival,
} from '../../jobs/archive-finished-tasks.ts';
import { loadConfig } from '../../src/config/load.ts';
import { restoreArchivedTask as restoreRows } from '../../src/db/queries/archive.ts';
import { ArchiveRefusedError } from '../../src/errors.ts';
import { migrate } from '../../src/install/sql.ts';
import { restoreArchivedTask } from '../../src/operations/archive.ts';
import { ConflictError } from '../../src/operations/errors.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { insertFinishedGraphs, tableCounts, totalCounts } from '../helpers/archive-factories.ts';
import { runCli } from '../helpers/cli-process.ts';
import { createTestDatabase, resetTables, type TestDatabase } from '../helpers/db.ts';
import { defaultOptions, detect } from '../helpers/detection.ts';
import { hoursBefore, insertTask, insertTemplate, minutesBefore, NOW } from '../helpers/factories.ts';
import { waitFor } from '../helpers/wait.ts';

const OPTIONS: ArchiveFinishedTasksOptions = {
  ...archiveJob.optionsFromConfig(loadConfig({ env: {} }).config),
  dry_run: false,
  pause_between_batches_ms: 0,
  duty_cycle_percent: 100,
  batch_target_ms: 500,
};

function archival(db: TestDatabase, options: Partial<ArchiveFinishedTasksOptions> = {}) {
  const ctx = { pool: db.pool, now: NOW, logger: silentLogger(), signal: new AbortController().signal };
  return runArchival(ctx, { ...OPTIONS, ...options });
}

async function oldGraphs(db: TestDatabase, count: number): Promise<string[]> {
  const template = await insertTemplate(db.pool, { namespace: 'billing', name: `invoice_${count}` });
  return insertFinishedGraphs(db.pool, {
    named_task_uuid: template.named_task_uuid,
    state: 'complete',
    finishedAt: hoursBefore(NOW, 24 * 40),
    count,
    steps: 5,
  });
}

async function columnType(db: TestDatabase, table: string, column: string): Promise<string> {
  const { rows } = await db.pool.query<{ type: string }>(
    `SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute
      WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped`,
    [table, column],
  );
  return rows[0]?.type ?? 'absent';
}

/** The table's file: a rewrite gives it a new one. */
/** The files of an archive table's partitions (a partitioned table has none of its own). */
async function fileOf(db: TestDatabase, table: string): Promise<string> {
  const { rows } = await db.pool.query<{ f: string }>(
    `SELECT string_agg(pg_relation_filenode(relid)::text, ',' ORDER BY relid) AS f
       FROM pg_partition_tree($1::regclass) WHERE isleaf`,
    [table],
  );
  return rows[0]!.f;
}

const envOf = (db: TestDatabase, extra: Record<string, string> = {}) => ({ DATABASE_URL: db.url, ...extra });

describe('migrate alone changes the archive tables, and never rewrites a large one by surprise', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });

  it('a rewrite over archive.max_rewrite_rows is left, naming the statement and --allow-archive-rewrites; catalog-only changes are made at any size; the flag makes it', async () => {
    await resetTables(db.pool);
    const tasks = await oldGraphs(db, 3);
    expect(await archival(db)).toMatchObject({ tasks_archived: 3 }); // 12 task transitions archived
    await db.pool.query(`
      ALTER TABLE tasker_task_transitions ALTER COLUMN sort_key TYPE bigint;
      ALTER TABLE tasker_tasks ALTER COLUMN initiator TYPE text;
      ALTER TABLE tasker_tasks ADD COLUMN tenant text NOT NULL DEFAULT 'acme';`);
    const tasksFile = await fileOf(db, 'tasker_tasks_archive');
    const transitionsFile = await fileOf(db, 'tasker_task_transitions_archive');

    // 12 rows, one over the limit: sort_key is left; the other two are made (no rewrite: same file)
    const left = await runCli(['migrate'], envOf(db, { TASKER__archive__max_rewrite_rows: '11' }));
    expect(left.code).toBe(0);
    expect(left.stdout).toContain(
      'archive table follows its live table: tasker_tasks_archive.initiator: widen character varying(128) to text',
    );
    expect(left.stdout).toContain(
      'archive table follows its live table: tasker_tasks_archive.tenant: add text',
    );
    for (const named of [
      'tasker_task_transitions_archive.sort_key: widen integer to bigint rewrites the table, which has more than 11 rows (archive.max_rewrite_rows), so it was not made',
      'run `tasker-lifecycle migrate --allow-archive-rewrites`',
      'or run: ALTER TABLE tasker_task_transitions_archive ALTER COLUMN sort_key TYPE bigint',
    ]) {
      expect(left.stderr).toContain(named);
    }
    expect(await columnType(db, 'tasker_task_transitions_archive', 'sort_key')).toBe('integer');
    expect(await columnType(db, 'tasker_tasks_archive', 'initiator')).toBe('text');
    expect(await fileOf(db, 'tasker_tasks_archive')).toBe(tasksFile);
    expect(await fileOf(db, 'tasker_task_transitions_archive')).toBe(transitionsFile);
    // archived rows got the new column's default, as the engine's rows did; the archive keeps no default
    const { rows: tenants } = await db.pool.query(
      `SELECT DISTINCT tenant, (SELECT count(*) FROM pg_attrdef d JOIN pg_attribute a
                                 ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                                WHERE d.adrelid = 'tasker_tasks_archive'::regclass AND a.attname = 'tenant')::int AS defaults
         FROM tasker_tasks_archive`,
    );
    expect(tenants).toEqual([{ tenant: 'acme', defaults: 0 }]);

    // meanwhile archival and restore refuse, naming the column left and the command; status says so
    await oldGraphs(db, 1);
    const totals = await totalCounts(db.pool);
    await expect(archival(db)).rejects.toThrow(
      'the archive tables differ from the live tables (tasker_task_transitions_archive.sort_key: widen integer to bigint): run `tasker-lifecycle migrate`',
    );
    await expect(restoreRows(db.pool, tasks[0]!)).rejects.toThrow(
      /^restore refused, nothing was moved: .*tasker_task_transitions_archive\.sort_key/,
    );
    expect(await totalCounts(db.pool)).toEqual(totals);
    const status = await runCli(['status'], envOf(db));
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('archival: REFUSED, every run moves nothing until this is fixed:');
    expect(status.stdout).toContain('tasker_task_transitions_archive.sort_key: widen integer to bigint');

    // in a maintenance window: the flag makes it, whatever the limit
    const forced = await runCli(
      ['migrate', '--allow-archive-rewrites'],
      envOf(db, { TASKER__archive__max_rewrite_rows: '11' }),
    );
    expect(forced.code).toBe(0);
    expect(forced.stdout).toContain(
      'archive table follows its live table: tasker_task_transitions_archive.sort_key: widen integer to bigint',
    );
    expect(forced.stderr).not.toContain('rewrites the table');
    expect(await columnType(db, 'tasker_task_transitions_archive', 'sort_key')).toBe('bigint');
    expect(await fileOf(db, 'tasker_task_transitions_archive')).not.toBe(transitionsFile);

    // and archival moves rows again, values past integer's range included
    await db.pool.query('UPDATE tasker_task_transitions SET sort_key = sort_key + 5000000000');
    expect(await archival(db)).toMatchObject({ tasks_archived: 1, transitions_archived: 4 });
    const { rows: keys } = await db.pool.query(
      'SELECT min(sort_key) AS low FROM tasker_task_transitions_archive WHERE sort_key > 2147483647',
    );
    expect(keys).toEqual([{ low: 5000000000 }]);
  });

  it('archive.max_rewrite_rows, either side: a table of exactly that many rows is rewritten, one more row is not', async () => {
    await resetTables(db.pool);
    await oldGraphs(db, 3);
    expect(await archival(db)).toMatchObject({ step_transitions_archived: 45 });
    await db.pool.query('ALTER TABLE tasker_workflow_step_transitions ALTER COLUMN sort_key TYPE bigint');

    const over = await migrate(db.pool, undefined, { archive: { maxRewriteRows: 44, lockTimeoutMs: 2000 } });
    expect(over.archiveChanges).toEqual([]);
    expect(over.archiveChangesLeft).toEqual([
      expect.stringContaining(
        'tasker_workflow_step_transitions_archive.sort_key: widen integer to bigint rewrites the table, which has more than 44 rows',
      ),
    ]);
    expect(await columnType(db, 'tasker_workflow_step_transitions_archive', 'sort_key')).toBe('integer');

    const at = await migrate(db.pool, undefined, { archive: { maxRewriteRows: 45, lockTimeoutMs: 2000 } });
    expect(at).toMatchObject({
      archiveChanges: ['tasker_workflow_step_transitions_archive.sort_key: widen integer to bigint'],
      archiveChangesLeft: [],
    });
    expect(await columnType(db, 'tasker_workflow_step_transitions_archive', 'sort_key')).toBe('bigint');
  });

  it('PostgreSQL decides what rewrites: varchar to text, numeric(p, s) to numeric, a constant default do not; integer to bigint, a volatile default, a domain with a check do', async () => {
    await db.pool.query(`
      CREATE DOMAIN probe_positive AS integer CHECK (VALUE > 0);
      CREATE TABLE probe_archive (id integer PRIMARY KEY, label varchar(20), amount numeric(8, 2), n integer);
      CREATE INDEX ON probe_archive (label);
      CREATE TABLE probe_live (id integer PRIMARY KEY, label text, amount numeric, n bigint,
                               fixed text DEFAULT 'x', stamped timestamptz DEFAULT now(),
                               random_id uuid DEFAULT gen_random_uuid(), checked probe_positive);`);
    const { rows } = await db.pool.query<{ column: string; rewrites: boolean }>(
      `SELECT c AS column, tasker_lifecycle_archive_change_rewrites('probe_live', 'probe_archive', c) AS rewrites
         FROM unnest(ARRAY['label', 'amount', 'fixed', 'stamped', 'n', 'random_id', 'checked']) c`,
    );
    expect(Object.fromEntries(rows.map((r) => [r.column, r.rewrites]))).toEqual({
      label: false,
      amount: false,
      fixed: false,
      stamped: false,
      n: true,
      random_id: true,
      checked: true,
    });
    // the probe left nothing behind and changed nothing
    expect(await columnType(db, 'probe_archive', 'label')).toBe('character varying(20)');
    const { rows: probes } = await db.pool.query(
      "SELECT count(*)::int AS n FROM pg_class WHERE relname = 'tasker_lifecycle_rewrite_probe'",
    );
    expect(probes).toEqual([{ n: 0 }]);
    await db.pool.query('DROP TABLE probe_archive, probe_live; DROP DOMAIN probe_positive');
  });

  it('each archive table waits at most archive.alter_lock_timeout_ms for its lock: one another session holds is left, saying so, and the others are changed', async () => {
    await resetTables(db.pool);
    await db.pool.query(`ALTER TABLE tasker_workflow_steps ADD COLUMN lane text;
                         ALTER TABLE tasker_tasks ADD COLUMN shard integer`);
    const reader = await db.connect();
    await reader.query('BEGIN');
    await reader.query('SELECT count(*) FROM tasker_workflow_steps_archive'); // a long read of the archive
    try {
      const started = performance.now();
      const result = await migrate(db.pool, undefined, {
        archive: { maxRewriteRows: 100_000, lockTimeoutMs: 100 },
      });
      const tookMs = performance.now() - started;
      expect(result.archiveChanges).toEqual(['tasker_tasks_archive.shard: add integer']);
      expect(result.archiveChangesLeft).toEqual([
        'tasker_workflow_steps_archive was not changed (lane: add text): its lock was not granted within 100 ms (archive.alter_lock_timeout_ms) in 3 tries, because another session is using the table (an archival batch, a restore, a read of the archive); archival and restore refuse until it is changed: run `tasker-lifecycle migrate` again',
      ]);
      // three tries of 100 ms and two pauses of 250 ms, not an unbounded wait behind the reader
      expect(tookMs).toBeLessThan(10_000);
      expect(await columnType(db, 'tasker_workflow_steps_archive', 'lane')).toBe('absent');
    } finally {
      await reader.query('ROLLBACK');
    }
    expect(
      (await migrate(db.pool, undefined, { archive: { maxRewriteRows: 100_000, lockTimeoutMs: 100 } }))
        .archiveChanges,
    ).toEqual(['tasker_workflow_steps_archive.lane: add text']);
  });
});

/** The keys archival relies on, each broken its own way. */
const BREAK_KEYS = `
  ALTER TABLE tasker_workflow_steps DROP CONSTRAINT tasker_workflow_steps_task_uuid_fkey;
  ALTER TABLE tasker_task_transitions DROP CONSTRAINT tasker_task_transitions_task_uuid_fkey,
    ADD CONSTRAINT tasker_task_transitions_task_uuid_fkey FOREIGN KEY (task_uuid) REFERENCES tasker_tasks (task_uuid) NOT VALID;
  ALTER TABLE tasker_workflow_step_edges ALTER CONSTRAINT tasker_workflow_step_edges_to_step_uuid_fkey DEFERRABLE;
  ALTER TABLE tasker_workflow_step_transitions DISABLE TRIGGER ALL;`;

describe("the engine's foreign keys archival relies on", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });

  it('a dropped key, a NOT VALID key, a DEFERRABLE key, disabled triggers: archival refuses naming each and what to run; detection, restore and migrate go on; the statements named fix it', async () => {
    await resetTables(db.pool);
    const [archived] = await oldGraphs(db, 1);
    expect(await archival(db)).toMatchObject({ tasks_archived: 1 });
    const waiting = await oldGraphs(db, 2);
    await db.pool.query(BREAK_KEYS);
    const totals = await totalCounts(db.pool);

    const named = [
      'the foreign key tasker_workflow_steps (task_uuid) -> tasker_tasks (task_uuid), which archival relies on, is missing: add it with ALTER TABLE tasker_workflow_steps ADD CONSTRAINT tasker_workflow_steps_task_uuid_fkey FOREIGN KEY (task_uuid) REFERENCES tasker_tasks (task_uuid) NOT VALID, then ALTER TABLE tasker_workflow_steps VALIDATE CONSTRAINT tasker_workflow_steps_task_uuid_fkey',
      'the foreign key tasker_task_transitions (task_uuid) -> tasker_tasks (task_uuid), which archival relies on, is NOT VALID (tasker_task_transitions_task_uuid_fkey): run ALTER TABLE tasker_task_transitions VALIDATE CONSTRAINT tasker_task_transitions_task_uuid_fkey',
      'the foreign key tasker_workflow_step_transitions (workflow_step_uuid) -> tasker_workflow_steps (workflow_step_uuid), which archival relies on, is not enforced, its triggers are disabled (tasker_workflow_step_transitions_workflow_step_uuid_fkey): run ALTER TABLE tasker_workflow_step_transitions ENABLE TRIGGER',
      'the foreign key tasker_workflow_step_edges (to_step_uuid) -> tasker_workflow_steps (workflow_step_uuid), which archival relies on, is DEFERRABLE (tasker_workflow_step_edges_to_step_uuid_fkey): run ALTER TABLE tasker_workflow_step_edges ALTER CONSTRAINT tasker_workflow_step_edges_to_step_uuid_fkey NOT DEFERRABLE',
    ];
    // every run refuses at its start, dry or real, naming each key; so does a direct call of the SQL
    let message = '';
    for (const dryRun of [true, false]) {
      const refused = archival(db, { dry_run: dryRun });
      await expect(refused).rejects.toThrow(ArchiveRefusedError);
      message = await refused.then(
        () => '',
        (err: Error) => err.message,
      );
      expect(message).toMatch(/^archival refused, nothing was moved: /);
      for (const n of named) expect(message).toContain(n);
    }
    await expect(
      db.pool.query('SELECT * FROM archive_completed_tasks(30, 10, false, $1)', [NOW]),
    ).rejects.toMatchObject({ code: 'TL004' });
    const cli = await runCli(['archive', '--dry-run'], envOf(db));
    expect(cli.code).toBe(2);
    for (const n of named) expect(cli.stderr).toContain(n);
    expect(await totalCounts(db.pool)).toEqual(totals);

    // migrate warns, naming each key and what to run, and succeeds; status says archival is refused and why
    const migrated = await runCli(['migrate'], envOf(db));
    expect(migrated.code).toBe(0);
    for (const key of [
      'archival refuses until the foreign key tasker_workflow_steps (task_uuid) -> tasker_tasks (task_uuid) is fixed: missing: add it with ALTER TABLE tasker_workflow_steps ADD CONSTRAINT',
      'archival refuses until the foreign key tasker_task_transitions (task_uuid) -> tasker_tasks (task_uuid) is fixed: NOT VALID',
      'archival refuses until the foreign key tasker_workflow_step_transitions (workflow_step_uuid) -> tasker_workflow_steps (workflow_step_uuid) is fixed: not enforced',
      'archival refuses until the foreign key tasker_workflow_step_edges (to_step_uuid) -> tasker_workflow_steps (workflow_step_uuid) is fixed: DEFERRABLE',
    ]) {
      expect(migrated.stderr).toContain(key);
    }
    const status = await runCli(['status', '--json'], envOf(db));
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout).archival_refused_by).toEqual(
      named.map((n) => expect.stringContaining(n)),
    );

    // detection does not need them: it acts on a stale task as ever
    const template = await insertTemplate(db.pool, { name: 'stuck' });
    const stale = await insertTask(db.pool, {
      template,
      state: 'steps_in_process',
      enteredAt: minutesBefore(NOW, 31),
    });
    const detected = await detect(db, defaultOptions());
    expect(detected).toMatchObject({ tasks_detected: 1, transitioned_to_error: 1, dlq_entries_created: 1 });
    expect(detected.tasks.map((t) => t.task_uuid)).toEqual([stale]);
    // nor does a restore (it puts rows back; it does not race the engine)
    expect(await restoreRows(db.pool, archived!)).toMatchObject({ tasks_restored: 1, steps_restored: 5 });

    // the statements named fix it, and archival moves the waiting graphs
    const statements = [...message.matchAll(/ALTER TABLE .+?(?=, then |; |$)/g)].map((m) => m[0]);
    expect(statements).toHaveLength(6);
    for (const sql of statements) await db.pool.query(sql);
    const { rows: left } = await db.pool.query('SELECT * FROM tasker_lifecycle_archive_refusals($1)', [
      'archival',
    ]);
    expect(left).toEqual([]);
    const moved = await archival(db);
    expect(moved.tasks_archived).toBe(waiting.length + 1); // the restored one is past retention too
    expect(Object.values(await tableCounts(db.pool, 'live'))).toEqual([1, 0, 0, 3, 0, 1]); // the detected task: pending, steps_in_process, error; its entry
  });

  it('a restore the database refuses is a conflict (409, exit 2) naming the column and `migrate`, with nothing moved or audited', async () => {
    await resetTables(db.pool);
    const [task] = await oldGraphs(db, 1);
    expect(await archival(db)).toMatchObject({ tasks_archived: 1 });
    await db.pool.query('ALTER TABLE tasker_workflow_steps ADD COLUMN lane text');
    const refused = restoreArchivedTask(db.pool, {
      taskUuid: task!,
      retentionDays: 30,
      actor: { kind: 'cli', name: 'test' },
      now: NOW,
    });
    await expect(refused).rejects.toThrow(ConflictError);
    await expect(refused).rejects.toThrow(
      'restore refused, nothing was moved: the archive tables differ from the live tables (tasker_workflow_steps_archive.lane: add text): run `tasker-lifecycle migrate`',
    );
    const cli = await runCli(['restore', task!], envOf(db));
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain('tasker_workflow_steps_archive.lane: add text');
    const { rows } = await db.pool.query(
      "SELECT count(*)::int AS n FROM tasker_audit_log WHERE action = 'archive.restore'",
    );
    expect(rows).toEqual([{ n: 0 }]);
    expect((await tableCounts(db.pool, 'archive')).tasker_tasks).toBe(1);
    await migrate(db.pool);
    await restoreArchivedTask(db.pool, {
      taskUuid: task!,
      retentionDays: 30,
      actor: { kind: 'cli', name: 'test' },
      now: NOW,
    });
    expect((await tableCounts(db.pool, 'live')).tasker_tasks).toBe(1);
  });
});

describe('why archival refuses without the key: a row the engine adds during a move', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db.drop();
  });

  /** A batch that has moved the graph and not yet committed, on its own connection. */
  async function batchInFlight(): Promise<pg.Client> {
    const archiver = await db.connect();
    await archiver.query('BEGIN');
    const { rows } = await archiver.query(
      'SELECT tasks_archived FROM archive_completed_tasks(p_retention_days => 30, p_batch_size => 10, p_dry_run => false, p_now => $1)',
      [NOW],
    );
    expect(rows).toEqual([{ tasks_archived: 1 }]);
    return archiver;
  }

  /** The engine records another transition of a step of the graph being moved. */
  function engineAddsStepTransition(engine: pg.Client, step: string) {
    return engine.query(
      `INSERT INTO tasker_workflow_step_transitions (workflow_step_uuid, to_state, from_state, sort_key, most_recent,
                                                     created_at, updated_at)
       VALUES ($1, 'complete', 'complete', 99, false, now(), now())`,
      [step],
    );
  }

  async function orphans(): Promise<number> {
    const { rows } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM tasker_workflow_step_transitions st
        WHERE NOT EXISTS (SELECT 1 FROM tasker_workflow_steps ws WHERE ws.workflow_step_uuid = st.workflow_step_uuid)`,
    );
    return rows[0]!.n;
  }

  async function stepOf(task: string): Promise<string> {
    const { rows } = await db.pool.query<{ id: string }>(
      'SELECT workflow_step_uuid AS id FROM tasker_workflow_steps WHERE task_uuid = $1 LIMIT 1',
      [task],
    );
    return rows[0]!.id;
  }

  it('with the key, the insert waits for the move, then fails on its vanished parent: nothing is orphaned', async () => {
    await resetTables(db.pool);
    const [task] = await oldGraphs(db, 1);
    const step = await stepOf(task!);
    const archiver = await batchInFlight();
    const engine = await db.connect();
    const insert = engineAddsStepTransition(engine, step).then(
      () => 'inserted',
      (err: { code?: string }) => err.code,
    );
    // it waits on the archiver (FOR KEY SHARE on the step the archiver holds)
    await waitUntilBlocked(db, archiver);
    await archiver.query('COMMIT');
    expect(await insert).toBe('23503'); // foreign_key_violation: its step is archived
    expect(await orphans()).toBe(0);
  });

  it('without it (the previous build, which did not check), the insert goes through and is left live, orphaned', async () => {
    await resetTables(db.pool);
    await db.pool.query(`
      ALTER TABLE tasker_workflow_step_transitions
        DROP CONSTRAINT tasker_workflow_step_transitions_workflow_step_uuid_fkey;
      -- archival as the previous build ran it, without the check this build makes
      CREATE OR REPLACE FUNCTION tasker_lifecycle_refuse_archive_moves(p_action text) RETURNS void
      LANGUAGE plpgsql AS $$ BEGIN END $$;`);
    const [task] = await oldGraphs(db, 1);
    const step = await stepOf(task!);
    const archiver = await batchInFlight();
    const engine = await db.connect();
    await engineAddsStepTransition(engine, step); // no wait: nothing ties it to the step being moved
    await archiver.query('COMMIT');
    expect(await orphans()).toBe(1);
    const { rows } = await db.pool.query(
      'SELECT count(*)::int AS n FROM tasker_workflow_steps_archive WHERE workflow_step_uuid = $1',
      [step],
    );
    expect(rows).toEqual([{ n: 1 }]); // its step is in the archive, the transition is not
  });
});

/** Waits until some session waits on the archiver's locks. */
async function waitUntilBlocked(db: TestDatabase, archiver: pg.Client): Promise<void> {
  const pid = (await archiver.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  await waitFor(
    'a session waiting on the archiver',
    async () => {
      const { rows } = await db.pool.query<{ waiting: boolean }>(
        'SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))) AS waiting',
        [pid],
      );
      return rows[0]!.waiting;
    },
    { timeoutMs: 10_000, intervalMs: 50 },
  );
}
