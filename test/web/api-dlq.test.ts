/**
 * The DLQ endpoints against a real `web` process: upstream's six (paths, parameters, defaults,
 * orderings, fields, snake_case enums), opening and bulk-resolving investigations, bad input (400
 * naming the field, nothing changed), 404 and 409, one audit row per change, and 20 simultaneous
 * resolutions of one entry (one 200, nineteen 409).
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import {
  investigationQueue,
  investigationQueueJson,
  listEntries,
  listEntriesJson,
} from '../../src/db/queries/dlq.ts';
import { databaseNow } from '../../src/db/queries/server.ts';
import { useTestDatabase } from '../helpers/db.ts';
import {
  hoursBefore,
  insertDlqEntry,
  insertTask,
  insertTemplate,
  minutesBefore,
  type Template,
} from '../helpers/factories.ts';
import { auditRows, startWeb, tokenWith, useWebProcess } from './web-process.ts';

const db = useTestDatabase();
const web = useWebProcess(db);
let t: Template;
let now: Date;
let token: string;

beforeEach(async () => {
  t = await insertTemplate(db.pool, { namespace: 'billing', name: 'invoice' });
  now = await databaseNow(db.pool);
  token = await tokenWith(db.pool, 'ops', ['dlq:read', 'dlq:update', 'dlq:stats']);
});

const task = (state = 'error', minutes = 10) =>
  insertTask(db.pool, { template: t, state, enteredAt: minutesBefore(now, minutes) });

const get = (path: string) => web.request('GET', path, { token });

async function entryRow(uuid: string) {
  const { rows } = await db.pool.query(
    `SELECT resolution_status::text AS resolution_status, resolution_notes, resolved_by, resolved_by_token_id,
            resolved_on_behalf_of, resolution_timestamp, metadata, updated_at
       FROM tasker_tasks_dlq WHERE dlq_entry_uuid = $1`,
    [uuid],
  );
  return rows[0];
}

const UPSTREAM_ENTRY_FIELDS = [
  'dlq_entry_uuid',
  'task_uuid',
  'original_state',
  'dlq_reason',
  'dlq_timestamp',
  'resolution_status',
  'resolution_timestamp',
  'resolution_notes',
  'resolved_by',
  'task_snapshot',
  'metadata',
  'created_at',
  'updated_at',
];

describe("upstream's six endpoints", () => {
  it('GET /v1/dlq: newest first, status filter, limit default 50 and offset', async () => {
    const old = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'staleness_timeout',
      at: minutesBefore(now, 90),
    });
    const done = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'max_retries_exceeded',
      status: 'cancelled',
      at: minutesBefore(now, 50),
    });
    const recent = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'worker_unavailable',
      at: minutesBefore(now, 5),
    });
    const all = await get('/v1/dlq');
    expect(all.status).toBe(200);
    expect(all.body.map((e: { dlq_entry_uuid: string }) => e.dlq_entry_uuid)).toEqual([recent, done, old]);
    for (const f of UPSTREAM_ENTRY_FIELDS) expect(all.body[0]).toHaveProperty(f);
    expect(all.body[1]).toMatchObject({ resolution_status: 'cancelled', dlq_reason: 'max_retries_exceeded' });
    const pending = await get('/v1/dlq?resolution_status=pending');
    expect(pending.body.map((e: { dlq_entry_uuid: string }) => e.dlq_entry_uuid)).toEqual([recent, old]);
    const paged = await get('/v1/dlq?limit=1&offset=1');
    expect(paged.body.map((e: { dlq_entry_uuid: string }) => e.dlq_entry_uuid)).toEqual([done]);
  });

  it('GET /v1/dlq returns at most 50 by default', async () => {
    for (let i = 0; i < 52; i++) {
      await insertDlqEntry(db.pool, {
        task: await task(),
        reason: 'staleness_timeout',
        at: minutesBefore(now, i + 1),
      });
    }
    expect((await get('/v1/dlq')).body).toHaveLength(50);
  });

  it('GET /v1/dlq/task/{task_uuid}: the most recent entry of the task, any status; 404 when none', async () => {
    const tk = await task();
    await insertDlqEntry(db.pool, {
      task: tk,
      reason: 'staleness_timeout',
      status: 'manually_resolved',
      at: minutesBefore(now, 300),
    });
    const latest = await insertDlqEntry(db.pool, {
      task: tk,
      reason: 'manual_dlq',
      at: minutesBefore(now, 10),
    });
    const r = await get(`/v1/dlq/task/${tk}`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      dlq_entry_uuid: latest,
      task_uuid: tk,
      dlq_reason: 'manual_dlq',
      resolution_status: 'pending',
    });
    const other = await task();
    const missing = await get(`/v1/dlq/task/${other}`);
    expect(missing.status).toBe(404);
    expect(missing.body.error).toEqual({ code: 'NOT_FOUND', message: expect.stringContaining(other) });
  });

  it('GET /v1/dlq/stats: v_dlq_dashboard rows by reason', async () => {
    await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'staleness_timeout',
      at: minutesBefore(now, 60),
    });
    await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'staleness_timeout',
      status: 'manually_resolved',
      at: minutesBefore(now, 60),
    });
    await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'worker_unavailable',
      status: 'permanently_failed',
      at: minutesBefore(now, 60),
    });
    const r = await get('/v1/dlq/stats');
    expect(r.status).toBe(200);
    expect(r.body).toEqual([
      expect.objectContaining({
        dlq_reason: 'staleness_timeout',
        total_entries: 2,
        pending: 1,
        manually_resolved: 1,
      }),
      expect.objectContaining({
        dlq_reason: 'worker_unavailable',
        total_entries: 1,
        permanent_failures: 1,
        cancelled: 0,
      }),
    ]);
    for (const f of ['oldest_entry', 'newest_entry', 'avg_resolution_time_minutes'])
      expect(r.body[0]).toHaveProperty(f);
  });

  it('GET /v1/dlq/investigation-queue: pending only, most urgent first, limit', async () => {
    const cycle = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'dependency_cycle_detected',
      at: minutesBefore(now, 120),
    });
    const olderRetry = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'max_retries_exceeded',
      at: minutesBefore(now, 180),
    });
    const newerRetry = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'max_retries_exceeded',
      at: minutesBefore(now, 30),
    });
    await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'dependency_cycle_detected',
      status: 'cancelled',
      at: minutesBefore(now, 500),
    });
    const r = await get('/v1/dlq/investigation-queue');
    expect(r.status).toBe(200);
    expect(r.body.map((e: { dlq_entry_uuid: string }) => e.dlq_entry_uuid)).toEqual([
      cycle,
      olderRetry,
      newerRetry,
    ]);
    for (const f of [
      'dlq_entry_uuid',
      'task_uuid',
      'original_state',
      'dlq_reason',
      'dlq_timestamp',
      'minutes_in_dlq',
      'namespace_name',
      'task_name',
      'current_state',
      'time_in_state_minutes',
      'priority_score',
    ]) {
      expect(r.body[0]).toHaveProperty(f);
    }
    expect((await get('/v1/dlq/investigation-queue?limit=2')).body).toHaveLength(2);
  });

  it('the investigation queue query gives the rows of v_dlq_investigation_queue, in its order, at any limit', async () => {
    const reasons = [
      'staleness_timeout',
      'max_retries_exceeded',
      'dependency_cycle_detected',
      'worker_unavailable',
      'manual_dlq',
    ];
    // Ages chosen so that scores of different reasons interleave and some tie.
    for (let i = 0; i < 40; i++) {
      await insertDlqEntry(db.pool, {
        task: await task(),
        reason: reasons[i % 5]!,
        status: i % 7 === 0 ? 'cancelled' : 'pending',
        at: minutesBefore(now, (i * 137) % 1200),
        timeInStateMinutes: i,
      });
    }
    // One transaction: now() is the same for the view and the query.
    const client = await db.pool.connect();
    await client.query('BEGIN');
    const view = async (limit: number) =>
      (
        await client.query(
          `SELECT dlq_entry_uuid, task_uuid, original_state, dlq_reason::text AS dlq_reason, dlq_timestamp, minutes_in_dlq,
                  namespace_name, task_name, current_state, time_in_state_minutes, priority_score, overdue
             FROM v_dlq_investigation_queue LIMIT $1`,
          [limit],
        )
      ).rows;
    try {
      for (const limit of [1, 3, 10, 100]) {
        const ours = await investigationQueue(client, limit);
        expect(ours).toEqual(await view(limit));
      }
      expect(await investigationQueue(client, 100)).toHaveLength(34);
    } finally {
      await client.query('COMMIT');
      client.release();
    }
  });

  it('the JSON the API sends (built by PostgreSQL) equals JSON.stringify of the query rows', async () => {
    for (let i = 0; i < 12; i++) {
      const entry = await insertDlqEntry(db.pool, {
        task: await task(),
        reason: i % 2 === 0 ? 'staleness_timeout' : 'worker_unavailable',
        status: i % 3 === 0 ? 'cancelled' : 'pending',
        at: minutesBefore(now, 17 * i + 1),
        timeInStateMinutes: i,
      });
      // updated_at = now() through the trigger: microseconds, as in production.
      if (i % 4 === 1)
        await db.pool.query(
          `UPDATE tasker_tasks_dlq SET metadata = '{"x": [1, "two", null]}' WHERE dlq_entry_uuid = $1`,
          [entry],
        );
    }
    const client = await db.pool.connect();
    await client.query('BEGIN');
    try {
      const params = { limit: 50, offset: 0, now: new Date() };
      expect(JSON.parse(await listEntriesJson(client, params))).toEqual(
        JSON.parse(JSON.stringify(await listEntries(client, params))),
      );
      const pending = { ...params, status: 'pending' as const, limit: 3, offset: 1 };
      expect(JSON.parse(await listEntriesJson(client, pending))).toEqual(
        JSON.parse(JSON.stringify(await listEntries(client, pending))),
      );
      expect(JSON.parse(await investigationQueueJson(client, 5))).toEqual(
        JSON.parse(JSON.stringify(await investigationQueue(client, 5))),
      );
      expect(JSON.parse(await listEntriesJson(client, { ...params, offset: 100 }))).toEqual([]);
    } finally {
      await client.query('COMMIT');
      client.release();
    }
  });

  it('GET /v1/dlq/staleness: stale, then warning, then healthy', async () => {
    // Default thresholds: waiting_for_dependencies 60 minutes; warning from 80 %.
    const healthy = await task('waiting_for_dependencies', 10);
    const stale = await task('waiting_for_dependencies', 90);
    const warning = await task('waiting_for_dependencies', 50);
    const r = await get('/v1/dlq/staleness');
    expect(r.status).toBe(200);
    expect(
      r.body.map((e: { task_uuid: string; health_status: string }) => [e.task_uuid, e.health_status]),
    ).toEqual([
      [stale, 'stale'],
      [warning, 'warning'],
      [healthy, 'healthy'],
    ]);
    for (const f of [
      'namespace_name',
      'task_name',
      'current_state',
      'time_in_state_minutes',
      'task_age_minutes',
      'staleness_threshold_minutes',
      'priority',
    ]) {
      expect(r.body[0]).toHaveProperty(f);
    }
    expect((await get('/v1/dlq/staleness?limit=1')).body).toHaveLength(1);
  });

  it('PATCH /v1/dlq/entry/{uuid}: resolves a pending entry, upstream response, one audit row', async () => {
    const entry = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'staleness_timeout',
      at: minutesBefore(now, 60),
    });
    const r = await web.request('PATCH', `/v1/dlq/entry/${entry}`, {
      token,
      body: { resolution_status: 'manually_resolved', resolution_notes: 'retried the step' },
    });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      success: true,
      message: 'Investigation status updated successfully',
      dlq_entry_uuid: entry,
    });
    expect(await entryRow(entry)).toMatchObject({
      resolution_status: 'manually_resolved',
      resolution_notes: 'retried the step',
      resolved_by: 'ops',
      resolution_timestamp: expect.any(Date),
    });
    const audit = await auditRows(db.pool, 'dlq.resolve');
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({
      actor: 'ops',
      actor_kind: 'token',
      target_kind: 'dlq_entry',
      target_id: entry,
      before: expect.objectContaining({ resolution_status: 'pending', resolved_by: null }),
      after: expect.objectContaining({ resolution_status: 'manually_resolved', resolved_by: 'ops' }),
    });
  });

  it('PATCH: 409 on an entry already resolved, naming who and when, nothing changed, no audit row', async () => {
    const entry = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'staleness_timeout',
      status: 'cancelled',
      at: minutesBefore(now, 60),
    });
    const before = await entryRow(entry);
    const r = await web.request('PATCH', `/v1/dlq/entry/${entry}`, {
      token,
      body: { resolution_status: 'manually_resolved' },
    });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('CONFLICT');
    expect(r.body.error.message).toContain('cancelled by fixture at');
    expect(r.body.error.message).toContain(before.resolution_timestamp.toISOString());
    expect(await entryRow(entry)).toEqual(before);
    expect(await auditRows(db.pool)).toHaveLength(1); // the token's creation only
  });

  it('PATCH without a status amends notes and metadata (audited as dlq.update)', async () => {
    const entry = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'staleness_timeout',
      at: minutesBefore(now, 60),
    });
    const r = await web.request('PATCH', `/v1/dlq/entry/${entry}`, {
      token,
      body: { resolution_notes: 'looking', metadata: { ticket: 'OPS-1' } },
    });
    expect(r.status).toBe(200);
    expect(await entryRow(entry)).toMatchObject({
      resolution_status: 'pending',
      resolution_notes: 'looking',
      metadata: { ticket: 'OPS-1' },
    });
    expect(await auditRows(db.pool, 'dlq.update')).toHaveLength(1);
  });

  it('PATCH on an unknown entry is 404', async () => {
    const r = await web.request('PATCH', '/v1/dlq/entry/0199c2a4-5e1f-7b3a-9d2e-4f6a8b0c1d2e', {
      token,
      body: { resolution_status: 'cancelled' },
    });
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe('NOT_FOUND');
  });
});

describe('bad input: 400 naming the field, nothing changed', () => {
  it.each([
    ['GET', '/v1/dlq?resolution_status=Pending', undefined, 'resolution_status'],
    ['GET', '/v1/dlq?limit=-1', undefined, 'limit'],
    ['GET', '/v1/dlq?offset=-5', undefined, 'offset'],
    ['GET', '/v1/dlq?colour=red', undefined, 'colour'],
    ['GET', '/v1/dlq/investigation-queue?limit=0', undefined, 'limit'],
    ['GET', '/v1/dlq/staleness?limit=abc', undefined, 'limit'],
    ['GET', '/v1/dlq/task/not-a-uuid', undefined, 'task_uuid'],
    ['POST', '/v1/dlq/entries', { task_uuid: 'nope', notes: 'x' }, 'task_uuid'],
    [
      'POST',
      '/v1/dlq/bulk-resolve',
      { filter: { reason: 'StalenessTimeout' }, resolution_status: 'cancelled', resolution_notes: 'x' },
      'filter.reason',
    ],
    [
      'POST',
      '/v1/dlq/bulk-resolve',
      { filter: {}, resolution_status: 'cancelled', resolution_notes: 'x', dry_run: false, colour: 1 },
      'colour',
    ],
  ])('%s %s', async (method, path, body, field) => {
    const r = await web.request(method, path, { token, body });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('BAD_REQUEST');
    expect(r.body.error.message).toMatch(new RegExp(`^${field.replace('.', '\\.')}\\b`));
  });

  it.each([
    [{ resolution_status: 'ManuallyResolved' }, 'resolution_status'],
    [{ resolution_status: 'pending' }, 'resolution_status'],
    [{ resolution_status: 'cancelled', reason: 'x' }, 'reason'],
    [{ metadata: 'text' }, 'metadata'],
    [{}, 'body'],
  ])('PATCH %j', async (body, field) => {
    const entry = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'staleness_timeout',
      at: minutesBefore(now, 60),
    });
    const before = await entryRow(entry);
    const r = await web.request('PATCH', `/v1/dlq/entry/${entry}`, { token, body });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(new RegExp(`^${field}\\b`));
    expect(await entryRow(entry)).toEqual(before);
    expect(await auditRows(db.pool)).toHaveLength(1); // the token's creation only
  });

  it('a PATCH on a bad uuid is 400 naming dlq_entry_uuid', async () => {
    const r = await web.request('PATCH', '/v1/dlq/entry/1234', {
      token,
      body: { resolution_status: 'cancelled' },
    });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(/^dlq_entry_uuid: expected a UUID/);
  });

  it('a body that is not JSON is 400', async () => {
    const res = await fetch(`${web.baseUrl}/v1/dlq/entries`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{"task_uuid":',
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('BAD_REQUEST');
  });
});

describe('POST /v1/dlq/entries: open a manual investigation', () => {
  it('opens one (201, audited), 409 when the task already has a pending one, 404 for no task', async () => {
    const tk = await task('steps_in_process', 20);
    const r = await web.request('POST', '/v1/dlq/entries', {
      token,
      body: { task_uuid: tk, notes: 'customer called' },
    });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      task_uuid: tk,
      dlq_reason: 'manual_dlq',
      resolution_status: 'pending',
      original_state: 'steps_in_process',
    });
    expect(r.body.metadata).toMatchObject({ opened_by: 'ops', notes: 'customer called' });
    const audit = await auditRows(db.pool, 'dlq.add');
    expect(audit).toEqual([
      expect.objectContaining({ actor: 'ops', target_id: r.body.dlq_entry_uuid, before: null }),
    ]);

    const again = await web.request('POST', '/v1/dlq/entries', {
      token,
      body: { task_uuid: tk, notes: 'again' },
    });
    expect(again.status).toBe(409);
    expect(again.body.error.message).toContain(r.body.dlq_entry_uuid);

    const none = await web.request('POST', '/v1/dlq/entries', {
      token,
      body: { task_uuid: '0199c2a4-5e1f-7b3a-9d2e-4f6a8b0c1d2e', notes: 'x' },
    });
    expect(none.status).toBe(404);
    expect(await auditRows(db.pool, 'dlq.add')).toHaveLength(1);
  });
});

describe('POST /v1/dlq/bulk-resolve', () => {
  async function fixture() {
    const match = [];
    for (let i = 0; i < 3; i++) {
      match.push(
        await insertDlqEntry(db.pool, {
          task: await task(),
          reason: 'staleness_timeout',
          namespace: 'billing',
          taskName: 'invoice',
          state: 'waiting_for_dependencies',
          at: hoursBefore(now, 5 + i),
        }),
      );
    }
    // Each misses the filter on one condition.
    const misses = [
      await insertDlqEntry(db.pool, {
        task: await task(),
        reason: 'worker_unavailable',
        namespace: 'billing',
        taskName: 'invoice',
        at: hoursBefore(now, 5),
      }),
      await insertDlqEntry(db.pool, {
        task: await task(),
        reason: 'staleness_timeout',
        namespace: 'shipping',
        taskName: 'invoice',
        at: hoursBefore(now, 5),
      }),
      await insertDlqEntry(db.pool, {
        task: await task(),
        reason: 'staleness_timeout',
        namespace: 'billing',
        taskName: 'refund',
        at: hoursBefore(now, 5),
      }),
      await insertDlqEntry(db.pool, {
        task: await task(),
        reason: 'staleness_timeout',
        namespace: 'billing',
        taskName: 'invoice',
        state: 'steps_in_process',
        at: hoursBefore(now, 5),
      }),
      await insertDlqEntry(db.pool, {
        task: await task(),
        reason: 'staleness_timeout',
        namespace: 'billing',
        taskName: 'invoice',
        at: hoursBefore(now, 3),
      }),
      await insertDlqEntry(db.pool, {
        task: await task(),
        reason: 'staleness_timeout',
        namespace: 'billing',
        taskName: 'invoice',
        status: 'cancelled',
        at: hoursBefore(now, 9),
      }),
    ];
    return { match, misses };
  }
  const request = (dry_run: boolean | undefined, preview_limit?: number) => ({
    filter: {
      reason: 'staleness_timeout',
      namespace: 'billing',
      task_name: 'invoice',
      original_state: 'waiting_for_dependencies',
      older_than_minutes: 240,
    },
    resolution_status: 'permanently_failed',
    resolution_notes: 'upstream outage, abandoned',
    ...(dry_run === undefined ? {} : { dry_run }),
    ...(preview_limit === undefined ? {} : { preview_limit }),
  });

  it('a dry run (the default) returns the count and the first entries, oldest first, and changes nothing', async () => {
    const { match } = await fixture();
    const r = await web.request('POST', '/v1/dlq/bulk-resolve', { token, body: request(undefined, 2) });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ dry_run: true, matched: 3, resolved: 0 });
    expect(r.body.entries.map((e: { dlq_entry_uuid: string }) => e.dlq_entry_uuid)).toEqual([
      match[2],
      match[1],
    ]);
    const { rows } = await db.pool.query(
      `SELECT count(*) AS n FROM tasker_tasks_dlq WHERE resolution_status = 'pending'`,
    );
    expect(rows[0].n).toBe(8);
    expect(await auditRows(db.pool, 'dlq.bulk_resolve')).toHaveLength(0);
  });

  it('applied: resolves exactly the matching entries, one audit row for the action', async () => {
    const { match, misses } = await fixture();
    const r = await web.request('POST', '/v1/dlq/bulk-resolve', { token, body: request(false) });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ dry_run: false, matched: 3, resolved: 3 });
    for (const m of match) {
      expect(await entryRow(m)).toMatchObject({
        resolution_status: 'permanently_failed',
        resolution_notes: 'upstream outage, abandoned',
        resolved_by: 'ops',
      });
    }
    for (const m of misses.slice(0, 5)) expect((await entryRow(m)).resolution_status).toBe('pending');
    const audit = await auditRows(db.pool, 'dlq.bulk_resolve');
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({
      actor: 'ops',
      target_kind: 'dlq_filter',
      before: { resolution_status: 'pending' },
      after: {
        resolution_status: 'permanently_failed',
        resolution_notes: 'upstream outage, abandoned',
        resolved_by: 'ops',
      },
      details: expect.objectContaining({ matched: 3, resolved: 3 }),
    });
    expect([...audit[0].details.dlq_entry_uuids].sort()).toEqual([...match].sort());
    const again = await web.request('POST', '/v1/dlq/bulk-resolve', { token, body: request(false) });
    expect(again.body).toMatchObject({ matched: 0, resolved: 0 });
    // Nothing resolved, nothing recorded.
    expect(await auditRows(db.pool, 'dlq.bulk_resolve')).toHaveLength(1);
  });
});

describe('bulk resolve of exactly what was previewed', () => {
  it("expected_fingerprint: an entry opened after the preview makes it 409 with nothing resolved; the new preview's fingerprint resolves them", async () => {
    const make = async (hours: number) =>
      insertDlqEntry(db.pool, {
        task: await task(),
        reason: 'worker_unavailable',
        namespace: 'exact',
        at: hoursBefore(now, hours),
      });
    const previewed = [await make(5), await make(6)];
    const body = (extra: Record<string, unknown>) => ({
      filter: { namespace: 'exact' },
      resolution_status: 'cancelled',
      resolution_notes: 'drained',
      ...extra,
    });
    const preview = await web.request('POST', '/v1/dlq/bulk-resolve', { token, body: body({}) });
    expect(preview.body).toMatchObject({
      dry_run: true,
      matched: 2,
      fingerprint: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    const later = await make(4);
    const refused = await web.request('POST', '/v1/dlq/bulk-resolve', {
      token,
      body: body({ dry_run: false, expected_fingerprint: preview.body.fingerprint }),
    });
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({
      code: 'CONFLICT',
      message: expect.stringContaining('3 match now, not the entries previewed; nothing was resolved'),
      details: { matched: 3, expected_matched: null, fingerprint: expect.any(String) },
    });
    for (const e of [...previewed, later]) expect((await entryRow(e)).resolution_status).toBe('pending');
    expect(await auditRows(db.pool, 'dlq.bulk_resolve')).toHaveLength(0);
    const applied = await web.request('POST', '/v1/dlq/bulk-resolve', {
      token,
      body: body({ dry_run: false, expected_fingerprint: refused.body.error.details.fingerprint }),
    });
    expect(applied.body).toMatchObject({ matched: 3, resolved: 3 });
    const malformed = await web.request('POST', '/v1/dlq/bulk-resolve', {
      token,
      body: body({ expected_fingerprint: 'abc' }),
    });
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.message).toBe(
      'expected_fingerprint: expected the fingerprint a dry run returned (64 hex digits)',
    );
  });
});

describe('bulk resolve at size', () => {
  it('resolves 250 matching entries in one request, recorded as one audit row naming all 250', async () => {
    for (let i = 0; i < 250; i++) {
      await insertDlqEntry(db.pool, {
        task: await task(),
        reason: 'worker_unavailable',
        at: minutesBefore(now, i + 1),
      });
    }
    const r = await web.request('POST', '/v1/dlq/bulk-resolve', {
      token,
      body: {
        filter: { reason: 'worker_unavailable' },
        resolution_status: 'cancelled',
        resolution_notes: 'workers back',
        dry_run: false,
        preview_limit: 0,
      },
    });
    expect(r.body).toMatchObject({ matched: 250, resolved: 250, entries: [] });
    const audit = await auditRows(db.pool, 'dlq.bulk_resolve');
    expect(audit).toHaveLength(1);
    expect(new Set(audit[0].details.dlq_entry_uuids).size).toBe(250);
    expect(audit[0]).toMatchObject({
      actor: 'ops',
      actor_kind: 'token',
      at: expect.any(Date),
      after: { resolution_status: 'cancelled', resolution_notes: 'workers back', resolved_by: 'ops' },
    });
  });
});

describe('configuration', () => {
  it('with dlq.reasons.manual_dlq off, opening an investigation is refused (409), nothing written', async () => {
    const off = await startWeb(db.url, { TASKER__dlq__reasons__manual_dlq: 'false' });
    try {
      const r = await off.request('POST', '/v1/dlq/entries', {
        token,
        body: { task_uuid: await task(), notes: 'x' },
      });
      expect(r.status).toBe(409);
      expect(r.body.error.message).toContain('dlq.reasons.manual_dlq');
      const { rows } = await db.pool.query('SELECT count(*) AS n FROM tasker_tasks_dlq');
      expect(rows[0].n).toBe(0);
    } finally {
      await off.stop();
    }
  });
});

describe('concurrency', () => {
  it('20 simultaneous resolutions of one entry: exactly one 200 and nineteen 409s, one audit row', async () => {
    const entry = await insertDlqEntry(db.pool, {
      task: await task(),
      reason: 'staleness_timeout',
      at: minutesBefore(now, 60),
    });
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        web.request('PATCH', `/v1/dlq/entry/${entry}`, {
          token,
          body: { resolution_status: 'manually_resolved', resolution_notes: `attempt ${i}` },
        }),
      ),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([200, ...Array(19).fill(409)]);
    const winner = results.findIndex((r) => r.status === 200);
    const row = await entryRow(entry);
    expect(row.resolution_notes).toBe(`attempt ${winner}`);
    for (const loser of results.filter((r) => r.status === 409)) {
      expect(loser.body.error.message).toContain(
        `manually_resolved by ops (token ${row.resolved_by_token_id}) at ${row.resolution_timestamp.toISOString()}`,
      );
    }
    expect(await auditRows(db.pool, 'dlq.resolve')).toHaveLength(1);
  });
});
