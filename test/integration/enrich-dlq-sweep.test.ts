/**
 * The sweeper and the per-entry mode at the edges: missed entries found oldest first in bounded
 * batches, enriched and resolved entries left alone, the partial index used, unknown entries and
 * vanished tasks counted, two enrichers at once never both writing, and an aborted run.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import enrichJob, {
  EnrichDlqSnapshotsOptions,
  enrichmentOptionsFromConfig,
} from '../../jobs/enrich-dlq-snapshots.ts';
import { ConfigSchema } from '../../src/config/schema.ts';
import {
  enrichEntries,
  enrichPendingBatch,
  sweepCandidatesPlan,
} from '../../src/db/queries/dlq-enrichment.ts';
import type { EnrichedSnapshotPart } from '../../src/domain/dlq-enrichment.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import type { JobContext } from '../../src/worker/job.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { defaultLimits, insertHistoryStep, readEntry } from '../helpers/enrichment-factories.ts';
import {
  insertDlqEntry,
  insertTask,
  insertTemplate,
  minutesBefore,
  NOW,
  type Template,
} from '../helpers/factories.ts';
import { waitFor } from '../helpers/wait.ts';

const db = useTestDatabase();
let template: Template;
const defaults = enrichmentOptionsFromConfig(ConfigSchema.parse({}));
const LATER = minutesBefore(NOW, -1);

beforeEach(async () => {
  await resetTables(db.pool);
  template = await insertTemplate(db.pool, { namespace: 'ops', name: 'sync' });
});

function ctx(now: Date = NOW, signal = new AbortController().signal): JobContext {
  return { pool: db.pool, now, logger: silentLogger(), signal };
}

function options(overrides: Partial<EnrichDlqSnapshotsOptions> = {}): EnrichDlqSnapshotsOptions {
  return EnrichDlqSnapshotsOptions.parse({ ...defaults, ...overrides });
}

/** A task in error with one step, and a DLQ entry opened `minutesAgo` before NOW (not enriched). */
async function entryFor(minutesAgo: number, status = 'pending'): Promise<{ task: string; entry: string }> {
  const task = await insertTask(db.pool, {
    template,
    state: 'error',
    enteredAt: minutesBefore(NOW, minutesAgo),
  });
  await insertHistoryStep(db.pool, {
    task,
    name: 'sync_step',
    history: [{ state: 'pending', at: minutesBefore(NOW, minutesAgo + 5) }],
  });
  const entry = await insertDlqEntry(db.pool, {
    task,
    reason: 'staleness_timeout',
    status,
    at: minutesBefore(NOW, minutesAgo),
    state: 'waiting_for_dependencies',
  });
  return { task, entry };
}

async function enrichedAt(entry: string): Promise<Date | null> {
  const snap = (await readEntry(db.pool, entry)).task_snapshot as Partial<EnrichedSnapshotPart>;
  return snap.enrichment ? new Date(snap.enrichment.enriched_at) : null;
}

describe('the sweep', () => {
  it('enriches missed pending entries oldest first, batch_size at a time, up to max_batches', async () => {
    const done = await entryFor(90);
    await enrichEntries(db.pool, [done.entry], defaultLimits({ now: minutesBefore(NOW, 60) }));
    const doneBefore = await readEntry(db.pool, done.entry);
    const resolved = await entryFor(80, 'manually_resolved');
    const missed: Array<{ age: number; task: string; entry: string }> = [];
    for (const age of [50, 10, 40, 20, 30]) missed.push({ age, ...(await entryFor(age)) });
    const byAge = (ages: number[]) => missed.filter((m) => ages.includes(m.age)).map((m) => m.entry);

    const first = await enrichJob.run(ctx(), options({ batch_size: 2, max_batches: 2 }));
    expect(first).toMatchObject({ mode: 'sweep', batches: 2, enriched: 4, requested: 0, aborted: false });
    for (const entry of byAge([50, 40, 30, 20])) expect(await enrichedAt(entry)).toEqual(NOW);
    expect(await enrichedAt(byAge([10])[0]!)).toBeNull();
    expect(await enrichedAt(resolved.entry)).toBeNull();
    expect((await readEntry(db.pool, done.entry)).xmin).toBe(doneBefore.xmin);

    const second = await enrichJob.run(ctx(LATER), options({ batch_size: 2, max_batches: 5 }));
    expect(second).toMatchObject({ batches: 1, enriched: 1 });
    expect(await enrichedAt(byAge([10])[0]!)).toEqual(LATER);

    const third = await enrichJob.run(ctx(LATER), options({ batch_size: 2, max_batches: 5 }));
    expect(third).toMatchObject({ batches: 1, enriched: 0 });
  });

  it('takes exactly two batches for batch_size + 1 entries', async () => {
    for (const age of [30, 20, 10]) await entryFor(age);
    expect(await enrichJob.run(ctx(), options({ batch_size: 2 }))).toMatchObject({ batches: 2, enriched: 3 });
  });

  it('finds its candidates through idx_dlq_pending_unenriched', async () => {
    // Many tasks with an enriched pending entry and many resolved entries: the backlog is 3 entries.
    await db.pool.query(
      `WITH t AS (
         INSERT INTO tasker_tasks (named_task_uuid, identity_hash)
         SELECT $1, 'bulk-' || g FROM generate_series(1, 3000) g RETURNING task_uuid)
       INSERT INTO tasker_tasks_dlq (task_uuid, original_state, dlq_reason, dlq_timestamp, resolution_status,
                                     resolution_timestamp, resolved_by, task_snapshot)
       SELECT task_uuid, 'error', 'staleness_timeout', $2, s.status, s.resolved_at, s.resolved_by,
              '{"enrichment": {"version": 1}}'
         FROM t
        CROSS JOIN (VALUES ('pending'::dlq_resolution_status, NULL::timestamptz, NULL),
                           ('cancelled', $2, 'bulk')) s(status, resolved_at, resolved_by)`,
      [template.named_task_uuid, minutesBefore(NOW, 500)],
    );
    for (const age of [30, 20, 10]) await entryFor(age);
    await db.pool.query('ANALYZE tasker_tasks_dlq');
    expect(await sweepCandidatesPlan(db.pool, 50)).toMatch(/Index Scan using idx_dlq_pending_unenriched/);
    expect(await enrichJob.run(ctx(), options())).toMatchObject({ enriched: 3, batches: 1 });
  });
});

describe('per-entry runs', () => {
  it('enrich entries of any status, and count unknown uuids as not found', async () => {
    const resolved = await entryFor(30, 'permanently_failed');
    const unknown = '0190a3b4-0000-7000-8000-0000000000ff';
    const result = await enrichJob.run(
      ctx(),
      options({ entry_uuids: [resolved.entry, unknown, resolved.entry] }),
    );
    expect(result).toMatchObject({ mode: 'entries', requested: 2, enriched: 1, not_found: 1, batches: 1 });
    expect(await enrichedAt(resolved.entry)).toEqual(NOW);
    expect((await readEntry(db.pool, resolved.entry)).resolution_status).toBe('permanently_failed');
  });

  it('take batch_size entries per statement', async () => {
    const entries = [];
    for (const age of [30, 20, 10]) entries.push((await entryFor(age)).entry);
    const result = await enrichJob.run(ctx(), options({ entry_uuids: entries, batch_size: 2 }));
    expect(result).toMatchObject({ requested: 3, enriched: 3, batches: 2 });
  });

  it('enrich an entry whose task is gone with what is left, once, and count it', async () => {
    const { task, entry } = await entryFor(30);
    const before = await readEntry(db.pool, entry);
    // The foreign key normally prevents this; archival or a manual delete elsewhere could not.
    await db.pool.query('ALTER TABLE tasker_tasks_dlq DROP CONSTRAINT tasker_tasks_dlq_task_uuid_fkey');
    try {
      await db.pool.query(
        `DELETE FROM tasker_workflow_step_transitions WHERE workflow_step_uuid IN (
           SELECT workflow_step_uuid FROM tasker_workflow_steps WHERE task_uuid = $1)`,
        [task],
      );
      await db.pool.query('DELETE FROM tasker_workflow_steps WHERE task_uuid = $1', [task]);
      await db.pool.query('DELETE FROM tasker_task_transitions WHERE task_uuid = $1', [task]);
      await db.pool.query('DELETE FROM tasker_tasks WHERE task_uuid = $1', [task]);

      const result = await enrichJob.run(ctx(), options({ entry_uuids: [entry] }));
      expect(result).toMatchObject({ enriched: 1, task_missing: 1, not_found: 0 });
      const snap = (await readEntry(db.pool, entry)).task_snapshot;
      expect(snap).toMatchObject({
        ...before.task_snapshot,
        enrichment: { task_found: false, detail_level: 'none', truncated: false },
        diagnosis: { summary: expect.stringContaining('no longer exists') },
      });
      expect(snap).not.toHaveProperty('steps');
      expect(await enrichJob.run(ctx(LATER), options())).toMatchObject({ enriched: 0 });
    } finally {
      await db.pool.query('DELETE FROM tasker_tasks_dlq WHERE dlq_entry_uuid = $1', [entry]);
      await db.pool.query(
        'ALTER TABLE tasker_tasks_dlq ADD CONSTRAINT tasker_tasks_dlq_task_uuid_fkey FOREIGN KEY (task_uuid) REFERENCES tasker_tasks (task_uuid)',
      );
    }
  });
});

describe('two enrichers at once', () => {
  it('on one entry: one writes, the other finds it busy and writes nothing', async () => {
    const { entry } = await entryFor(30);
    const other = await db.connect();
    await other.query('BEGIN');
    const held = await enrichEntries(other, [entry], defaultLimits());
    expect(held).toEqual([expect.objectContaining({ dlq_entry_uuid: entry, outcome: 'enriched' })]);

    // Returns at once (SKIP LOCKED), without waiting for the other transaction.
    expect(await enrichJob.run(ctx(LATER), options({ entry_uuids: [entry] }))).toMatchObject({
      enriched: 0,
      busy: 1,
    });
    expect(await enrichJob.run(ctx(LATER), options())).toMatchObject({ enriched: 0, batches: 1 });
    expect(await enrichedAt(entry)).toBeNull();

    await other.query('COMMIT');
    const committed = await readEntry(db.pool, entry);
    expect(await enrichedAt(entry)).toEqual(NOW);
    expect(await enrichJob.run(ctx(LATER), options({ entry_uuids: [entry] }))).toMatchObject({
      enriched: 0,
      already_enriched: 1,
    });
    expect((await readEntry(db.pool, entry)).xmin).toBe(committed.xmin);
  });

  it('sweeping: they take disjoint entries and each entry is enriched once', async () => {
    const entries = [];
    for (const age of [40, 30, 20, 10]) entries.push((await entryFor(age)).entry);
    const other = await db.connect();
    await other.query('BEGIN');
    expect(await enrichPendingBatch(other, 2, defaultLimits())).toHaveLength(2);
    // The run takes the other two (SKIP LOCKED). The four have one failure fingerprint, so the run
    // then waits for the first transaction's commit to count its two in their group (issue 27).
    const run = enrichJob.run(ctx(LATER), options({ batch_size: 10 }));
    await waitFor('the run to wait on the group row', async () => {
      const { rows } = await db.pool.query(
        `SELECT count(*)::integer AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
      );
      return rows[0].n > 0;
    });
    await other.query('COMMIT');
    expect(await run).toMatchObject({ enriched: 2 });

    const times = await Promise.all(entries.map(enrichedAt));
    expect(times).toEqual([NOW, NOW, LATER, LATER]);
    expect(await enrichJob.run(ctx(LATER), options())).toMatchObject({ enriched: 0 });
  });
});

describe('an aborted run', () => {
  it('stops before its next batch and writes nothing more', async () => {
    const { entry } = await entryFor(30);
    const abort = new AbortController();
    abort.abort();
    expect(await enrichJob.run(ctx(NOW, abort.signal), options())).toMatchObject({
      aborted: true,
      batches: 0,
      enriched: 0,
    });
    expect(await enrichJob.run(ctx(NOW, abort.signal), options({ entry_uuids: [entry] }))).toMatchObject({
      aborted: true,
      batches: 0,
      requested: 1,
    });
    expect(await enrichedAt(entry)).toBeNull();
  });
});
