/**
 * The enrichment job on a realistic task graph: what the enriched snapshot holds, that a second run
 * writes nothing, include_full_task_snapshot, the task left untouched, entries opened by the real
 * detection function, and `dlq show`.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import enrichJob, {
  EnrichDlqSnapshotsOptions,
  enrichmentOptionsFromConfig,
} from '../../jobs/enrich-dlq-snapshots.ts';
import { runCli } from '../../src/cli/main.ts';
import { ConfigSchema } from '../../src/config/schema.ts';
import { ENRICHMENT_VERSION, type FullEnrichedSnapshot } from '../../src/domain/dlq-enrichment.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import type { JobContext } from '../../src/worker/job.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import {
  CARD_DECLINED,
  detectAtNow,
  insertHistoryStep,
  insertStuckOrder,
  readEntry,
  TEMPLATE_CONFIG,
  taskGraphFingerprint,
} from '../helpers/enrichment-factories.ts';
import { insertTask, insertTemplate, minutesBefore, NOW } from '../helpers/factories.ts';

const db = useTestDatabase();
const defaults = enrichmentOptionsFromConfig(ConfigSchema.parse({}));

beforeEach(async () => {
  await resetTables(db.pool);
});

function ctx(now: Date = NOW, signal = new AbortController().signal): JobContext {
  return { pool: db.pool, now, logger: silentLogger(), signal };
}

function options(overrides: Partial<EnrichDlqSnapshotsOptions> = {}): EnrichDlqSnapshotsOptions {
  return EnrichDlqSnapshotsOptions.parse({ ...defaults, ...overrides });
}

type Snapshot = FullEnrichedSnapshot;
const names = (items: Array<{ name: string }>) => items.map((i) => i.name);

describe('enriching an entry opened by detection', () => {
  it('adds steps, edges, histories, template config and a diagnosis, keeping the detection keys', async () => {
    const { task, template } = await insertStuckOrder(db.pool);
    const [entry] = await detectAtNow(db.pool);
    expect(entry).toBeDefined();
    const before = await readEntry(db.pool, entry!);
    expect(before.task_snapshot).toMatchObject({ task_uuid: task, current_state: 'steps_in_process' });
    const graphBefore = await taskGraphFingerprint(db.pool, task);

    const result = await enrichJob.run(ctx(), options({ entry_uuids: [entry!] }));
    expect(result).toMatchObject({ mode: 'entries', requested: 1, enriched: 1, batches: 1, truncated: 0 });

    const after = await readEntry(db.pool, entry!);
    const snap = after.task_snapshot as Snapshot;
    for (const [key, value] of Object.entries(before.task_snapshot)) expect(snap[key]).toEqual(value);
    expect(after.metadata).toEqual(before.metadata);
    expect(await taskGraphFingerprint(db.pool, task)).toBe(graphBefore);

    expect(new Date(snap.enrichment.enriched_at)).toEqual(NOW);
    expect(snap.enrichment).toMatchObject({
      version: ENRICHMENT_VERSION,
      task_found: true,
      requested_detail: 'full',
      detail_level: 'full',
      truncated: false,
      truncated_lists: [],
      truncated_payloads: 0,
    });
    expect(snap.task).toMatchObject({ state: 'error', minutes_in_state: 0, complete: false });
    expect(snap.counts).toEqual({
      steps: 9,
      unfinished_steps: 7,
      steps_by_state: { complete: 2, error: 2, pending: 4, enqueued: 1 },
      edges: 8,
      step_transitions: 17,
      task_transitions: 4,
    });

    const charge = snap.steps.items.find((s) => s.name === 'charge')!;
    expect(charge).toMatchObject({
      state: 'error',
      attempts: 3,
      max_attempts: 3,
      retryable: true,
      result: CARD_DECLINED,
      error: CARD_DECLINED.error,
    });
    expect(new Date(charge.last_attempted_at!)).toEqual(minutesBefore(NOW, 100));
    expect(snap.steps).toMatchObject({ total: 9, truncated: false, omitted: 0 });
    // Unfinished steps first.
    expect(names(snap.steps.items).slice(-2).sort()).toEqual(['fetch', 'validate']);
    expect(snap.edges.items).toContainEqual(
      expect.objectContaining({ from: 'charge', to: 'ship', name: 'provides' }),
    );
    expect(snap.edges.total).toBe(8);
    expect(snap.step_transitions.items[snap.step_transitions.items.length - 1]).toMatchObject({
      sort_key: 0,
    });
    expect(snap.step_transitions.items).toContainEqual(
      expect.objectContaining({
        step: 'charge',
        from_state: 'in_progress',
        to_state: 'error',
        metadata: { attempt: 3 },
      }),
    );
    expect(snap.task_transitions.items.map((t) => t.to_state)).toEqual([
      'error',
      'steps_in_process',
      'initializing',
      'pending',
    ]);
    expect(snap.template).toMatchObject({
      named_task_uuid: template.named_task_uuid,
      namespace: 'shop',
      name: 'order',
      configuration: TEMPLATE_CONFIG,
    });

    const d = snap.diagnosis;
    expect(names(d.blocking_steps.items)).toEqual(['reserve', 'charge', 'refund', 'audit_a', 'audit_b']);
    expect(d.blocking_steps.items[1]).toMatchObject({
      name: 'charge',
      waits_on: [],
      blocks: ['ship'],
      downstream_unfinished: 2,
      on_cycle: false,
      error: CARD_DECLINED.error,
    });
    expect(d.blocking_steps.items[3]).toMatchObject({
      name: 'audit_a',
      on_cycle: true,
      waits_on: ['audit_b'],
    });
    expect(d.exhausted_retries.items.map((x) => [x.name, x.why])).toEqual([
      ['charge', 'attempts_exhausted'],
      ['refund', 'not_retryable'],
    ]);
    expect(d.cycle).toMatchObject({ detected: true, steps: { total: 2 } });
    expect(names(d.cycle.steps.items)).toEqual(['audit_a', 'audit_b']);
    expect(d.oldest_waiting_step).toMatchObject({ name: 'reserve', state: 'enqueued', minutes_waiting: 180 });
    expect(d.summary).toBe(
      '2 of 9 steps finished; dependency cycle among audit_a, audit_b; ' +
        'stuck at reserve (enqueued, 0/3 attempts), charge (error, 3/3 attempts: card declined), ' +
        'refund (error, 1/3 attempts: refund endpoint returned 410); ' +
        '2 steps out of retries: charge, refund; oldest waiting step reserve (enqueued for 3h)',
    );
  });

  it('writes nothing the second time: same JSON, same xmin, same updated_at', async () => {
    await insertStuckOrder(db.pool);
    const [entry] = await detectAtNow(db.pool);
    await enrichJob.run(ctx(), options({ entry_uuids: [entry!] }));
    const first = await readEntry(db.pool, entry!);

    const again = await enrichJob.run(ctx(minutesBefore(NOW, -5)), options({ entry_uuids: [entry!] }));
    expect(again).toMatchObject({ requested: 1, enriched: 0, already_enriched: 1 });
    const sweep = await enrichJob.run(ctx(minutesBefore(NOW, -5)), options());
    expect(sweep).toMatchObject({ mode: 'sweep', enriched: 0, batches: 1 });

    const second = await readEntry(db.pool, entry!);
    expect(second.xmin).toBe(first.xmin);
    expect(second.updated_at).toEqual(first.updated_at);
    expect(JSON.stringify(second.task_snapshot)).toBe(JSON.stringify(first.task_snapshot));
  });

  it('with include_full_task_snapshot off stores only counts and the diagnosis', async () => {
    const { task } = await insertStuckOrder(db.pool);
    const [entry] = await detectAtNow(db.pool);
    const config = ConfigSchema.parse({ dlq: { include_full_task_snapshot: false } });
    const opts = { ...enrichmentOptionsFromConfig(config), entry_uuids: [entry!] };
    expect(opts.include_full_task_snapshot).toBe(false);
    await enrichJob.run(ctx(), EnrichDlqSnapshotsOptions.parse(opts));

    const snap = (await readEntry(db.pool, entry!)).task_snapshot as Snapshot;
    for (const key of ['steps', 'edges', 'step_transitions', 'task_transitions', 'template']) {
      expect(snap).not.toHaveProperty(key);
    }
    expect(snap.enrichment).toMatchObject({
      requested_detail: 'compact',
      detail_level: 'compact',
      truncated: false,
    });
    expect(snap.counts).toMatchObject({ steps: 9, edges: 8 });
    expect(snap.diagnosis.cycle).toMatchObject({ detected: true });
    expect(snap.diagnosis.summary).toContain('dependency cycle among audit_a, audit_b');
    expect(snap.task_uuid).toBe(task);
  });

  it('enriches every entry a detection batch opened, each with its own task', async () => {
    const template = await insertTemplate(db.pool);
    const tasks = [];
    for (let i = 0; i < 3; i += 1) {
      const task = await insertTask(db.pool, {
        template,
        state: 'waiting_for_retry',
        enteredAt: minutesBefore(NOW, 40 + i),
      });
      await insertHistoryStep(db.pool, {
        task,
        name: `only_${i}`,
        attempts: i,
        history: [{ state: 'waiting_for_retry', at: minutesBefore(NOW, 40 + i) }],
      });
      tasks.push(task);
    }
    const entries = await detectAtNow(db.pool);
    expect(entries).toHaveLength(3);
    const result = await enrichJob.run(ctx(), options());
    expect(result).toMatchObject({ mode: 'sweep', enriched: 3, batches: 1 });
    for (const entry of entries) {
      const snap = (await readEntry(db.pool, entry)).task_snapshot as Snapshot;
      const i = tasks.indexOf(snap.task_uuid as string);
      expect(i).toBeGreaterThanOrEqual(0);
      expect(snap.counts).toMatchObject({ steps: 1, unfinished_steps: 1 });
      expect(snap.steps.items[0]).toMatchObject({ name: `only_${i}`, attempts: i });
      expect(snap.diagnosis.oldest_waiting_step).toMatchObject({
        name: `only_${i}`,
        minutes_waiting: 40 + i,
      });
      expect(snap.task).toMatchObject({ state: 'error' });
    }
  });
});

describe('dlq show', () => {
  it('prints the diagnosis of an enriched entry (the snapshot only when asked); --json keeps the whole entry', async () => {
    await insertStuckOrder(db.pool);
    const [entry] = await detectAtNow(db.pool);
    await enrichJob.run(ctx(), options({ entry_uuids: [entry!] }));
    const run = async (argv: string[]) => {
      let out = '';
      let err = '';
      const io = {
        stdout: { write: (t: string) => (out += t) },
        stderr: { write: (t: string) => (err += t) },
        env: { TASKER_ENV: 'test', DATABASE_URL: db.url },
        isTTY: false,
      };
      const code = await runCli(argv, io);
      return { code, out, err };
    };
    const text = await run(['dlq', 'show', entry!]);
    expect(text.err).toBe('');
    expect(text.code).toBe(0);
    const diagnosis = text.out.slice(text.out.indexOf('\ndiagnosis:\n'));
    expect(diagnosis).toContain('summary: 2 of 9 steps finished; dependency cycle among audit_a, audit_b');
    expect(diagnosis).toContain(
      'blocking: charge (error for 1h40m; 3/3 attempts; blocks ship; 2 unfinished downstream): card declined',
    );
    // Both blocking and out of retries: the error once, on the blocking line.
    expect(diagnosis).toContain('out of retries: refund (error; failed, not retryable) (error above)');
    expect(diagnosis.slice(diagnosis.indexOf('blocking:')).match(/card declined/g)).toHaveLength(1);
    expect(diagnosis).toContain('cycle: audit_a, audit_b');
    expect(diagnosis).toContain('oldest waiting step: reserve (enqueued for 3h)');

    const json = await run(['dlq', 'show', entry!, '--json']);
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.out);
    expect(parsed.task_snapshot).toEqual((await readEntry(db.pool, entry!)).task_snapshot);
  });
});
