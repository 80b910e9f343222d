/**
 * Archival next to sessions that hold rows of a finished graph: a row it cannot lock makes it pass
 * over that task (SKIP LOCKED, as for the task rows), never wait for it, and never move part of a
 * graph. The task stays live and whole, and a later run archives it once the lock is gone.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import type pg from 'pg';
import archiveJob, {
  type ArchiveFinishedTasksOptions,
  runArchival,
} from '../../jobs/archive-finished-tasks.ts';
import { loadConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import {
  archivedTaskUuids,
  graphRows,
  insertFinishedGraphs,
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
  batch_size: 4,
  pause_between_batches_ms: 0,
  duty_cycle_percent: 100,
  // batches sized by pace would put batch boundaries at the mercy of the machine's load; these
  // tests compare a dry run's batches with a real run's, so every batch keeps batch_size
  batch_target_ms: 600_000,
  // short, so that waiting for the lock (the old behaviour) fails the test quickly
  batch_statement_timeout_ms: 500,
};

beforeEach(async () => {
  await resetTables(db.pool);
  template = await insertTemplate(db.pool, { namespace: 'billing', name: 'invoice' });
});

function run(options: Partial<ArchiveFinishedTasksOptions> = {}) {
  const ctx = { pool: db.pool, now: NOW, logger: silentLogger(), signal: new AbortController().signal };
  return runArchival(ctx, { ...OPTIONS, ...options });
}

/** The oldest graph's rows of `table`, one of them locked FOR UPDATE by an idle-in-transaction session. */
async function holdRow(table: string, where: string, params: unknown[]): Promise<pg.Client> {
  const holder = await db.connect();
  await holder.query('BEGIN');
  const { rowCount } = await holder.query(`SELECT 1 FROM ${table} WHERE ${where} LIMIT 1 FOR UPDATE`, params);
  expect(rowCount).toBe(1);
  return holder;
}

const HELD: [string, string, string][] = [
  ['a step', 'tasker_workflow_steps', 'task_uuid = $1'],
  [
    'a step transition',
    'tasker_workflow_step_transitions',
    'workflow_step_uuid IN (SELECT workflow_step_uuid FROM tasker_workflow_steps WHERE task_uuid = $1)',
  ],
  [
    'an edge',
    'tasker_workflow_step_edges',
    'to_step_uuid IN (SELECT workflow_step_uuid FROM tasker_workflow_steps WHERE task_uuid = $1)',
  ],
  ['an older task transition', 'tasker_task_transitions', 'task_uuid = $1 AND NOT most_recent'],
  ['a resolved DLQ entry', 'tasker_tasks_dlq', 'task_uuid = $1'],
];

describe('a row of an old graph held by another session', () => {
  it.each(HELD)(
    '%s: archival skips that task, moves the others, and a later run takes it',
    async (_, table, where) => {
      const tasks = await insertFinishedGraphs(db.pool, {
        named_task_uuid: template.named_task_uuid,
        state: 'complete',
        finishedAt: hoursBefore(NOW, 24 * 40),
        count: 9,
        steps: 3,
        resolvedDlqEvery: 1,
      });
      const oldest = tasks[tasks.length - 1]!;
      const totals = await totalCounts(db.pool);
      const before = await graphRows(db.pool, 'live', [oldest]);
      const holder = await holdRow(table, where, [oldest]);
      try {
        const dry = await run({ dry_run: true });
        const result = await run();
        expect(result).toMatchObject({
          tasks_archived: 8,
          tasks_skipped: 1,
          timeouts: 0,
          stopped_by: 'no_more_candidates',
        });
        expect({ ...dry, dry_run: false, duration_ms: 0, longest_batch_ms: 0 }).toEqual({
          ...result,
          duration_ms: 0,
          longest_batch_ms: 0,
        });
        // the held task is live and whole; nothing of it reached the archive
        expect(await graphRows(db.pool, 'live', [oldest])).toEqual(before);
        expect(Object.values(await graphRows(db.pool, 'archive', [oldest])).flat()).toEqual([]);
        expect(await tasksInBoth(db.pool)).toEqual([]);
        expect(await totalCounts(db.pool)).toEqual(totals);
      } finally {
        await holder.query('ROLLBACK');
      }
      expect(await run()).toMatchObject({ tasks_archived: 1, tasks_skipped: 0 });
      expect(await archivedTaskUuids(db.pool)).toEqual([...tasks].sort());
      expect(await totalCounts(db.pool)).toEqual(totals);
    },
  );
});
