/**
 * Discovery bounded by the smallest thresholds in force (migration 0060): candidates come from a
 * range scan of the in-flight index up to the smallest state threshold (defaults and every template
 * override) and, per template, a range scan of unfinished tasks up to that template's lifetime.
 * These cases sit on the new boundaries: an override smaller than every default, lifetime-stale
 * tasks whose state entry is recent, and ties on the cursor's key mixing both rules.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { defaultOptions, detect } from '../helpers/detection.ts';
import {
  currentState,
  insertTask,
  insertTemplate,
  minutesBefore,
  NOW,
  type Template,
} from '../helpers/factories.ts';

const db = useTestDatabase();
let plain: Template;

beforeEach(async () => {
  await resetTables(db.pool);
  plain = await insertTemplate(db.pool, { name: 'plain' });
});

/** A task that entered `state` `minutes` before NOW and was created `ageMinutes` before NOW. */
function task(state: string, minutes: number, ageMinutes: number, template = plain): Promise<string> {
  return insertTask(db.pool, {
    template,
    state,
    enteredAt: minutesBefore(NOW, minutes),
    createdAt: minutesBefore(NOW, ageMinutes),
  });
}

const ids = (r: { tasks: { task_uuid: string }[] }) => r.tasks.map((x) => x.task_uuid).sort();

describe('bounded discovery', () => {
  it('a template state threshold smaller than every default is honoured at its boundary', async () => {
    const quick = await insertTemplate(db.pool, {
      name: 'quick',
      lifecycle: { max_steps_in_process_minutes: 5 },
    });
    const over = await task('steps_in_process', 5, 65, quick);
    await task('steps_in_process', 4, 64, quick);
    await task('steps_in_process', 5, 65); // the default (30 min) applies to other templates
    const result = await detect(db, defaultOptions({ dry_run: true }));
    expect(ids(result)).toEqual([over]);
    expect(result.tasks[0]).toMatchObject({ stale_by: 'state_threshold', staleness_threshold_minutes: 5 });
  });

  it('a task past its lifetime is found although it entered its state a minute ago', async () => {
    const over = await task('waiting_for_retry', 1, 24 * 60);
    await task('waiting_for_retry', 1, 24 * 60 - 1);
    const result = await detect(db, defaultOptions({ dry_run: true }));
    expect(ids(result)).toEqual([over]);
    expect(result.tasks[0]).toMatchObject({ stale_by: 'task_lifetime', staleness_threshold_minutes: 1440 });
  });

  it("a template lifetime shorter than every state threshold applies to that template's tasks only", async () => {
    const brief = await insertTemplate(db.pool, { name: 'brief', lifecycle: { max_duration_minutes: 3 } });
    const over = await task('steps_in_process', 1, 3, brief);
    await task('steps_in_process', 1, 2, brief);
    await task('steps_in_process', 1, 3); // 24 h for the plain template
    const result = await detect(db, defaultOptions({ dry_run: true }));
    expect(ids(result)).toEqual([over]);
    expect(result.tasks[0]).toMatchObject({ stale_by: 'task_lifetime', staleness_threshold_minutes: 3 });
  });

  it('past their lifetime: finished tasks the engine left unmarked are no candidates; a task that left error for pending is found', async () => {
    const old = 25 * 60;
    const finished = [
      await task('error', 10, old),
      await task('cancelled', 10, old),
      await task('resolved_manually', 10, old),
    ];
    const completeUnmarked = await task('complete', 10, old); // complete = false: the judge passes it over
    const retried = await task('error', 30, old);
    await db.pool.query(
      `WITH cur AS (UPDATE tasker_task_transitions SET most_recent = false
                     WHERE task_uuid = $1 AND most_recent RETURNING task_uuid)
       INSERT INTO tasker_task_transitions (task_uuid, to_state, from_state, sort_key, most_recent, created_at, updated_at)
       SELECT task_uuid, 'pending', 'error', 2, true, $2, $2 FROM cur`,
      [retried, minutesBefore(NOW, 1)],
    );
    const { rows } = await db.pool.query<{ ids: string[] }>(
      'SELECT stale_lifetime_candidates($1, 24) AS ids',
      [NOW],
    );
    expect(rows[0]!.ids).toContain(retried);
    for (const id of finished) expect(rows[0]!.ids).not.toContain(id);

    const dry = await detect(db, defaultOptions({ dry_run: true }));
    expect(ids(dry)).toEqual([retried]);
    expect(dry.tasks[0]).toMatchObject({ stale_by: 'task_lifetime', current_state: 'pending' });
    const real = await detect(db, defaultOptions());
    expect(ids(real)).toEqual([retried]);
    expect(await currentState(db.pool, retried)).toBe('error');
    expect(await currentState(db.pool, completeUnmarked)).toBe('complete');
    const after = [];
    for (const id of finished) after.push(await currentState(db.pool, id));
    expect(after).toEqual(['error', 'cancelled', 'resolved_manually']);
  });

  it('ties on the state-entry time, across both rules, are paged exactly once, dry run and real run alike', async () => {
    // Seven tasks entered their state at the same instant: four stale by state (waiting_for_retry,
    // 30 min), three stale only by lifetime (pending: 1440 min, but created 25 h ago).
    const tied: string[] = [];
    for (let i = 0; i < 4; i++) tied.push(await task('waiting_for_retry', 100, 160));
    for (let i = 0; i < 3; i++) tied.push(await task('pending', 100, 25 * 60));
    await task('pending', 100, 24 * 60 - 1); // neither rule
    const dry = await detect(db, defaultOptions({ dry_run: true, batch_size: 2, max_batches: 10 }));
    // Pages of 2 taken from at most 4 examined (detect_stale_tasks_page): 2, 2, 2, then 1 with the
    // state phase through; in a dry run the lifetime phase's 3 candidates (still in flight) overrun
    // that page's examining budget by one, so one more page looks at them (and takes nothing: all
    // were taken by state entry).
    expect(dry.batches).toBe(5);
    expect(dry.tasks.map((x) => x.task_uuid)).toHaveLength(7);
    expect(ids(dry)).toEqual([...tied].sort());
    const real = await detect(db, defaultOptions({ batch_size: 2, max_batches: 10 }));
    // A real run errored them by then: the lifetime phase reads past them, and the pass ends a page earlier.
    expect(real.batches).toBe(4);
    expect(real.tasks.map((x) => x.task_uuid)).toHaveLength(7);
    expect(ids(real)).toEqual([...tied].sort());
    for (const id of tied) expect(await currentState(db.pool, id)).toBe('error');
  });
});
