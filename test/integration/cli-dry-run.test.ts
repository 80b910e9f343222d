/**
 * staleness_detection.dry_run and archive.dry_run make scheduled runs dry; an operator at the CLI
 * can still run for real with --no-dry-run (and force a dry run with --dry-run), and the output
 * says which mode ran and what decided it.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import { databaseNow } from '../../src/db/queries/server.ts';
import { insertFinishedGraph } from '../helpers/archive-factories.ts';
import { cli } from '../helpers/cli.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { currentState, insertTask, insertTemplate, minutesBefore } from '../helpers/factories.ts';

const db = useTestDatabase();

beforeEach(async () => {
  await resetTables(db.pool);
});

async function staleTask(): Promise<string> {
  const now = await databaseNow(db.pool);
  const template = await insertTemplate(db.pool);
  return insertTask(db.pool, { template, state: 'waiting_for_retry', enteredAt: minutesBefore(now, 600) });
}

describe('detect-stale with staleness_detection.dry_run = true', () => {
  const env = () => ({ DATABASE_URL: db.url, TASKER__staleness_detection__dry_run: 'true' });

  it('is a dry run by default, and says so and why', async () => {
    const id = await staleTask();
    const run = await cli(['detect-stale'], env());
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(
      /mode: +dry run \(nothing changed\), set by staleness_detection\.dry_run = true; --no-dry-run runs it for real/,
    );
    expect(await currentState(db.pool, id)).toBe('waiting_for_retry');
  });

  it('--no-dry-run runs it for real', async () => {
    const id = await staleTask();
    const run = await cli(['detect-stale', '--no-dry-run', '--json'], env());
    expect(run.code).toBe(0);
    expect(run.json()).toMatchObject({
      dry_run: false,
      dry_run_set_by: '--no-dry-run',
      transitioned_to_error: 1,
    });
    expect(await currentState(db.pool, id)).toBe('error');
    const text = await cli(['detect-stale', '--no-dry-run'], env());
    expect(text.stdout).toMatch(/mode: +live, set by --no-dry-run/);
  });

  it('--dry-run and --no-dry-run together are refused (exit 2)', async () => {
    const run = await cli(['detect-stale', '--dry-run', '--no-dry-run'], env());
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--dry-run and --no-dry-run contradict each other');
  });

  it('--dry-run still forces a dry run when the configuration says live', async () => {
    const id = await staleTask();
    const run = await cli(['detect-stale', '--dry-run', '--json'], { DATABASE_URL: db.url });
    expect(run.json()).toMatchObject({ dry_run: true, dry_run_set_by: '--dry-run', tasks_detected: 1 });
    expect(await currentState(db.pool, id)).toBe('waiting_for_retry');
  });
});

describe('archive with archive.dry_run = true', () => {
  const env = () => ({ DATABASE_URL: db.url, TASKER__archive__dry_run: 'true' });

  it('is a dry run by default; --no-dry-run archives', async () => {
    const template = await insertTemplate(db.pool);
    const now = await databaseNow(db.pool);
    await insertFinishedGraph(db.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: minutesBefore(now, 40 * 24 * 60),
    });
    const dry = await cli(['archive', '--json'], env());
    expect(dry.json()).toMatchObject({
      dry_run: true,
      dry_run_set_by: 'archive.dry_run = true',
      tasks_archived: 1,
    });
    expect((await db.pool.query('SELECT count(*) AS n FROM tasker_tasks_archive')).rows[0].n).toBe(0);
    const real = await cli(['archive', '--no-dry-run'], env());
    expect(real.code).toBe(0);
    expect(real.stdout).toMatch(/mode: +live, set by --no-dry-run/);
    expect((await db.pool.query('SELECT count(*) AS n FROM tasker_tasks_archive')).rows[0].n).toBe(1);
  });
});
