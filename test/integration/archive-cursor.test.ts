/**
 * The archival keyset cursor: a dry run reports exactly what the same real run then moves, for any
 * distribution of state-entry times (ties, microsecond spacing, thousands at one instant), with and
 * without batch limits; the real run neither skips nor repeats a task. And a run aborted between
 * batches keeps what it did, counted, and leaves every task once, live or archived.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import archiveJob, {
  type ArchiveFinishedTasksOptions,
  type ArchiveFinishedTasksResult,
  runArchival,
} from '../../jobs/archive-finished-tasks.ts';
import { loadConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import {
  archivedTaskUuids,
  graphRows,
  insertFinishedGraphs,
  type TableCounts,
  tableCounts,
  tasksInBoth,
  totalCounts,
} from '../helpers/archive-factories.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { hoursBefore, insertTemplate, NOW, type Template } from '../helpers/factories.ts';

const db = useTestDatabase();
let template: Template;

const OPTIONS: ArchiveFinishedTasksOptions = {
  ...archiveJob.optionsFromConfig(loadConfig({ env: {} }).config),
  dry_run: false,
  pause_between_batches_ms: 0,
  duty_cycle_percent: 100,
  // batches sized by pace would put batch boundaries at the mercy of the machine's load; these
  // tests compare a dry run's batches with a real run's, so every batch keeps batch_size
  batch_target_ms: 600_000,
};

beforeEach(async () => {
  await resetTables(db.pool);
  template = await insertTemplate(db.pool, { namespace: 'billing', name: 'invoice' });
});

interface Run {
  result: ArchiveFinishedTasksResult;
  /** The tasks of each batch, in order. */
  batches: string[][];
}

async function run(options: Partial<ArchiveFinishedTasksOptions>, signal?: AbortSignal): Promise<Run> {
  const batches: string[][] = [];
  const ctx = {
    pool: db.pool,
    now: NOW,
    logger: silentLogger(),
    signal: signal ?? new AbortController().signal,
  };
  const result = await runArchival(ctx, { ...OPTIONS, ...options }, (p) => {
    if (p.kind === 'batch') batches.push(p.result.task_uuids);
  });
  return { result, batches };
}

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32), so a failing case can be rerun. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One group of graphs: `count` tasks that entered their final state `spacingUs` microseconds apart. */
interface Group {
  count: number;
  /** Microseconds between consecutive tasks of the group (0: all at one instant). */
  spacingUs: number;
  /** Microseconds before the base instant at which the group's newest task finished. */
  offsetUs: number;
}

/** Inserts the groups (one step per graph, to stay light); returns every task. */
async function insertDistribution(groups: Group[]): Promise<string[]> {
  const base = hoursBefore(NOW, 24 * 40);
  const tasks: string[] = [];
  for (const g of groups) {
    // offsets below a millisecond go through the SQL interval, never through a JavaScript Date
    const { rows } = await db.pool.query<{ at: Date }>(
      `SELECT $1::timestamptz - make_interval(secs => $2::double precision / 1e6) AS at`,
      [base, Math.floor(g.offsetUs / 1000) * 1000],
    );
    const inserted = await insertFinishedGraphs(db.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: rows[0]!.at,
      count: g.count,
      spacingSeconds: g.spacingUs / 1e6,
      steps: 1,
    });
    if (g.offsetUs % 1000 !== 0) {
      await db.pool.query(
        `UPDATE tasker_task_transitions SET created_at = created_at - make_interval(secs => $2::double precision / 1e6)
          WHERE task_uuid = ANY ($1) AND most_recent`,
        [inserted, g.offsetUs % 1000],
      );
    }
    tasks.push(...inserted);
  }
  return tasks;
}

/** Every task exactly once in live or archive, and no row lost or duplicated. */
async function expectEachTaskOnce(tasks: string[], counts: TableCounts): Promise<void> {
  expect(await tasksInBoth(db.pool)).toEqual([]);
  const archived = await archivedTaskUuids(db.pool);
  const { rows } = await db.pool.query<{ task_uuid: string }>('SELECT task_uuid FROM tasker_tasks');
  expect([...archived, ...rows.map((r) => r.task_uuid)].sort()).toEqual([...tasks].sort());
  expect(await totalCounts(db.pool)).toEqual(counts);
}

const COUNTED = [
  'tasks_archived',
  'steps_archived',
  'transitions_archived',
  'edges_archived',
  'step_transitions_archived',
  'dlq_entries_archived',
  'tasks_skipped',
  'batches',
  'stopped_by',
] as const;
const counted = (r: ArchiveFinishedTasksResult) => Object.fromEntries(COUNTED.map((k) => [k, r[k]]));

/** Dry run, then the same real run: same batches, same counts; the real run moves each task once. */
async function expectDryRunTellsTheTruth(
  tasks: string[],
  limits: Pick<ArchiveFinishedTasksOptions, 'batch_size' | 'max_batches'>,
): Promise<void> {
  const totals = await totalCounts(db.pool);
  const dry = await run({ ...limits, dry_run: true });
  expect((await tableCounts(db.pool, 'archive')).tasker_tasks).toBe(0); // the dry run moved nothing
  const real = await run(limits);
  expect(counted(dry.result)).toEqual(counted(real.result));
  expect(dry.batches).toEqual(real.batches);
  // the real run never repeats a task and archives exactly what it reports
  const moved = real.batches.flat();
  expect(new Set(moved).size).toBe(moved.length);
  expect([...moved].sort()).toEqual(await archivedTaskUuids(db.pool));
  expect(real.result.tasks_archived).toBe(Math.min(tasks.length, limits.batch_size * limits.max_batches));
  await expectEachTaskOnce(tasks, totals);
}

describe('the cursor', () => {
  it('1,350 tasks at one instant, --batch-size 1000 --max-batches 5: the dry run says 1,350, as the real run moves', async () => {
    // a bulk load: one instant, with microseconds (as now() gives)
    const tasks = await insertDistribution([{ count: 1350, spacingUs: 0, offsetUs: 1234 }]);
    await expectDryRunTellsTheTruth(tasks, { batch_size: 1000, max_batches: 5 });
  });

  it('tasks a microsecond apart, across batch boundaries', async () => {
    const tasks = await insertDistribution([{ count: 300, spacingUs: 1, offsetUs: 0 }]);
    await expectDryRunTellsTheTruth(tasks, { batch_size: 7, max_batches: 1000 });
  });

  it('tasks a second apart, the last batch short', async () => {
    const tasks = await insertDistribution([{ count: 270, spacingUs: 1_000_000, offsetUs: 567 }]);
    await expectDryRunTellsTheTruth(tasks, { batch_size: 100, max_batches: 1000 });
  });

  it('as a property: generated distributions and limits, dry run == real run', async () => {
    const rnd = random(20260601);
    for (let round = 0; round < 12; round++) {
      await resetTables(db.pool);
      template = await insertTemplate(db.pool, { namespace: 'billing', name: 'invoice' });
      const groups: Group[] = Array.from({ length: 1 + Math.floor(rnd() * 5) }, () => ({
        count: 1 + Math.floor(rnd() * 120),
        // ties, microseconds, sub-millisecond and millisecond spacing
        spacingUs: [0, 0, 1, 3, 250, 1000][Math.floor(rnd() * 6)]!,
        // groups overlap, touch, or sit apart (some within one millisecond of each other)
        offsetUs: Math.floor(rnd() * 3000),
      }));
      const tasks = await insertDistribution(groups);
      const limits = {
        batch_size: [1, 2, 7, 50, 1000][Math.floor(rnd() * 5)]!,
        max_batches: [1, 3, 1000][Math.floor(rnd() * 3)]!,
      };
      try {
        await expectDryRunTellsTheTruth(tasks, limits);
      } catch (err) {
        throw new Error(`round ${round}: ${JSON.stringify({ groups, limits })}`, { cause: err });
      }
    }
  });
});

describe('a run aborted between batches', () => {
  it('stops after the batch in hand, counts what it moved, and leaves every task once, live or archived', async () => {
    const tasks = await insertFinishedGraphs(db.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: hoursBefore(NOW, 24 * 40),
      count: 10,
      steps: 3,
      resolvedDlqEvery: 2,
    });
    const totals = await totalCounts(db.pool);
    const controller = new AbortController();
    const batches: string[][] = [];
    const ctx = { pool: db.pool, now: NOW, logger: silentLogger(), signal: controller.signal };
    // no pause between batches: the abort is seen by the loop's own check before batch 2
    const result = await runArchival(ctx, { ...OPTIONS, batch_size: 4, pause_between_batches_ms: 0 }, (p) => {
      if (p.kind !== 'batch') return;
      batches.push(p.result.task_uuids);
      controller.abort();
    });
    expect(batches.length).toBe(1);
    const moved = batches[0]!;
    expect(moved.length).toBe(4);
    expect(result).toMatchObject({
      batches: 1,
      tasks_archived: 4,
      steps_archived: 12,
      edges_archived: 8,
      transitions_archived: 16,
      step_transitions_archived: 36,
      stopped_by: 'aborted',
      aborted: true,
    });
    expect(result.dlq_entries_archived).toBe(moved.filter((t) => tasks.indexOf(t) % 2 === 0).length);
    expect(await archivedTaskUuids(db.pool)).toEqual([...moved].sort());
    expect(Object.values(await graphRows(db.pool, 'live', moved)).flat()).toEqual([]);
    await expectEachTaskOnce(tasks, totals);

    // the next run carries on and finishes
    const rest = await run({ batch_size: 4 });
    expect(rest.result).toMatchObject({ tasks_archived: 6, stopped_by: 'no_more_candidates' });
    await expectEachTaskOnce(tasks, totals);
    expect((await tableCounts(db.pool, 'live')).tasker_tasks).toBe(0);
  });
});
