/**
 * Enrichment is bounded per batch (SET LOCAL statement_timeout) and one entry cannot hold up the
 * rest: a batch that fails is retried one entry at a time, the entry that fails alone is marked
 * failed (sweeps then skip it) and counted; a malformed id in one merged request is skipped and
 * counted instead of failing every request merged with it.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import enrichJob, {
  EnrichDlqSnapshotsOptions,
  enrichmentOptionsFromConfig,
} from '../../jobs/enrich-dlq-snapshots.ts';
import { ConfigSchema } from '../../src/config/schema.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import type { JobContext } from '../../src/worker/job.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { readEntry } from '../helpers/enrichment-factories.ts';
import {
  insertDlqEntry,
  insertTask,
  insertTemplate,
  minutesBefore,
  NOW,
  type Template,
} from '../helpers/factories.ts';

const db = useTestDatabase();
let template: Template;

beforeEach(async () => {
  await resetTables(db.pool);
  template = await insertTemplate(db.pool, { name: 'isolation' });
});

const ctx = (): JobContext => ({
  pool: db.pool,
  now: NOW,
  logger: silentLogger(),
  signal: new AbortController().signal,
});

function options(overrides: Partial<EnrichDlqSnapshotsOptions> = {}): EnrichDlqSnapshotsOptions {
  return EnrichDlqSnapshotsOptions.parse({
    ...enrichmentOptionsFromConfig(ConfigSchema.parse({})),
    ...overrides,
  });
}

async function entryFor(minutesAgo: number): Promise<{ task: string; entry: string }> {
  const task = await insertTask(db.pool, {
    template,
    state: 'error',
    enteredAt: minutesBefore(NOW, minutesAgo),
  });
  const entry = await insertDlqEntry(db.pool, {
    task,
    reason: 'staleness_timeout',
    at: minutesBefore(NOW, minutesAgo),
  });
  return { task, entry };
}

/**
 * Makes enriching one entry take `seconds` (a trigger on its snapshot's write), so that it outlasts
 * a short statement timeout. (A big graph no longer does: the diagnosis is linear.)
 */
async function slowDown(entry: string, seconds: number): Promise<void> {
  await db.pool.query(
    `CREATE FUNCTION test_slow_entry() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF NEW.dlq_entry_uuid = '${entry}' AND NEW.task_snapshot -> 'enrichment' ? 'enriched_at' THEN
         PERFORM pg_sleep(${seconds});
       END IF;
       RETURN NEW;
     END $$;
     CREATE TRIGGER test_slow_entry BEFORE UPDATE ON tasker_tasks_dlq
       FOR EACH ROW EXECUTE FUNCTION test_slow_entry();`,
  );
}

async function dropSlowDown(): Promise<void> {
  await db.pool.query('DROP TRIGGER test_slow_entry ON tasker_tasks_dlq; DROP FUNCTION test_slow_entry()');
}

const enrichment = async (entry: string) =>
  (await readEntry(db.pool, entry)).task_snapshot.enrichment as Record<string, unknown> | undefined;

describe('one entry cannot fail its batch', () => {
  it('an entry whose enrichment outlasts the statement timeout is marked failed; the rest of its sweep batch is enriched', async () => {
    const slow = await entryFor(50); // the oldest: first in every sweep
    const others = [await entryFor(40), await entryFor(30)];
    await slowDown(slow.entry, 5);
    try {
      const started = performance.now();
      const first = await enrichJob.run(ctx(), options({ batch_statement_timeout_ms: 1000 }));
      const ms = performance.now() - started;
      expect(first).toMatchObject({ mode: 'sweep', enriched: 2, failed: 1 });
      expect(ms).toBeLessThan(10_000); // about two statement timeouts, not the entry's 5 s each time
      expect(await enrichment(slow.entry)).toMatchObject({
        failed: true,
        error: { code: '57014', message: expect.stringMatching(/statement timeout/) },
      });
      for (const o of others) expect(await enrichment(o.entry)).toHaveProperty('enriched_at');
      // The next sweep skips it: nothing left, nothing failing.
      expect(await enrichJob.run(ctx(), options({ batch_statement_timeout_ms: 1000 }))).toMatchObject({
        enriched: 0,
        failed: 0,
      });
    } finally {
      await dropSlowDown();
    }
  });

  it('an entry whose enrichment raises an error is marked failed; the others in the request are enriched', async () => {
    const bad = await entryFor(50);
    const good = [await entryFor(40), await entryFor(30)];
    await db.pool.query(
      `CREATE FUNCTION test_refuse_entry() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.dlq_entry_uuid = '${bad.entry}' AND NOT (NEW.task_snapshot -> 'enrichment' ? 'failed') THEN
           RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'P0001';
         END IF;
         RETURN NEW;
       END $$;
       CREATE TRIGGER test_refuse_entry BEFORE UPDATE ON tasker_tasks_dlq
         FOR EACH ROW EXECUTE FUNCTION test_refuse_entry();`,
    );
    try {
      const result = await enrichJob.run(
        ctx(),
        options({ entry_uuids: [bad.entry, ...good.map((g) => g.entry)] }),
      );
      expect(result).toMatchObject({ mode: 'entries', requested: 3, enriched: 2, failed: 1 });
      expect(await enrichment(bad.entry)).toMatchObject({
        failed: true,
        error: { code: 'P0001', message: 'refused for the test' },
      });
      for (const g of good) expect(await enrichment(g.entry)).toHaveProperty('enriched_at');
    } finally {
      await db.pool.query(
        'DROP TRIGGER test_refuse_entry ON tasker_tasks_dlq; DROP FUNCTION test_refuse_entry()',
      );
    }
  });
});

describe('malformed requests', () => {
  it('a malformed id in one of the merged requests is skipped and counted; the others are enriched', async () => {
    const a = await entryFor(30);
    const b = await entryFor(20);
    // What the worker does with queued requests: each parsed with the schema, then merged.
    const requests = [
      { entry_uuids: [a.entry] },
      { entry_uuids: ['not-a-uuid'] },
      { entry_uuids: [b.entry] },
    ].map((r) => options(r));
    const merged = enrichJob.batch!.merge(requests);
    const result = await enrichJob.run(ctx(), merged);
    expect(result).toMatchObject({ mode: 'entries', requested: 2, invalid: 1, enriched: 2, failed: 0 });
  });
});
