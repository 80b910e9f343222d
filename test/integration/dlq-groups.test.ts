/**
 * Investigations grouped by cause (issue 27) on a real database: the normalization rules one by one
 * (dlq_normalize_error, version 1), fingerprints as enrichment computes them (same cause, same
 * group; another step, template, version, reason or state, another group), the backfill of entries
 * enriched without one, the move of an older rule set's entries, and the groups' counts, which must
 * equal a full count of the entries after every kind of change: enrichment, the backfill, resolving
 * one, PATCH, bulk resolve, archival, restore, SQL by hand, TRUNCATE. Time is explicit (NOW);
 * nothing sleeps.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import enrichJob, {
  EnrichDlqSnapshotsOptions,
  enrichmentOptionsFromConfig,
} from '../../jobs/enrich-dlq-snapshots.ts';
import { ConfigSchema } from '../../src/config/schema.ts';
import { restoreArchivedTask } from '../../src/db/queries/archive.ts';
import { enrichEntries } from '../../src/db/queries/dlq-enrichment.ts';
import { findGroup, groupCountsDrift, listGroups } from '../../src/db/queries/dlq-groups.ts';
import type { FailureSignature } from '../../src/domain/dlq-groups.ts';
import {
  bulkResolve,
  resolveInvestigation,
  updateInvestigation,
} from '../../src/operations/investigations.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import type { JobContext } from '../../src/worker/job.ts';
import { insertFinishedGraph } from '../helpers/archive-factories.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import { defaultLimits, readEntry } from '../helpers/enrichment-factories.ts';
import {
  hoursBefore,
  insertDlqEntry,
  insertStep,
  insertTask,
  insertTemplate,
  minutesBefore,
  NOW,
  type Template,
} from '../helpers/factories.ts';
import {
  enrichAll,
  type FailingEntryOptions,
  failingEntry as failingEntryOf,
  fingerprintOf as fingerprintOfEntry,
} from '../helpers/group-factories.ts';

const db = useTestDatabase();
let shop: Template;

beforeEach(async () => {
  await resetTables(db.pool);
  shop = await insertTemplate(db.pool, { namespace: 'shop', name: 'order' });
});

const actor = { kind: 'cli' as const, name: 'tester' };

async function normalized(error: unknown, rules = 1): Promise<string | null> {
  const { rows } = await db.pool.query<{ n: string | null }>(
    'SELECT dlq_normalize_error($1::jsonb, $2) AS n',
    [error === undefined ? null : JSON.stringify(error), rules],
  );
  return rows[0]!.n;
}

/** Each text as rule set 1 gives it (strings). */
async function masks(texts: string[]): Promise<string[]> {
  return Promise.all(texts.map(async (t) => (await normalized(t)) ?? ''));
}

/** A failing entry of the shop/order template (at: minutes before NOW it was opened). */
const failingEntry = (o: Omit<Partial<FailingEntryOptions>, 'at'> & { at?: number } = {}) => {
  const { at, ...rest } = o;
  return failingEntryOf(db.pool, { template: shop, ...rest, minutesAgo: at ?? rest.minutesAgo });
};
const enrich = (...entries: string[]) => enrichAll(db.pool, entries);
const fingerprintOf = (entry: string) => fingerprintOfEntry(db.pool, entry);

async function signatureOf(entry: string): Promise<FailureSignature> {
  return (await readEntry(db.pool, entry)).task_snapshot.failure_signature as FailureSignature;
}

async function expectRollupEqualsFullCount(): Promise<void> {
  expect(await groupCountsDrift(db.pool)).toEqual([]);
}

async function groupCounts(fp: string): Promise<{ pending: number; resolved: number }> {
  const { rows } = await db.pool.query(
    'SELECT pending, resolved FROM tasker_dlq_groups WHERE fingerprint = $1',
    [fp],
  );
  return rows[0];
}

const ctx = (now: Date = NOW): JobContext => ({
  pool: db.pool,
  now,
  logger: silentLogger(),
  signal: new AbortController().signal,
});

function sweepOptions(overrides: Partial<EnrichDlqSnapshotsOptions> = {}): EnrichDlqSnapshotsOptions {
  return EnrichDlqSnapshotsOptions.parse({
    ...enrichmentOptionsFromConfig(ConfigSchema.parse({})),
    entry_uuids: [],
    ...overrides,
  });
}

describe('normalization rules (version 1), one by one', () => {
  it('rule 1: quoted values are masked; an apostrophe inside a word is not a quote', async () => {
    expect(
      await masks([
        "no such customer 'ACME-17'",
        'key "tenant one" missing',
        'ran `select 1` and failed',
        "can't reach 'db-3'",
        "the order's state",
      ]),
    ).toEqual([
      "no such customer '<str>'",
      'key "<str>" missing',
      'ran `<str>` and failed',
      "can't reach '<str>'",
      "the order's state",
    ]);
  });

  it('rule 2: uuids', async () => {
    expect(
      await masks([
        'task 0199c2a4-5e1f-7b3a-9d2e-4f6a8b0c1d2e not found',
        'from 0199C2A4-5E1F-7B3A-9D2E-4F6A8B0C1D2E to 0199c2a4-5e1f-7b3a-9d2e-4f6a8b0c1d2f',
      ]),
    ).toEqual(['task <uuid> not found', 'from <uuid> to <uuid>']);
  });

  it('rule 3: timestamps: ISO 8601 dates and times, times of day, HTTP dates', async () => {
    expect(
      await masks([
        'at 2026-06-01T12:00:00.123Z',
        'at 2026-06-01 12:00:00+02',
        'due 2026-06-01',
        'at 12:34:56.7',
        'Date: Mon, 01 Jun 2026 12:00:00 GMT',
      ]),
    ).toEqual(['at <time>', 'at <time>', 'due <time>', 'at <time>', 'Date: <time>']);
  });

  it('rule 4: IPv4 addresses, with or without a port', async () => {
    expect(await masks(['connect ECONNREFUSED 10.0.3.17:5432', 'from 192.168.1.1', 'version 1.2.3'])).toEqual(
      ['connect ECONNREFUSED <ip>', 'from <ip>', 'version <n>'],
    );
  });

  it('rule 5: hex ids: 0x…, and words of 8+ hex digits with a digit and a letter', async () => {
    expect(
      await masks(['ptr 0xDEADbeef', 'request 5f2b9c0e1a7d failed', 'beef deadbeef cafe', 'short a1b2c3']),
    ).toEqual(['ptr <hex>', 'request <hex> failed', 'beef deadbeef cafe', 'short a1b2c3']);
  });

  it('rule 6: durations: a number and a unit, also compound', async () => {
    expect(
      await masks([
        'timeout after 30000ms',
        'retry in 1h30m',
        'waited 2.5 seconds',
        'took 5 min',
        'for 3 days',
        'queue has 3 messages',
      ]),
    ).toEqual([
      'timeout after <duration>',
      'retry in <duration>',
      'waited <duration>',
      'took <duration>',
      'for <duration>',
      'queue has <n> messages',
    ]);
  });

  it('rule 7: numbers that start a word, with decimals; digits inside a word stay', async () => {
    expect(
      await masks([
        'card declined for order 4411',
        'card declined for order-9120',
        'HTTP 503 Service Unavailable',
        'step2 of v2.1',
        '-5 items, 3.14 left',
      ]),
    ).toEqual([
      'card declined for order <n>',
      'card declined for order-<n>',
      'HTTP <n> Service Unavailable',
      'step2 of v2.1',
      '-<n> items, <n> left',
    ]);
  });

  it('whitespace runs become one space, and the text is cut to 200 characters', async () => {
    expect(await masks(['  lots \n of\t space  '])).toEqual(['lots of space']);
    expect(await normalized('x'.repeat(500))).toBe('x'.repeat(200));
  });

  it('the error as steps record it: a string, an object with a type and a message, an object without a message, other JSON, none', async () => {
    expect(await normalized('plain 42')).toBe('plain <n>');
    expect(await normalized({ message: 'card declined for order 77', error_type: 'PaymentError' })).toBe(
      'PaymentError: card declined for order <n>',
    );
    expect(await normalized({ code: 'E_TIMEOUT', retry_after: 30, type: 'Upstream' })).toBe(
      'Upstream: code: E_TIMEOUT, retry_after: <n>',
    );
    expect(await normalized(17)).toBe('<n>');
    expect(await normalized(null)).toBeNull();
    expect(await normalized(undefined)).toBeNull();
  });

  it('a rule set version this build does not know is refused, naming it', async () => {
    await expect(normalized('x', 2)).rejects.toThrow(
      'dlq_normalize_error: no rule set version 2 (this build has version 1, dlq_failure_rules_version())',
    );
  });
});

describe('fingerprints', () => {
  it('entries whose errors differ only in masked parts share a group', async () => {
    const a = await failingEntry({
      error: { message: 'card declined for order 4411 at 2026-05-31T23:00:01Z', error_type: 'PaymentError' },
    });
    const b = await failingEntry({
      error: { message: 'card declined for order 9120 at 2026-06-01T08:12:44Z', error_type: 'PaymentError' },
    });
    await enrich(a.entry, b.entry);
    const fp = await fingerprintOf(a.entry);
    expect(fp).toMatch(/^[0-9a-f]{32}$/);
    expect(await fingerprintOf(b.entry)).toBe(fp);
    expect(await signatureOf(a.entry)).toEqual({
      version: 1,
      fingerprint: fp,
      template: { namespace: 'shop', name: 'order', version: '0.1.0' },
      dlq_reason: 'max_retries_exceeded',
      original_state: 'steps_in_process',
      graph: 'read',
      blocking: [{ step: 'charge', error: 'PaymentError: card declined for order <n> at <time>' }],
      blocking_total: 1,
      summary: 'blocked at charge (PaymentError: card declined for order <n> at <time>)',
    });
    const group = await findGroup(db.pool, fp!, NOW);
    expect(group).toMatchObject({
      pending: 2,
      resolved: 0,
      template: { namespace: 'shop', name: 'order', version: '0.1.0' },
      dlq_reason: 'max_retries_exceeded',
      original_state: 'steps_in_process',
      diagnosis: 'blocked at charge (PaymentError: card declined for order <n> at <time>)',
      current_rules: true,
      first_seen_at: minutesBefore(NOW, 30),
      last_seen_at: minutesBefore(NOW, 30),
    });
    expect([a.entry, b.entry]).toContain(group!.sample_dlq_entry_uuid);
    await expectRollupEqualsFullCount();
  });

  it('another blocking step, error, template, template version, reason or state makes another group', async () => {
    const v2 = await insertTemplate(db.pool, { namespace: 'shop', name: 'order_v2' });
    await db.pool.query(`UPDATE tasker_named_tasks SET version = '0.2.0' WHERE named_task_uuid = $1`, [
      v2.named_task_uuid,
    ]);
    await db.pool.query(`UPDATE tasker_named_tasks SET name = 'order' WHERE named_task_uuid = $1`, [
      v2.named_task_uuid,
    ]);
    const refund = await insertTemplate(db.pool, { namespace: 'shop', name: 'refund' });
    const base = await failingEntry();
    const variants = [
      await failingEntry({ step: 'capture' }),
      await failingEntry({ error: { message: 'card expired for order 4411', error_type: 'PaymentError' } }),
      await failingEntry({ error: { message: 'card declined for order 4411', error_type: 'GatewayError' } }),
      await failingEntry({ template: refund }),
      await failingEntry({ template: { ...v2, name: 'order' } }),
      await failingEntry({ reason: 'staleness_timeout' }),
      await failingEntry({ state: 'waiting_for_retry' }),
    ];
    const same = await failingEntry({
      error: { message: 'card declined for order 1', error_type: 'PaymentError' },
    });
    await enrich(base.entry, same.entry, ...variants.map((v) => v.entry));
    const fps = await Promise.all(variants.map((v) => fingerprintOf(v.entry)));
    expect(new Set([await fingerprintOf(base.entry), ...fps]).size).toBe(8);
    expect(await fingerprintOf(same.entry)).toBe(await fingerprintOf(base.entry));
    expect((await signatureOf(variants[4]!.entry)).template).toEqual({
      namespace: 'shop',
      name: 'order',
      version: '0.2.0',
    });
    const page = await listGroups(db.pool, {}, { limit: 50, offset: 0 }, NOW);
    expect(page).toMatchObject({ total: 8, total_pending: 9 });
    // Most pending first.
    expect(page.groups[0]!.fingerprint).toBe(await fingerprintOf(base.entry));
    await expectRollupEqualsFullCount();
  });

  it('parallel steps failing alike count once; the blocking part is sorted, whatever the order of the steps', async () => {
    const make = async (names: string[]) => {
      const task = await insertTask(db.pool, {
        template: shop,
        state: 'steps_in_process',
        enteredAt: hoursBefore(NOW, 3),
      });
      for (const [i, name] of names.entries()) {
        await insertStep(db.pool, {
          task,
          name,
          state: 'error',
          attempts: 3,
          maxAttempts: 3,
          results: { error: `shard ${i} unreachable after ${i + 1}s` },
        });
      }
      return insertDlqEntry(db.pool, {
        task,
        reason: 'max_retries_exceeded',
        state: 'steps_in_process',
        at: minutesBefore(NOW, 10),
        namespace: 'shop',
        taskName: 'order',
      });
    };
    const wide = await make(['fan_out', 'fan_out', 'fan_out', 'audit', 'fan_out']);
    const reordered = await make(['audit', 'fan_out', 'fan_out']);
    await enrich(wide, reordered);
    expect(await fingerprintOf(wide)).toBe(await fingerprintOf(reordered));
    expect((await signatureOf(wide)).blocking).toEqual([
      { step: 'audit', error: 'shard <n> unreachable after <duration>' },
      { step: 'fan_out', error: 'shard <n> unreachable after <duration>' },
    ]);
  });

  it('kept at every detail level, and made for a task that no longer exists', async () => {
    // 30 blocking steps with long errors: a diagnosis too big for 16 kB, so the detail drops to minimal.
    const wide = async () => {
      const task = await insertTask(db.pool, {
        template: shop,
        state: 'steps_in_process',
        enteredAt: hoursBefore(NOW, 3),
      });
      for (let i = 0; i < 30; i++) {
        await insertStep(db.pool, {
          task,
          name: 'shard',
          state: 'error',
          attempts: 3,
          maxAttempts: 3,
          results: { error: `shard ${i} failed: ${'x'.repeat(900)}` },
        });
      }
      return insertDlqEntry(db.pool, {
        task,
        reason: 'max_retries_exceeded',
        state: 'steps_in_process',
        at: minutesBefore(NOW, 10),
        namespace: 'shop',
        taskName: 'order',
      });
    };
    const full = await wide();
    const minimal = await wide();
    await enrich(full);
    const rows = await enrichEntries(db.pool, [minimal], defaultLimits({ maxSnapshotBytes: 16384 }));
    expect(rows[0]).toMatchObject({ outcome: 'enriched', detail_level: 'minimal' });
    expect((await readEntry(db.pool, full)).task_snapshot.enrichment).toMatchObject({ detail_level: 'full' });
    expect(await fingerprintOf(minimal)).toBe(await fingerprintOf(full));
    expect((await signatureOf(minimal)).blocking).toEqual([
      { step: 'shard', error: `shard <n> failed: ${'x'.repeat(900)}`.slice(0, 200) },
    ]);

    const gone = await failingEntry({ status: 'cancelled' });
    // The task goes (as a delete elsewhere could take it; the foreign keys are not checked here).
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL session_replication_role = replica');
      await client.query('DELETE FROM tasker_tasks WHERE task_uuid = $1', [gone.task]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    await enrich(gone.entry);
    expect(await signatureOf(gone.entry)).toMatchObject({
      template: { namespace: 'shop', name: 'order', version: null },
      graph: 'task_missing',
      blocking: null,
      summary: 'the task no longer existed when enriched',
    });
    expect(await groupCounts((await fingerprintOf(gone.entry))!)).toEqual({ pending: 0, resolved: 1 });
    await expectRollupEqualsFullCount();
  });
});

describe('entries enriched without a fingerprint: the backfill', () => {
  it("the previous build's enrichment writes none; the sweep gives each the one enrichment would, in bounded batches", async () => {
    const entries = [];
    for (let i = 0; i < 5; i++) entries.push((await failingEntry({ at: 60 - i })).entry);
    const fresh = await failingEntry({ at: 5 });
    // The previous build's workers: the 8-argument snapshot, no fingerprint column.
    await db.pool.query(
      `UPDATE tasker_tasks_dlq d
          SET task_snapshot = dlq_enriched_snapshot(d.task_snapshot, d.task_uuid, $2, true, 500, 200, 16384, 1048576)
        WHERE d.dlq_entry_uuid = ANY ($1::uuid[])`,
      [entries, NOW],
    );
    const before = await readEntry(db.pool, entries[0]!);
    expect(before.task_snapshot).not.toHaveProperty('failure_signature');
    expect(await fingerprintOf(entries[0]!)).toBeNull();
    const { rows: empty } = await db.pool.query('SELECT count(*)::integer AS n FROM tasker_dlq_groups');
    expect(empty[0].n).toBe(0);

    // The new entry first; then the backfill, batch_size (2) at a time, up to max_batches (2).
    const run = await enrichJob.run(ctx(), sweepOptions({ batch_size: 2, max_batches: 2 }));
    expect(run).toMatchObject({
      enriched: 1,
      batches: 1,
      fingerprinted: 4,
      fingerprint_batches: 2,
      fingerprinted_without_graph: 0,
    });
    const rest = await enrichJob.run(ctx(), sweepOptions({ batch_size: 2 }));
    expect(rest).toMatchObject({ enriched: 0, fingerprinted: 1, fingerprint_batches: 1 });
    const fp = await fingerprintOf(fresh.entry);
    for (const e of entries) expect(await fingerprintOf(e)).toBe(fp);
    // What enrichment wrote is kept; the signature is added.
    const after = await readEntry(db.pool, entries[0]!);
    expect(after.task_snapshot.enrichment).toEqual(before.task_snapshot.enrichment);
    expect(after.task_snapshot.diagnosis).toEqual(before.task_snapshot.diagnosis);
    expect(await signatureOf(entries[0]!)).toEqual(await signatureOf(fresh.entry));
    expect(await groupCounts(fp!)).toEqual({ pending: 6, resolved: 0 });
    expect(await enrichJob.run(ctx(), sweepOptions())).toMatchObject({ enriched: 0, fingerprinted: 0 });
    await expectRollupEqualsFullCount();
  });

  it('an entry whose graph cannot be read gets a fingerprint saying its blocking steps are unknown; the others theirs', async () => {
    const bad = await failingEntry({ at: 60 });
    const good = await failingEntry({ at: 50 });
    await db.pool.query(
      `UPDATE tasker_tasks_dlq d
          SET task_snapshot = dlq_enriched_snapshot(d.task_snapshot, d.task_uuid, $2, true, 500, 200, 16384, 1048576)
        WHERE d.dlq_entry_uuid = ANY ($1::uuid[])`,
      [[bad.entry, good.entry], NOW],
    );
    await db.pool.query(
      `CREATE FUNCTION test_refuse_graph() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.dlq_entry_uuid = '${bad.entry}' AND NEW.task_snapshot #>> '{failure_signature,graph}' = 'read' THEN
           RAISE EXCEPTION 'graph refused for the test' USING ERRCODE = 'P0001';
         END IF;
         RETURN NEW;
       END $$;
       CREATE TRIGGER test_refuse_graph BEFORE UPDATE ON tasker_tasks_dlq
         FOR EACH ROW EXECUTE FUNCTION test_refuse_graph();`,
    );
    try {
      const run = await enrichJob.run(ctx(), sweepOptions());
      expect(run).toMatchObject({ fingerprinted: 2, fingerprinted_without_graph: 1 });
    } finally {
      await db.pool.query(
        'DROP TRIGGER test_refuse_graph ON tasker_tasks_dlq; DROP FUNCTION test_refuse_graph()',
      );
    }
    expect(await signatureOf(bad.entry)).toMatchObject({
      graph: 'unavailable',
      blocking: null,
      summary: "blocking steps not known (the task's graph could not be read)",
    });
    expect((await signatureOf(good.entry)).graph).toBe('read');
    expect(await fingerprintOf(bad.entry)).not.toBe(await fingerprintOf(good.entry));
    await expectRollupEqualsFullCount();
  });

  it('a group made by an older rule set: the sweep moves its pending entries into the groups the current rules give them; its resolved ones stay', async () => {
    const pending = [(await failingEntry({ at: 40 })).entry, (await failingEntry({ at: 30 })).entry];
    const resolved = (await failingEntry({ at: 50, status: 'manually_resolved' })).entry;
    // As a build with rule set 0 would have left them: one group, its fingerprint, version 0.
    await db.pool.query(
      `UPDATE tasker_tasks_dlq d
          SET task_snapshot = d.task_snapshot || jsonb_build_object('enrichment', jsonb_build_object('version', 1, 'enriched_at', $2::timestamptz),
                                                                    'failure_signature', jsonb_build_object('version', 0, 'summary', 'old rules')),
              failure_fingerprint = repeat('0', 32)
        WHERE d.dlq_entry_uuid = ANY ($1::uuid[])`,
      [[...pending, resolved], NOW],
    );
    const old = await findGroup(db.pool, '0'.repeat(32), NOW);
    expect(old).toMatchObject({
      rule_version: 0,
      current_rules: false,
      pending: 2,
      resolved: 1,
      diagnosis: 'old rules',
    });
    const run = await enrichJob.run(ctx(), sweepOptions());
    expect(run).toMatchObject({ fingerprinted: 2 });
    const fp = await fingerprintOf(pending[0]!);
    expect(fp).not.toBe('0'.repeat(32));
    expect(await fingerprintOf(pending[1]!)).toBe(fp);
    expect(await fingerprintOf(resolved)).toBe('0'.repeat(32));
    expect(await groupCounts('0'.repeat(32))).toEqual({ pending: 0, resolved: 1 });
    expect(await groupCounts(fp!)).toEqual({ pending: 2, resolved: 0 });
    expect((await findGroup(db.pool, fp!, NOW))!.rule_version).toBe(1);
    await expectRollupEqualsFullCount();
  });
});

describe("the groups' counts equal a full count of the entries after every kind of change", () => {
  it('enrichment, resolving one, PATCH, bulk resolve by group, SQL by hand, TRUNCATE', async () => {
    const made = [];
    for (let i = 0; i < 6; i++) made.push(await failingEntry({ at: 30 + i * 60 }));
    const other = await failingEntry({ step: 'capture', at: 10 });
    await enrich(...made.map((m) => m.entry), other.entry);
    const fp = (await fingerprintOf(made[0]!.entry))!;
    await expectRollupEqualsFullCount();
    expect(await groupCounts(fp)).toEqual({ pending: 6, resolved: 0 });

    await resolveInvestigation(db.pool, {
      uuid: made[0]!.entry,
      status: 'manually_resolved',
      notes: 'fixed',
      actor,
      now: NOW,
    });
    expect(await groupCounts(fp)).toEqual({ pending: 5, resolved: 1 });
    await expectRollupEqualsFullCount();

    // Amending notes or metadata changes no count (and writes no group row).
    const { rows: before } = await db.pool.query(
      'SELECT xmin::text AS x FROM tasker_dlq_groups WHERE fingerprint = $1',
      [fp],
    );
    await updateInvestigation(db.pool, {
      uuid: made[1]!.entry,
      notes: 'looking',
      metadata: { ticket: 'OPS-1' },
      actor,
      now: NOW,
    });
    const { rows: after } = await db.pool.query(
      'SELECT xmin::text AS x FROM tasker_dlq_groups WHERE fingerprint = $1',
      [fp],
    );
    expect(after[0].x).toBe(before[0].x);
    await expectRollupEqualsFullCount();

    const preview = await bulkResolve(db.pool, {
      filter: { group: fp },
      status: 'cancelled',
      notes: 'card processor outage',
      dryRun: true,
      previewLimit: 2,
      actor,
      now: NOW,
    });
    expect(preview).toMatchObject({ matched: 5, resolved: 0 });
    const done = await bulkResolve(db.pool, {
      filter: { group: fp },
      status: 'cancelled',
      notes: 'card processor outage',
      dryRun: false,
      previewLimit: 0,
      expectFingerprint: preview.fingerprint,
      actor,
      now: NOW,
    });
    expect(done).toMatchObject({ matched: 5, resolved: 5 });
    expect(await groupCounts(fp)).toEqual({ pending: 0, resolved: 6 });
    expect(await groupCounts((await fingerprintOf(other.entry))!)).toEqual({ pending: 1, resolved: 0 });
    await expectRollupEqualsFullCount();

    // By hand: reopened, moved to another group, its time changed, deleted, inserted.
    await db.pool.query(
      `UPDATE tasker_tasks_dlq SET resolution_status = 'pending', resolution_timestamp = NULL, resolved_by = NULL
        WHERE dlq_entry_uuid = $1`,
      [made[2]!.entry],
    );
    await db.pool.query(`UPDATE tasker_tasks_dlq SET failure_fingerprint = $2 WHERE dlq_entry_uuid = $1`, [
      made[3]!.entry,
      await fingerprintOf(other.entry),
    ]);
    await db.pool.query(
      `UPDATE tasker_tasks_dlq SET dlq_timestamp = dlq_timestamp - interval '3 hours' WHERE dlq_entry_uuid = $1`,
      [made[4]!.entry],
    );
    await db.pool.query(`DELETE FROM tasker_tasks_dlq WHERE dlq_entry_uuid = $1`, [made[5]!.entry]);
    await db.pool.query(
      `INSERT INTO tasker_tasks_dlq (task_uuid, original_state, dlq_reason, dlq_timestamp, task_snapshot, failure_fingerprint)
       SELECT task_uuid, original_state, dlq_reason, dlq_timestamp + interval '1 day', task_snapshot, failure_fingerprint
         FROM tasker_tasks_dlq WHERE dlq_entry_uuid = $1`,
      [made[0]!.entry],
    );
    await expectRollupEqualsFullCount();
    expect(await groupCounts(fp)).toEqual({ pending: 2, resolved: 3 });

    await db.pool.query('TRUNCATE tasker_tasks_dlq');
    await expectRollupEqualsFullCount();
    expect(await groupCounts(fp)).toEqual({ pending: 0, resolved: 0 });
  });

  it('archival of resolved entries and restore', async () => {
    const finished = await insertFinishedGraph(db.pool, {
      named_task_uuid: shop.named_task_uuid,
      state: 'complete',
      finishedAt: hoursBefore(NOW, 24 * 40),
      resolvedDlqEvery: 1,
    });
    const { rows } = await db.pool.query<{ dlq_entry_uuid: string }>(
      'SELECT dlq_entry_uuid FROM tasker_tasks_dlq WHERE task_uuid = $1',
      [finished],
    );
    const entry = rows[0]!.dlq_entry_uuid;
    await enrich(entry);
    const fp = (await fingerprintOf(entry))!;
    expect(await groupCounts(fp)).toEqual({ pending: 0, resolved: 1 });
    const { rows: archived } = await db.pool.query(
      'SELECT tasks_archived FROM archive_completed_tasks(30, 100, false)',
    );
    expect(archived[0].tasks_archived).toBe(1);
    expect(await groupCounts(fp)).toEqual({ pending: 0, resolved: 0 });
    await expectRollupEqualsFullCount();
    // The group stays: the cause is not new if it comes back.
    expect(await findGroup(db.pool, fp, NOW)).toMatchObject({
      pending: 0,
      resolved: 0,
      sample_dlq_entry_uuid: null,
    });
    await restoreArchivedTask(db.pool, finished);
    expect(await fingerprintOf(entry)).toBe(fp);
    expect(await groupCounts(fp)).toEqual({ pending: 0, resolved: 1 });
    await expectRollupEqualsFullCount();
  });

  it("the hours: opened by dlq_timestamp's hour, resolved by resolution_timestamp's; pending at each hour's end follows", async () => {
    const early = await failingEntry({ at: 5 * 60 + 10 }); // opened in the hour 6 hours before NOW's
    const later = await failingEntry({ at: 2 * 60 + 10 }); // 3 hours before
    const now = await failingEntry({ at: 0 });
    await enrich(early.entry, later.entry, now.entry);
    await resolveInvestigation(db.pool, {
      uuid: early.entry,
      status: 'manually_resolved',
      notes: 'x',
      actor,
      now: hoursBefore(NOW, 1),
    });
    const group = (await findGroup(db.pool, (await fingerprintOf(now.entry))!, NOW))!;
    expect(group.trend).toHaveLength(24);
    const last = group.trend.slice(-7);
    expect(last.map((p) => [p.opened, p.resolved, p.pending])).toEqual([
      [1, 0, 1], // NOW - 6h: early opened
      [0, 0, 1],
      [0, 0, 1],
      [1, 0, 2], // NOW - 3h: later opened
      [0, 0, 2],
      [0, 1, 1], // NOW - 1h: early resolved
      [1, 0, 2], // NOW's hour: the newest opened
    ]);
    expect(last.at(-1)!.hour).toEqual(new Date('2026-06-01T12:00:00.000Z'));
    expect(group.trend[0]!.pending).toBe(0);
    await expectRollupEqualsFullCount();
  });
});
