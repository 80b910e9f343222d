/**
 * Size limits of enriched snapshots: a huge payload becomes a marker with a preview, long lists and
 * histories keep their first items and count the rest, and a snapshot over max_snapshot_bytes drops
 * to less detail, each cut marked, so that one entry cannot grow without bound.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import enrichJob, {
  EnrichDlqSnapshotsOptions,
  enrichmentOptionsFromConfig,
} from '../../jobs/enrich-dlq-snapshots.ts';
import { ConfigSchema } from '../../src/config/schema.ts';
import type { FullEnrichedSnapshot, TruncatedPayload } from '../../src/domain/dlq-enrichment.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import type { JobContext } from '../../src/worker/job.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import {
  appendTaskTransitions,
  insertHistoryStep,
  insertLongHistoryStep,
  readEntry,
} from '../helpers/enrichment-factories.ts';
import {
  insertDlqEntry,
  insertEdge,
  insertTask,
  insertTemplate,
  minutesBefore,
  NOW,
} from '../helpers/factories.ts';

const db = useTestDatabase();
const defaults = enrichmentOptionsFromConfig(ConfigSchema.parse({}));

beforeEach(async () => {
  await resetTables(db.pool);
});

const ctx = (): JobContext => ({
  pool: db.pool,
  now: NOW,
  logger: silentLogger(),
  signal: new AbortController().signal,
});

async function taskWithEntry(): Promise<{ task: string; entry: string }> {
  const template = await insertTemplate(db.pool);
  const task = await insertTask(db.pool, { template, state: 'error', enteredAt: minutesBefore(NOW, 10) });
  const entry = await insertDlqEntry(db.pool, {
    task,
    reason: 'staleness_timeout',
    at: minutesBefore(NOW, 10),
  });
  return { task, entry };
}

async function enrich(entry: string, overrides: Partial<EnrichDlqSnapshotsOptions> = {}) {
  const result = await enrichJob.run(
    ctx(),
    EnrichDlqSnapshotsOptions.parse({ ...defaults, ...overrides, entry_uuids: [entry] }),
  );
  const { rows } = await db.pool.query<{ bytes: number }>(
    'SELECT octet_length(task_snapshot::text) AS bytes FROM tasker_tasks_dlq WHERE dlq_entry_uuid = $1',
    [entry],
  );
  const snap = (await readEntry(db.pool, entry)).task_snapshot as FullEnrichedSnapshot;
  return { result, snap, bytes: rows[0]!.bytes };
}

const jsonBytes = (v: unknown) => Buffer.byteLength(JSON.stringify(v));

describe('payloads', () => {
  it('a value over max_payload_bytes becomes a marker with a preview, within the cap', async () => {
    const { task, entry } = await taskWithEntry();
    const results = { blob: 'x'.repeat(100_000), error: { message: `boom ${'e'.repeat(50_000)}` } };
    await insertHistoryStep(db.pool, {
      task,
      name: 'huge',
      attempts: 3,
      maxAttempts: 3,
      results,
      history: [{ state: 'error', at: minutesBefore(NOW, 20) }],
    });
    const { result, snap } = await enrich(entry, { max_payload_bytes: 4096 });
    expect(result).toMatchObject({ enriched: 1, truncated: 1 });

    const step = snap.steps.items[0]!;
    const marker = step.result as TruncatedPayload;
    expect(marker).toMatchObject({ truncated: true, original_bytes: expect.any(Number) });
    expect(marker.original_bytes).toBeGreaterThan(150_000);
    expect(marker.preview.startsWith('{"blob": "xxx')).toBe(true);
    expect(jsonBytes(marker)).toBeLessThanOrEqual(4096);
    expect(jsonBytes(marker)).toBeGreaterThan(3000);
    expect(step.error).toMatchObject({
      truncated: true,
      preview: expect.stringMatching(/^\{"message": "boom e/),
    });
    // The diagnosis keeps shorter previews (1 KiB) of the same error.
    const blocking = snap.diagnosis.blocking_steps.items[0]!;
    expect(blocking.error).toMatchObject({ truncated: true });
    expect(jsonBytes(blocking.error)).toBeLessThanOrEqual(1024);
    expect(snap.diagnosis.summary).toContain('stuck at huge (error, 3/3 attempts: boom eeee');
    expect(snap.enrichment).toMatchObject({ truncated: true, truncated_lists: [], truncated_payloads: 4 });
  });

  it('the cap holds for escaped and multi-byte text, and a value of exactly the cap is kept', async () => {
    const { rows } = await db.pool.query<{ cap: number; bytes: number; kept: boolean }>(
      `SELECT cap, octet_length(dlq_capped_json(v, cap)::text) AS bytes, dlq_capped_json(v, cap) = v AS kept
         FROM (VALUES (to_jsonb(repeat('"', 5000)), 256), (to_jsonb(repeat('😀', 5000)), 300),
                      (to_jsonb(repeat(E'\\n', 9000)), 1000),
                      (to_jsonb(repeat('a', 254)), 256), (to_jsonb(repeat('a', 255)), 256)) x(v, cap)`,
    );
    expect(rows.map((r) => r.kept)).toEqual([false, false, false, true, false]);
    for (const r of rows) expect(r.bytes).toBeLessThanOrEqual(r.cap);
  });
});

describe('lists', () => {
  it('keep max_list_items steps and edges and the newest max_history_rows transitions, counting the rest', async () => {
    const { task, entry } = await taskWithEntry();
    await appendTaskTransitions(
      db.pool,
      task,
      Array.from({ length: 25 }, (_, i) => ({
        state: i % 2 === 0 ? 'pending' : 'error',
        at: minutesBefore(NOW, 9 - i * 0.1),
      })),
    );
    const long = await insertLongHistoryStep(db.pool, task, 'chatty', 30);
    const others = [];
    for (const [i, name] of ['s1', 's2', 's3', 's4'].entries()) {
      const at = minutesBefore(NOW, i / 10);
      others.push(await insertHistoryStep(db.pool, { task, name, history: [{ state: 'pending', at }] }));
    }
    for (const s of others) await insertEdge(db.pool, long, s);

    const { result, snap } = await enrich(entry, { max_list_items: 3, max_history_rows: 10 });
    expect(result).toMatchObject({ enriched: 1, truncated: 1 });
    expect(snap.steps).toMatchObject({ total: 5, truncated: true, omitted: 2 });
    expect(snap.steps.items).toHaveLength(3);
    expect(snap.edges).toMatchObject({ total: 4, truncated: true, omitted: 1 });
    expect(snap.edges.items.map((e) => e.to)).toEqual(['s1', 's2', 's3']);
    expect(snap.step_transitions).toMatchObject({ total: 34, truncated: true, omitted: 24 });
    expect(snap.step_transitions.items.map((t) => [t.step, t.sort_key]).slice(0, 4)).toEqual([
      ['s1', 0],
      ['s2', 0],
      ['s3', 0],
      ['s4', 0],
    ]);
    expect(snap.step_transitions.items[4]).toMatchObject({
      step: 'chatty',
      sort_key: 29,
      metadata: { n: 29 },
    });
    expect(snap.task_transitions).toMatchObject({ total: 27, truncated: true, omitted: 17 });
    expect(snap.task_transitions.items[0]).toMatchObject({ sort_key: 26, most_recent: true });
    expect(snap.counts).toMatchObject({ steps: 5, edges: 4, step_transitions: 34, task_transitions: 27 });
    expect(snap.enrichment).toMatchObject({
      detail_level: 'full',
      truncated: true,
      truncated_lists: ['edges', 'step_transitions', 'steps', 'task_transitions'],
      truncated_payloads: 0,
    });
  });
});

describe('the whole snapshot', () => {
  it('over max_snapshot_bytes in full detail is stored compact, under the cap', async () => {
    const { task, entry } = await taskWithEntry();
    for (let i = 0; i < 40; i += 1) {
      await insertHistoryStep(db.pool, {
        task,
        name: `bulky_${String(i).padStart(2, '0')}`,
        results: { data: 'd'.repeat(1000) },
        history: [{ state: 'complete', at: minutesBefore(NOW, 30) }],
      });
    }
    const detected = (await readEntry(db.pool, entry)).task_snapshot;
    const full = await enrich(entry, {});
    expect(full.snap.enrichment.detail_level).toBe('full');
    expect(full.bytes).toBeGreaterThan(40_000);
    await db.pool.query('UPDATE tasker_tasks_dlq SET task_snapshot = $2 WHERE dlq_entry_uuid = $1', [
      entry,
      detected,
    ]);

    const { result, snap, bytes } = await enrich(entry, {
      max_snapshot_bytes: 16384,
      max_payload_bytes: 4096,
    });
    expect(result).toMatchObject({ enriched: 1, truncated: 1, reduced_detail: 1 });
    expect(bytes).toBeLessThanOrEqual(16384);
    expect(snap.enrichment).toMatchObject({
      requested_detail: 'full',
      detail_level: 'compact',
      truncated: true,
    });
    expect(snap).not.toHaveProperty('steps');
    expect(snap.counts).toMatchObject({ steps: 40, unfinished_steps: 0 });
    expect(snap.diagnosis.summary).toBe(
      '40 of 40 steps finished; all steps finished, yet the task did not move on',
    );
  });

  it('whose diagnosis alone is over the cap keeps the totals and the summary (minimal)', async () => {
    const { task, entry } = await taskWithEntry();
    for (let i = 0; i < 30; i += 1) {
      await insertHistoryStep(db.pool, {
        task,
        name: `failing_${String(i).padStart(2, '0')}`,
        attempts: 1,
        retryable: false,
        results: { error: { message: `failure ${i} ${'m'.repeat(2000)}` } },
        history: [{ state: 'error', at: minutesBefore(NOW, 60 - i) }],
      });
    }
    const { result, snap, bytes } = await enrich(entry, {
      max_snapshot_bytes: 16384,
      max_payload_bytes: 4096,
    });
    expect(result).toMatchObject({ enriched: 1, truncated: 1, reduced_detail: 1 });
    expect(bytes).toBeLessThanOrEqual(16384);
    expect(snap.enrichment).toMatchObject({
      detail_level: 'minimal',
      truncated_lists: ['diagnosis.blocking_steps', 'diagnosis.exhausted_retries'],
    });
    expect(snap.diagnosis.blocking_steps).toEqual({ total: 30, items: [], truncated: true, omitted: 30 });
    expect(snap.diagnosis.exhausted_retries).toMatchObject({ total: 30, omitted: 30 });
    expect(snap.diagnosis.summary).toMatch(
      /^0 of 30 steps finished; stuck at failing_00 \(error, 1\/3 attempts: failure 0 m+\), failing_01 .* and 27 more; 30 steps out of retries: failing_00, failing_01, failing_02 and 27 more$/,
    );
  });
});
