/**
 * Enrichment is bounded per batch (SET LOCAL statement_timeout) and one entry cannot hold up the
 * rest: a batch that fails is retried one entry at a time, the entry that fails alone is recorded
 * as failed and counted, and tried again by later sweeps with backoff until max_attempts have
 * failed, then marked failed for good; a malformed id in one merged request is skipped and counted
 * instead of failing every request merged with it. Time is the run's `now`, set either side of
 * each due time; nothing sleeps.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from '@jest/globals';
import enrichJob, {
  EnrichDlqSnapshotsOptions,
  enrichmentOptionsFromConfig,
} from '../../jobs/enrich-dlq-snapshots.ts';
import { runCli } from '../../src/cli/main.ts';
import { ConfigSchema } from '../../src/config/schema.ts';
import { sweepCandidatesPlan } from '../../src/db/queries/dlq-enrichment.ts';
import { projectRoot } from '../../src/paths.ts';
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

const ctx = (now: Date = NOW): JobContext => ({
  pool: db.pool,
  now,
  logger: silentLogger(),
  signal: new AbortController().signal,
});

const secondsAfter = (at: Date, seconds: number) => new Date(at.getTime() + seconds * 1000);

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

/** Makes enriching one entry raise an error (a trigger on its snapshot's write) until undone. */
async function refuse(entry: string): Promise<void> {
  await db.pool.query(
    `CREATE FUNCTION test_refuse_entry() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF NEW.dlq_entry_uuid = '${entry}' AND NEW.task_snapshot -> 'enrichment' ? 'enriched_at' THEN
         RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'P0001';
       END IF;
       RETURN NEW;
     END $$;
     CREATE TRIGGER test_refuse_entry BEFORE UPDATE ON tasker_tasks_dlq
       FOR EACH ROW EXECUTE FUNCTION test_refuse_entry();`,
  );
}

async function stopRefusing(): Promise<void> {
  await db.pool.query(
    'DROP TRIGGER test_refuse_entry ON tasker_tasks_dlq; DROP FUNCTION test_refuse_entry()',
  );
}

/** The entry's next attempt as the sweep sees it (the column) and its failure record. */
async function retryState(entry: string) {
  const { rows } = await db.pool.query<{ next: Date | null; infinite: boolean }>(
    `SELECT enrichment_next_attempt_at AS next, enrichment_next_attempt_at = 'infinity' AS infinite
       FROM tasker_tasks_dlq WHERE dlq_entry_uuid = $1`,
    [entry],
  );
  return { column: rows[0]!.infinite ? 'infinity' : rows[0]!.next, record: await enrichment(entry) };
}

async function dropSlowDown(): Promise<void> {
  await db.pool.query('DROP TRIGGER test_slow_entry ON tasker_tasks_dlq; DROP FUNCTION test_slow_entry()');
}

const enrichment = async (entry: string) =>
  (await readEntry(db.pool, entry)).task_snapshot.enrichment as Record<string, unknown> | undefined;

describe('one entry cannot fail its batch', () => {
  it('an entry whose enrichment outlasts the statement timeout is recorded as failed; the rest of its sweep batch is enriched', async () => {
    const slow = await entryFor(50); // the oldest: first in every sweep
    const others = [await entryFor(40), await entryFor(30)];
    await slowDown(slow.entry, 5);
    try {
      const started = performance.now();
      const first = await enrichJob.run(ctx(), options({ batch_statement_timeout_ms: 1000 }));
      const ms = performance.now() - started;
      expect(first).toMatchObject({ mode: 'sweep', enriched: 2, failed: 1, gave_up: 0 });
      expect(ms).toBeLessThan(10_000); // about two statement timeouts, not the entry's 5 s each time
      expect(await enrichment(slow.entry)).toMatchObject({
        failed: true,
        error: { code: '57014', message: expect.stringMatching(/statement timeout/) },
        failed_attempts: 1,
        gave_up: false,
      });
      for (const o of others) expect(await enrichment(o.entry)).toHaveProperty('enriched_at');
      // The next sweep at the same time passes it by (its next attempt is not due): nothing left.
      expect(await enrichJob.run(ctx(), options({ batch_statement_timeout_ms: 1000 }))).toMatchObject({
        enriched: 0,
        failed: 0,
      });
    } finally {
      await dropSlowDown();
    }
  });

  it('an entry whose enrichment raises an error is recorded as failed; the others in the request are enriched', async () => {
    const bad = await entryFor(50);
    const good = [await entryFor(40), await entryFor(30)];
    await refuse(bad.entry);
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
      // Asked for again before its next attempt is due: reported, not tried.
      expect(await enrichJob.run(ctx(), options({ entry_uuids: [bad.entry] }))).toMatchObject({
        failed_before: 1,
        failed: 0,
        enriched: 0,
      });
    } finally {
      await stopRefusing();
    }
  });
});

describe('failed attempts are tried again', () => {
  const retry = { max_attempts: 3, retry_delay_seconds: 60, retry_delay_max_seconds: 100 };

  it('a failing enrichment is retried with backoff, then marked failed for good', async () => {
    const bad = await entryFor(50);
    await refuse(bad.entry);
    try {
      // Attempt 1 fails: the next is due 60 s later.
      expect(await enrichJob.run(ctx(), options(retry))).toMatchObject({ failed: 1, gave_up: 0 });
      const due1 = secondsAfter(NOW, 60);
      const first = await retryState(bad.entry);
      expect(first).toEqual({
        column: due1,
        record: expect.objectContaining({
          failed: true,
          failed_attempts: 1,
          max_attempts: 3,
          gave_up: false,
        }),
      });
      expect(new Date(first.record!.next_attempt_at as string)).toEqual(due1);
      // A second before it is due, the sweep passes it by; when due, it tries it (attempt 2 fails):
      // the delay doubles, up to retry_delay_max_seconds (120 -> 100 s).
      expect(await enrichJob.run(ctx(secondsAfter(due1, -1)), options(retry))).toMatchObject({
        failed: 0,
        enriched: 0,
      });
      expect(await enrichJob.run(ctx(due1), options(retry))).toMatchObject({
        failed: 1,
        failed_retries: 1,
        gave_up: 0,
      });
      const due2 = secondsAfter(due1, 100);
      expect(await retryState(bad.entry)).toMatchObject({
        column: due2,
        record: { failed_attempts: 2, gave_up: false },
      });
      expect(await enrichJob.run(ctx(secondsAfter(due2, -1)), options(retry))).toMatchObject({ failed: 0 });
      // Attempt 3 of 3 fails: given up, marked, and no sweep takes it again however late.
      expect(await enrichJob.run(ctx(due2), options(retry))).toMatchObject({ failed: 1, gave_up: 1 });
      expect(await retryState(bad.entry)).toEqual({
        column: 'infinity',
        record: expect.objectContaining({
          failed: true,
          failed_attempts: 3,
          next_attempt_at: null,
          gave_up: true,
          error: { code: 'P0001', message: 'refused for the test' },
        }),
      });
      expect(await enrichJob.run(ctx(secondsAfter(due2, 86_400)), options(retry))).toMatchObject({
        failed: 0,
        enriched: 0,
      });
      expect(
        await enrichJob.run(ctx(secondsAfter(due2, 86_400)), options({ entry_uuids: [bad.entry] })),
      ).toMatchObject({ failed_before: 1, enriched: 0 });
    } finally {
      await stopRefusing();
    }
  });

  it('a retry that succeeds is enriched once, says how many attempts failed, and leaves the retry range', async () => {
    const flaky = await entryFor(50);
    const fresh = [await entryFor(20), await entryFor(10)];
    await refuse(flaky.entry);
    await enrichJob.run(ctx(), options({ ...retry, entry_uuids: [flaky.entry] }));
    await stopRefusing();
    const due = secondsAfter(NOW, 60);
    // New entries come first; the due retry fills what is left of the batch.
    const run = await enrichJob.run(ctx(due), options({ ...retry, batch_size: 2 }));
    expect(run).toMatchObject({ enriched: 3, retried: 1, failed: 0, batches: 2 });
    const record = await enrichment(flaky.entry);
    expect(record).toMatchObject({ failed_attempts: 1, task_found: true, detail_level: 'full' });
    expect(record).not.toHaveProperty('failed');
    expect(record).not.toHaveProperty('error');
    expect(new Date(record!.enriched_at as string)).toEqual(due);
    expect((await retryState(flaky.entry)).column).toBeNull();
    for (const f of fresh) expect(new Date((await enrichment(f.entry))!.enriched_at as string)).toEqual(due);
    const before = await readEntry(db.pool, flaky.entry);
    expect(await enrichJob.run(ctx(secondsAfter(due, 3600)), options(retry))).toMatchObject({ enriched: 0 });
    expect((await readEntry(db.pool, flaky.entry)).xmin).toBe(before.xmin);
  });

  it('dlq show says when a failing entry is tried next, that a given-up one is not, and when one was enriched', async () => {
    const show = async (entry: string) => {
      let out = '';
      const io = {
        stdout: { write: (t: string) => (out += t) },
        stderr: { write: (_: string) => undefined },
        env: { TASKER_ENV: 'test', DATABASE_URL: db.url },
        isTTY: false,
      };
      expect(await runCli(['dlq', 'show', entry], io)).toBe(0);
      return out.split('\n').find((l) => l.startsWith('enrichment: ')) ?? '';
    };
    const bad = await entryFor(50);
    expect(await show(bad.entry)).toMatch(/^enrichment: not enriched yet/);
    await refuse(bad.entry);
    try {
      await enrichJob.run(ctx(), options({ ...retry, max_attempts: 2 }));
      const due = (await retryState(bad.entry)).record!.next_attempt_at as string;
      expect(await show(bad.entry)).toBe(
        `enrichment: failing: 1 of 2 attempt(s) failed, last at ${(await retryState(bad.entry)).record!.failed_at}; next attempt at ${due}; last error (P0001): refused for the test`,
      );
      await enrichJob.run(ctx(new Date(due)), options({ ...retry, max_attempts: 2 }));
      expect(await show(bad.entry)).toMatch(
        /^enrichment: failed for good: 2 of 2 attempt\(s\) failed, .*not tried again.*; last error \(P0001\): refused for the test$/,
      );
    } finally {
      await stopRefusing();
    }
    const flaky = await entryFor(40);
    await refuse(flaky.entry);
    await enrichJob.run(ctx(), options({ ...retry, entry_uuids: [flaky.entry] }));
    await stopRefusing();
    await enrichJob.run(ctx(secondsAfter(NOW, 60)), options(retry));
    expect(await show(flaky.entry)).toMatch(/^enrichment: enriched .* after 1 failed attempt\(s\)$/);
  });

  it('with max_attempts 1 an entry is marked failed at its first failure', async () => {
    const bad = await entryFor(50);
    await refuse(bad.entry);
    try {
      expect(await enrichJob.run(ctx(), options({ max_attempts: 1 }))).toMatchObject({
        failed: 1,
        gave_up: 1,
      });
      expect(await retryState(bad.entry)).toMatchObject({ column: 'infinity', record: { gave_up: true } });
    } finally {
      await stopRefusing();
    }
  });

  it('the sweep reads new entries through idx_dlq_pending_unenriched and due retries through idx_dlq_enrichment_retries', async () => {
    // Many enriched and resolved entries around a small backlog, so the planner has a choice.
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
    await db.pool.query('ANALYZE tasker_tasks_dlq');
    const plan = await sweepCandidatesPlan(db.pool, 50, NOW);
    expect(plan).toMatch(/Index Scan using idx_dlq_pending_unenriched/);
    expect(plan).toMatch(/Index Scan using idx_dlq_enrichment_retries/);
  });

  it('entries marked failed by earlier builds get another attempt (migration 0141)', async () => {
    const old = await entryFor(50);
    await db.pool.query(
      `UPDATE tasker_tasks_dlq
          SET task_snapshot = task_snapshot || '{"enrichment": {"version": 1, "failed": true,
                "failed_at": "2026-05-01T00:00:00Z", "error": {"code": "57014", "message": "canceling statement due to statement timeout"}}}'
        WHERE dlq_entry_uuid = $1`,
      [old.entry],
    );
    await db.pool.query(
      readFileSync(join(projectRoot, 'migrations/0141_dlq_enrichment_retry_old_failures.sql'), 'utf8'),
    );
    const { column, record } = await retryState(old.entry);
    expect(column).not.toBeNull();
    expect(record).toMatchObject({ failed: true, failed_attempts: 1, gave_up: false });
    // Due (the migration ran at the server's clock, after NOW): the next sweep enriches it.
    const later = secondsAfter(column as Date, 1);
    expect(await enrichJob.run(ctx(later), options())).toMatchObject({ enriched: 1, retried: 1 });
    expect(await enrichment(old.entry)).toMatchObject({ failed_attempts: 1, task_found: true });
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
