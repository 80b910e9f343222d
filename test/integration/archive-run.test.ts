/**
 * The archival run (jobs/archive-finished-tasks.ts) and the archive / restore commands: batching,
 * the batch size after statement timeouts, the abort signal, configuration and flags.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import archiveJob, {
  type ArchiveFinishedTasksOptions,
  type ArchiveProgress,
  archiveSchedule,
  pauseAfter,
  runArchival,
} from '../../jobs/archive-finished-tasks.ts';
import { parseArgs } from '../../src/cli/args.ts';
import { ARCHIVE_FLAGS, archiveOptionsFromFlags } from '../../src/cli/commands/archive.ts';
import { runCli } from '../../src/cli/main.ts';
import { loadConfig } from '../../src/config/load.ts';
import { databaseNow } from '../../src/db/queries/server.ts';
import { AdaptiveBatchSize } from '../../src/domain/adaptive-batch-size.ts';
import { ConfigError } from '../../src/errors.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { archivedTaskUuids, insertFinishedGraphs, tableCounts } from '../helpers/archive-factories.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { hoursBefore, insertTemplate, NOW, type Template } from '../helpers/factories.ts';

const db = useTestDatabase();
let template: Template;

const OPTIONS: ArchiveFinishedTasksOptions = archiveJob.optionsFromConfig(loadConfig({ env: {} }).config);

beforeEach(async () => {
  await db.pool.query('DROP TRIGGER IF EXISTS slow_archive ON tasker_tasks_archive');
  await resetTables(db.pool);
  template = await insertTemplate(db.pool, { namespace: 'billing', name: 'invoice' });
});

function graphs(count: number, o: { template?: Template; daysAgo?: number } = {}) {
  return insertFinishedGraphs(db.pool, {
    named_task_uuid: (o.template ?? template).named_task_uuid,
    state: 'complete',
    finishedAt: hoursBefore(NOW, 24 * (o.daysAgo ?? 40)),
    count,
    steps: 2,
  });
}

async function run(options: Partial<ArchiveFinishedTasksOptions>, signal = new AbortController().signal) {
  const events: ArchiveProgress[] = [];
  const ctx = { pool: db.pool, now: NOW, logger: silentLogger(), signal };
  const result = await runArchival(ctx, { ...OPTIONS, pause_between_batches_ms: 0, ...options }, (p) =>
    events.push(p),
  );
  return { result, events };
}

describe('the run', () => {
  it('uses the configured defaults', () => {
    expect(OPTIONS).toEqual({
      dry_run: false,
      retention_days: 30,
      batch_size: 1000,
      max_batches: 1000,
      batch_statement_timeout_ms: 5000,
      pause_between_batches_ms: 0,
      duty_cycle_percent: 100,
      batch_target_ms: 500,
      policies: {
        archive_completed: true,
        archive_failed: true,
        archive_cancelled: false,
        archive_resolved_manually: true,
        archive_dlq_resolved: true,
      },
      namespace: null,
      task_name: null,
      finished_before: null,
      keep_months: 0,
      export_dir: '',
    });
  });

  it('is scheduled every archive_interval_hours, and not at all when archival is disabled', () => {
    const schedule = (env: Record<string, string>) => archiveSchedule(loadConfig({ env }).config);
    expect(schedule({})).toBe('0 0 * * *');
    expect(schedule({ TASKER__archive__archive_interval_hours: '6' })).toBe('0 */6 * * *');
    expect(schedule({ TASKER__archive__archive_interval_hours: '168' })).toBe('0 0 * * 0');
    expect(schedule({ TASKER__archive__enabled: 'false' })).toBeNull();
  });

  it('batch_size + 1 eligible tasks take two batches; a second run finds nothing', async () => {
    await graphs(11);
    const first = await run({ batch_size: 10 });
    expect(first.result).toMatchObject({ batches: 2, tasks_archived: 11, stopped_by: 'no_more_candidates' });
    expect(first.events.map((e) => e.kind === 'batch' && e.result.tasks_archived)).toEqual([10, 1]);
    const second = await run({ batch_size: 10 });
    expect(second.result).toMatchObject({ batches: 1, tasks_archived: 0, rows_archived: 0 });
  });

  it('stops after max_batches, leaving the rest for the next run', async () => {
    await graphs(10);
    const { result } = await run({ batch_size: 3, max_batches: 2 });
    expect(result).toMatchObject({
      batches: 2,
      tasks_archived: 6,
      stopped_by: 'max_batches',
      aborted: false,
    });
    expect((await tableCounts(db.pool, 'live')).tasker_tasks).toBe(4);
  });

  it('checks the abort signal between batches and keeps what is done', async () => {
    await graphs(10);
    const controller = new AbortController();
    const events: ArchiveProgress[] = [];
    const ctx = { pool: db.pool, now: NOW, logger: silentLogger(), signal: controller.signal };
    const result = await runArchival(
      ctx,
      { ...OPTIONS, batch_size: 3, pause_between_batches_ms: 60_000 },
      (p) => {
        events.push(p);
        controller.abort(); // during the first batch's pause, which the abort cuts short
      },
    );
    expect(result).toMatchObject({ batches: 1, tasks_archived: 3, stopped_by: 'aborted', aborted: true });
    expect(result.duration_ms).toBeLessThan(30_000);
    expect((await archivedTaskUuids(db.pool)).length).toBe(3);
  });

  it('filters by namespace and template, and refuses an unknown one', async () => {
    const other = await insertTemplate(db.pool, { namespace: 'shipping', name: 'label' });
    await graphs(3);
    await graphs(2, { template: other });
    expect((await run({ namespace: 'shipping' })).result.tasks_archived).toBe(2);
    expect((await run({ task_name: 'invoice' })).result.tasks_archived).toBe(3);
  });

  it('a filter that names no template: the run ends at once as done (never retried), the CLI exits 2 naming what exists', async () => {
    await insertTemplate(db.pool, { namespace: 'shipping', name: 'label' });
    await graphs(3);
    const { result } = await run({ task_name: 'missing' });
    expect(result).toMatchObject({ batches: 0, tasks_archived: 0, stopped_by: 'no_matching_template' });
    expect((await archivedTaskUuids(db.pool)).length).toBe(0);

    const byTemplate = await cli(['archive', '--template', 'missing']);
    expect(byTemplate).toMatchObject({ code: 2, stdout: '' });
    expect(byTemplate.stderr).toMatch(
      /^error: --template "missing" matches no task template \(templates: invoice, label|templates: label, invoice/,
    );
    const byNamespace = await cli([
      'archive',
      '--dry-run',
      '--namespace',
      'nowhere',
      '--template',
      'invoice',
    ]);
    expect(byNamespace.code).toBe(2);
    expect(byNamespace.stderr).toContain(
      'error: --namespace "nowhere" with --template "invoice" matches no task template (namespaces: ',
    );
    expect(byNamespace.stderr).toContain('shipping');
    const queued = await cli(['enqueue', 'archive', '--template', 'missing']); // refused before pg-boss is reached
    expect(queued.code).toBe(2);
    expect(queued.stderr).toMatch(/^error: --template "missing" matches no task template/);
    const wrongPair = await cli(['archive', '--namespace', 'shipping', '--template', 'invoice']);
    expect(wrongPair.stderr).toContain('matches no task template (templates in shipping: label)');
    expect((await tableCounts(db.pool, 'live')).tasker_tasks).toBe(3);
  });
});

describe('statement timeouts', () => {
  /**
   * A batch that archives more than `tolerated` tasks of `slow` never finishes: its insert into
   * tasker_tasks_archive then sleeps far past any timeout used here (a statement trigger in this
   * test database only), and a batch with fewer does not sleep at all. Which batches time out
   * depends only on their contents, never on how fast this machine is.
   */
  async function makeSlow(slow: Template, tolerated: number) {
    await db.pool.query(
      `CREATE OR REPLACE FUNCTION slow_archive_row() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF (SELECT count(*) FROM archived WHERE named_task_uuid = '${slow.named_task_uuid}') > ${tolerated} THEN
           PERFORM pg_sleep(60);
         END IF;
         RETURN NULL;
       END $$;
       CREATE TRIGGER slow_archive AFTER INSERT ON tasker_tasks_archive
         REFERENCING NEW TABLE AS archived
         FOR EACH STATEMENT EXECUTE FUNCTION slow_archive_row();`,
    );
  }

  it('halve the batch size, and three good batches in a row double it again', async () => {
    const slow = await insertTemplate(db.pool, { name: 'slow' });
    await graphs(24, { template: slow, daysAgo: 50 }); // the oldest: archived first
    await graphs(40, { daysAgo: 40 });
    await makeSlow(slow, 8);
    // A batch of 16 slow tasks never finishes (a sure timeout); batches of 8 are quick.
    const { result, events } = await run({ batch_size: 16, batch_statement_timeout_ms: 450 });
    expect(events.map((e) => (e.kind === 'batch' ? e.batch_size : `timeout ${e.batch_size}`))).toEqual([
      'timeout 16',
      8,
      8,
      8,
      16,
      16,
      16,
    ]);
    expect(result).toMatchObject({ tasks_archived: 64, timeouts: 1, final_batch_size: 16, batches: 6 });
    expect((await tableCounts(db.pool, 'live')).tasker_tasks).toBe(0);
  });

  it('a single task over the timeout fails the run with a message saying what to do', async () => {
    const slow = await insertTemplate(db.pool, { name: 'slow' });
    await graphs(4, { template: slow });
    await makeSlow(slow, 0);
    await expect(run({ batch_size: 4, batch_statement_timeout_ms: 100 })).rejects.toThrow(
      'archiving one task took longer than batch_statement_timeout_ms (100 ms) after 0 batches; raise the timeout or look for locks on the task tables',
    );
    expect((await tableCounts(db.pool, 'archive')).tasker_tasks).toBe(0);
  });

  it('a deadlock or serialization failure is retried with the same batch', async () => {
    await graphs(5);
    // fails the first archiving attempt only: a sequence is not rolled back with the batch
    await db.pool.query(
      `CREATE SEQUENCE IF NOT EXISTS archive_attempts;
       SELECT setval('archive_attempts', 1, false);
       CREATE OR REPLACE FUNCTION slow_archive_row() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF nextval('archive_attempts') = 1 THEN
           RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001';
         END IF;
         RETURN NEW;
       END $$;
       CREATE TRIGGER slow_archive BEFORE INSERT ON tasker_tasks_archive
         FOR EACH ROW EXECUTE FUNCTION slow_archive_row();`,
    );
    const { result, events } = await run({ batch_size: 10 });
    expect(events.map((e) => e.kind)).toEqual(['retry', 'batch']);
    expect(result).toMatchObject({ retries: 1, timeouts: 0, batches: 1, tasks_archived: 5 });
  });

  it('AdaptiveBatchSize never goes below 1 or above its maximum', () => {
    const size = new AdaptiveBatchSize(5, 2);
    expect([size.shrink(), size.shrink(), size.shrink(), size.shrink()]).toEqual([2, 1, 1, 1]);
    expect([size.succeeded(), size.succeeded(), size.succeeded(), size.succeeded()]).toEqual([1, 2, 2, 4]);
    expect([size.succeeded(), size.succeeded(), size.succeeded()]).toEqual([4, 5, 5]);
    expect(() => new AdaptiveBatchSize(0)).toThrow('batch size must be a whole number ≥ 1, got 0');
  });
});

describe('duty cycle', () => {
  it('pauses so that batches take at most the duty cycle of the wall time, never less than the fixed pause', () => {
    expect(pauseAfter(400, 20, 100)).toBe(20);
    expect(pauseAfter(400, 20, 50)).toBe(400);
    expect(pauseAfter(400, 20, 25)).toBe(1200);
    expect(pauseAfter(400, 20, 1)).toBe(39600);
    expect(pauseAfter(10, 20, 50)).toBe(20);
    const batch = 300;
    for (const percent of [100, 75, 50, 25, 10]) {
      expect(batch / (batch + pauseAfter(batch, 0, percent))).toBeCloseTo(percent / 100, 2);
    }
  });
});

describe('configuration and flags', () => {
  const configProblems = (env: Record<string, string>) => {
    try {
      loadConfig({ env });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as ConfigError).problems;
    }
    throw new Error('expected a ConfigError');
  };

  it('bad archive keys stop start-up with a message naming key, value and range', () => {
    expect(configProblems({ TASKER__archive__batch_statement_timeout_ms: '50' })).toEqual([
      'archive.batch_statement_timeout_ms = 50 (from TASKER__archive__batch_statement_timeout_ms): expected a whole number from 100 to 600000',
    ]);
    expect(configProblems({ TASKER__archive__pause_between_batches_ms: '-1' })).toEqual([
      'archive.pause_between_batches_ms = -1 (from TASKER__archive__pause_between_batches_ms): expected a whole number from 0 to 60000',
    ]);
    expect(configProblems({ TASKER__archive__duty_cycle_percent: '0' })).toEqual([
      'archive.duty_cycle_percent = 0 (from TASKER__archive__duty_cycle_percent): expected a whole number from 1 to 100',
    ]);
    expect(configProblems({ TASKER__archive__duty_cycle_percent: '101' })).toEqual([
      'archive.duty_cycle_percent = 101 (from TASKER__archive__duty_cycle_percent): expected a whole number from 1 to 100',
    ]);
    expect(configProblems({ TASKER__archive__policies__archive_resolved_manualy: 'true' })[0]).toMatch(
      /^archive\.policies\.archive_resolved_manualy .*unknown key; did you mean archive\.policies\.archive_resolved_manually\?/,
    );
    expect(
      configProblems({
        TASKER__archive__policies__archive_completed: 'false',
        TASKER__archive__policies__archive_failed: 'false',
        TASKER__archive__policies__archive_resolved_manually: 'false',
      })[0],
    ).toMatch(
      /^archive\.policies( \(from [^)]*\))?: archive_completed, archive_failed, archive_cancelled and archive_resolved_manually are all false/,
    );
  });

  it('flags override the configuration, key by key (as enqueue archive will parse them)', () => {
    const { config } = loadConfig({ env: {} });
    const argv = [
      '--dry-run',
      '--batch-size',
      '50',
      '--template',
      'invoice',
      '--finished-before',
      '2026-05-01T02:00:00+02:00',
      '--batch-target-ms',
      '200',
      '--duty-cycle-percent',
      '25',
    ];
    const { flags } = parseArgs(argv, { flags: ARCHIVE_FLAGS });
    expect(archiveOptionsFromFlags(config, flags)).toEqual({
      ...OPTIONS,
      dry_run: true,
      batch_size: 50,
      task_name: 'invoice',
      finished_before: '2026-05-01T00:00:00.000Z',
      batch_target_ms: 200,
      duty_cycle_percent: 25,
    });
    const { flags: dateOnly } = parseArgs(['--finished-before', '2026-05-01'], { flags: ARCHIVE_FLAGS });
    expect(archiveOptionsFromFlags(config, dateOnly).finished_before).toBe('2026-05-01T00:00:00.000Z');
  });

  it.each([
    [['archive', '--batch-size', '0'], '--batch-size "0": expected a whole number from 1 to 10000'],
    [
      ['archive', '--retention-days', 'ten'],
      '--retention-days "ten": expected a whole number from 1 to 3650',
    ],
    [
      ['archive', '--max-batches', '100001'],
      '--max-batches "100001": expected a whole number from 1 to 100000',
    ],
    [
      ['archive', '--finished-before', 'yesterday'],
      '--finished-before "yesterday": expected an ISO 8601 time with a zone, such as 2026-05-01T00:00:00Z, or a date such as 2026-05-01 (UTC)',
    ],
    [
      ['archive', '--duty-cycle-percent', '0'],
      '--duty-cycle-percent "0": expected a whole number from 1 to 100',
    ],
    [
      ['archive', '--batch-target-ms', '5'],
      '--batch-target-ms "5": expected a whole number from 10 to 600000',
    ],
    [['archive', '--bach-size', '5'], "Unknown option '--bach-size'"],
    [['restore', 'not-a-uuid'], '<task_uuid> "not-a-uuid": expected a UUID'],
    [['restore'], 'missing <task_uuid>'],
  ])('%j exits 2: %s', async (argv, message) => {
    const { code, stderr } = await cli(argv as string[]);
    expect(code).toBe(2);
    expect(stderr).toContain(message);
  });
});

describe('the commands', () => {
  it('archive --json archives and reports counts; restore brings a task back', async () => {
    const now = await databaseNow(db.pool);
    const tasks = await insertFinishedGraphs(db.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: hoursBefore(now, 24 * 31),
      count: 3,
    });
    const archived = await cli(['archive', '--json', '--batch-size', '2']);
    expect(archived.code).toBe(0);
    expect(JSON.parse(archived.stdout)).toMatchObject({ tasks_archived: 3, steps_archived: 15, batches: 2 });

    const restored = await cli(['restore', tasks[0]!, '--json', '--by', 'ops-alice']);
    expect(restored.code).toBe(0);
    // Audited in the restore's transaction, as restores through the API are.
    const audit = await db.pool.query(
      `SELECT actor, actor_kind, action, target_kind, target_id FROM tasker_audit_log WHERE action = 'archive.restore'`,
    );
    expect(audit.rows).toEqual([
      {
        actor: 'ops-alice',
        actor_kind: 'cli',
        action: 'archive.restore',
        target_kind: 'task',
        target_id: tasks[0],
      },
    ]);
    expect(JSON.parse(restored.stdout)).toEqual({
      task_uuid: tasks[0],
      tasks_restored: 1,
      steps_restored: 5,
      transitions_restored: 4,
      edges_restored: 4,
      step_transitions_restored: 15,
      dlq_entries_restored: 0,
      state: 'complete',
      state_entered_at: expect.any(String),
      past_retention: true,
      held_until: null,
      archival: expect.stringMatching(
        /past the retention of 30 days: the next archival run archives it again$/,
      ),
    });
  });

  it('restore says when the next archival run would take the task again; --hold-days holds it out', async () => {
    const now = await databaseNow(db.pool);
    const [unheld, held] = await insertFinishedGraphs(db.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: hoursBefore(now, 24 * 31),
      count: 2,
    });
    expect((await cli(['archive', '--json'])).code).toBe(0);
    const plain = await cli(['restore', unheld!]);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(
      /^archival: +it finished \d+ d( \d+ h)? ago \(complete\), past the retention of 30 days: the next archival run archives it again$/m,
    );
    expect(plain.stderr).toMatch(
      /^warning: .* the next archival run archives it again; restore with --hold-days N to keep it live for N days\n$/,
    );
    const holding = await cli(['restore', held!, '--hold-days', '3']);
    expect(holding.code).toBe(0);
    expect(holding.stdout).toMatch(
      /^archival: +held out of archival until \S+; the first archival run after that archives it again$/m,
    );
    expect(holding.stderr).toBe('');
    // The next run takes back the task not held, and leaves the held one live.
    const again = await cli(['archive', '--json']);
    expect(JSON.parse(again.stdout)).toMatchObject({ tasks_archived: 1 });
    const { rows } = await db.pool.query(
      'SELECT task_uuid FROM tasker_tasks WHERE task_uuid = ANY ($1::uuid[])',
      [[unheld, held]],
    );
    expect(rows).toEqual([{ task_uuid: held }]);
    const bad = await cli(['restore', unheld!, '--hold-days', '0']);
    expect(bad).toMatchObject({
      code: 2,
      stderr: 'error: --hold-days "0": expected a whole number from 1 to 365\n',
    });
  });

  it('restore of a task that is not archived exits 2 and says where the task is', async () => {
    const [live] = await graphs(1, { daysAgo: 1 });
    const { code, stderr } = await cli(['restore', live!]);
    expect(code).toBe(2);
    expect(stderr).toBe(
      `error: task ${live} is not archived: it is in the live tables (current state complete)\n`,
    );
  });

  it('draws a progress bar on a terminal, and not with --json', async () => {
    const now = await databaseNow(db.pool);
    await insertFinishedGraphs(db.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: hoursBefore(now, 24 * 31),
      count: 4,
    });
    const tty = await cli(['archive', '--dry-run', '--batch-size', '2'], true);
    expect(tty.code).toBe(0);
    expect(tty.stdout).toContain('\r\x1b[2Kdry run [###############...............] 50% 2/~4 tasks, batch 1');
    expect(tty.stdout).toContain('100% 4/~4 tasks, batch 2 (2 per batch)');
    expect(tty.stdout).toContain('tasks_archived:            4 (would be archived)');
    const json = await cli(['archive', '--dry-run', '--json'], true);
    expect(json.stdout.startsWith('{')).toBe(true);
  });
});

async function cli(argv: string[], isTTY = false): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: { DATABASE_URL: db.url, TASKER_ENV: 'test' },
    isTTY,
  });
  return { code, stdout, stderr };
}
