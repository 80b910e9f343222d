/**
 * Investigations grouped by cause over the API (issue 27), against real `web` processes: GET
 * /v1/dlq/groups (most pending first, the queue's filters, paging, the ungrouped count), GET
 * /v1/dlq/groups/{fingerprint} (a page of its entries), bulk resolve by group (the preview's count
 * is the group's; exactly its pending entries, one transaction, one audit row naming the group and
 * every entry), the same under concurrent resolves from two processes, and the OpenAPI document.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import { groupCountsDrift } from '../../src/db/queries/dlq-groups.ts';
import { useTestDatabase } from '../helpers/db.ts';
import {
  hoursBefore,
  insertDlqEntry,
  insertTask,
  insertTemplate,
  type Template,
} from '../helpers/factories.ts';
import { enrichAll, failingEntry, fingerprintOf } from '../helpers/group-factories.ts';
import { auditRows, startWeb, tokenWith, useWebProcess } from './web-process.ts';

const db = useTestDatabase();
const web = useWebProcess(db);
let shop: Template;
let billing: Template;
let token: string;
/** The web processes' clock is the real one: fixtures are placed relative to it. */
let now: Date;

beforeEach(async () => {
  shop = await insertTemplate(db.pool, { namespace: 'shop', name: 'order' });
  billing = await insertTemplate(db.pool, { namespace: 'billing', name: 'invoice' });
  token = await tokenWith(db.pool, 'ops', ['dlq:read', 'dlq:update']);
  now = new Date();
});

const get = (path: string) => web.request('GET', path, { token });

/** n entries of one cause (shop/order, charge: card declined), opened 1..n hours ago; enriched. */
async function storm(n: number, o: { template?: Template; step?: string; reason?: string } = {}) {
  const entries: string[] = [];
  for (let i = 0; i < n; i++) {
    const { entry } = await failingEntry(db.pool, {
      template: o.template ?? shop,
      step: o.step,
      reason: o.reason,
      error: { message: `card declined for order ${4000 + i}`, error_type: 'PaymentError' },
      at: now,
      minutesAgo: 60 * (i + 1) - 30,
    });
    entries.push(entry);
  }
  await enrichAll(db.pool, entries, now);
  return { entries, fingerprint: (await fingerprintOf(db.pool, entries[0]!))! };
}

describe('GET /v1/dlq/groups', () => {
  it('most pending first, each with its counts, template, shared diagnosis, sample and last 24 hours; ungrouped entries counted', async () => {
    const big = await storm(5);
    const small = await storm(2, { step: 'capture' });
    const other = await storm(1, { template: billing, reason: 'staleness_timeout' });
    // An entry not enriched yet is in no group.
    await insertDlqEntry(db.pool, {
      task: await insertTask(db.pool, { template: shop, state: 'error', enteredAt: hoursBefore(now, 1) }),
      reason: 'staleness_timeout',
      at: hoursBefore(now, 1),
    });
    const r = await get('/v1/dlq/groups');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      total: 3,
      total_pending: 8,
      ungrouped_pending: { count: 1, more: false },
    });
    expect(r.body.groups.map((g: { fingerprint: string }) => g.fingerprint)).toEqual([
      big.fingerprint,
      small.fingerprint,
      other.fingerprint,
    ]);
    const g = r.body.groups[0];
    expect(g).toMatchObject({
      fingerprint: big.fingerprint,
      rule_version: 1,
      current_rules: true,
      template: { namespace: 'shop', name: 'order', version: '0.1.0' },
      dlq_reason: 'max_retries_exceeded',
      original_state: 'steps_in_process',
      diagnosis: 'blocked at charge (PaymentError: card declined for order <n>)',
      graph: 'read',
      blocking: [{ step: 'charge', error: 'PaymentError: card declined for order <n>' }],
      pending: 5,
      resolved: 0,
      overdue: false,
    });
    expect(big.entries).toContain(g.sample_dlq_entry_uuid);
    expect(g.oldest_pending_at).toBe(new Date(now.getTime() - (5 * 60 - 30) * 60_000).toISOString());
    expect(g.trend).toHaveLength(24);
    // One opened every hour for five hours, none resolved: pending climbs from 0 to 5, one a step.
    const pendings = g.trend.map((p: { pending: number }) => p.pending);
    expect(pendings[0]).toBe(0);
    expect(pendings.at(-1)).toBe(5);
    expect(new Set(pendings)).toEqual(new Set([0, 1, 2, 3, 4, 5]));
    for (let i = 1; i < pendings.length; i++) expect(pendings[i] - pendings[i - 1]).toBe(g.trend[i].opened);
    expect(g.trend.reduce((n: number, p: { opened: number }) => n + p.opened, 0)).toBe(5);

    const filtered = await get('/v1/dlq/groups?namespace=billing&reason=staleness_timeout');
    expect(filtered.body.groups.map((x: { fingerprint: string }) => x.fingerprint)).toEqual([
      other.fingerprint,
    ]);
    const byTemplate = await get('/v1/dlq/groups?task_name=order');
    expect(byTemplate.body.total).toBe(2);
    // min_age_minutes: the group's oldest pending entry waits at least that long.
    const old = await get('/v1/dlq/groups?min_age_minutes=200');
    expect(old.body.groups.map((x: { fingerprint: string }) => x.fingerprint)).toEqual([big.fingerprint]);
    expect((await get('/v1/dlq/groups?overdue=true')).body).toMatchObject({ total: 0, groups: [] });
    const paged = await get('/v1/dlq/groups?limit=1&offset=1');
    expect(paged.body).toMatchObject({ total: 3 });
    expect(paged.body.groups.map((x: { fingerprint: string }) => x.fingerprint)).toEqual([small.fingerprint]);
  });

  it('a group with nothing pending leaves the list, unless include_resolved', async () => {
    const done = await storm(2);
    for (const e of done.entries) {
      await web.request('PATCH', `/v1/dlq/entry/${e}`, {
        token,
        body: { resolution_status: 'manually_resolved', resolution_notes: 'refunded' },
      });
    }
    expect((await get('/v1/dlq/groups')).body).toMatchObject({ total: 0, groups: [] });
    const all = await get('/v1/dlq/groups?include_resolved=true');
    expect(all.body.groups).toEqual([
      expect.objectContaining({
        fingerprint: done.fingerprint,
        pending: 0,
        resolved: 2,
        oldest_pending_at: null,
      }),
    ]);
  });

  it('bad input: 400 naming the field, and the permission', async () => {
    expect((await get('/v1/dlq/groups?overdue=yes')).body.error.message).toBe(
      'overdue: expected one of true, false',
    );
    expect((await get('/v1/dlq/groups?limit=500')).body.error.message).toBe(
      'limit: expected a whole number from 1 to 200',
    );
    expect((await get('/v1/dlq/groups?colour=red')).status).toBe(400);
    const noRead = await tokenWith(db.pool, 'jobs-only', ['jobs:read']);
    expect((await web.request('GET', '/v1/dlq/groups', { token: noRead })).status).toBe(403);
  });
});

describe('GET /v1/dlq/groups/{fingerprint}', () => {
  it('the group and a page of its entries: pending oldest first, resolved newest first; 404 and 400', async () => {
    const { entries, fingerprint } = await storm(4);
    await web.request('PATCH', `/v1/dlq/entry/${entries[1]}`, {
      token,
      body: { resolution_status: 'cancelled', resolution_notes: 'duplicate' },
    });
    const r = await get(`/v1/dlq/groups/${fingerprint}?limit=2`);
    expect(r.status).toBe(200);
    expect(r.body.group).toMatchObject({ fingerprint, pending: 3, resolved: 1 });
    expect(r.body.entries).toMatchObject({ status: 'pending', total: 3 });
    // entries[i] was opened i + 1 hours ago: the oldest pending first.
    expect(r.body.entries.items.map((e: { dlq_entry_uuid: string }) => e.dlq_entry_uuid)).toEqual([
      entries[3],
      entries[2],
    ]);
    expect(r.body.entries.items[0]).toMatchObject({
      resolution_status: 'pending',
      dlq_reason: 'max_retries_exceeded',
      summary: expect.stringContaining('charge'),
    });
    const next = await get(`/v1/dlq/groups/${fingerprint}?limit=2&offset=2`);
    expect(next.body.entries.items.map((e: { dlq_entry_uuid: string }) => e.dlq_entry_uuid)).toEqual([
      entries[0],
    ]);
    const resolved = await get(`/v1/dlq/groups/${fingerprint}?status=resolved`);
    expect(resolved.body.entries).toMatchObject({
      total: 1,
      items: [{ dlq_entry_uuid: entries[1], resolution_status: 'cancelled' }],
    });
    const cancelled = await get(`/v1/dlq/groups/${fingerprint}?status=cancelled`);
    expect(cancelled.body.entries.total).toBe(1);

    const missing = await get(`/v1/dlq/groups/${'0'.repeat(32)}`);
    expect(missing.status).toBe(404);
    expect(missing.body.error.message).toBe(`no group of investigations has fingerprint ${'0'.repeat(32)}`);
    const bad = await get('/v1/dlq/groups/not-a-fingerprint');
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toBe(
      "fingerprint: expected a group's fingerprint: 32 hex digits, such as 3f9a0c1d2e4b5a6978c0d1e2f3a4b5c6",
    );
  });
});

describe('POST /v1/dlq/bulk-resolve with filter.group', () => {
  it("the preview's count is the group's pending count; applied, exactly its pending entries are resolved, one audit row naming the group and every entry", async () => {
    const target = await storm(6);
    const other = await storm(3, { step: 'capture' });
    const body = (extra: Record<string, unknown>) => ({
      filter: { group: target.fingerprint },
      resolution_status: 'permanently_failed',
      resolution_notes: 'card processor outage; orders cancelled upstream',
      ...extra,
    });
    const preview = await web.request('POST', '/v1/dlq/bulk-resolve', {
      token,
      body: body({ preview_limit: 2 }),
    });
    expect(preview.status).toBe(200);
    const group = (await get(`/v1/dlq/groups/${target.fingerprint}`)).body.group;
    expect(preview.body).toMatchObject({ dry_run: true, matched: group.pending, resolved: 0 });
    expect(preview.body.matched).toBe(6);
    expect(preview.body.entries).toHaveLength(2);
    const applied = await web.request('POST', '/v1/dlq/bulk-resolve', {
      token,
      body: body({ dry_run: false, expected_fingerprint: preview.body.fingerprint }),
    });
    expect(applied.body).toMatchObject({ dry_run: false, matched: 6, resolved: 6 });
    const audit = await auditRows(db.pool, 'dlq.bulk_resolve');
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({
      actor: 'ops',
      target_kind: 'dlq_filter',
      target_id: JSON.stringify({ group: target.fingerprint }),
      details: { group: target.fingerprint, matched: 6, resolved: 6 },
    });
    expect([...audit[0].details.dlq_entry_uuids].sort()).toEqual([...target.entries].sort());
    expect((await get(`/v1/dlq/groups/${target.fingerprint}`)).body.group).toMatchObject({
      pending: 0,
      resolved: 6,
    });
    expect((await get(`/v1/dlq/groups/${other.fingerprint}`)).body.group).toMatchObject({
      pending: 3,
      resolved: 0,
    });
    expect(await groupCountsDrift(db.pool)).toEqual([]);
    const malformed = await web.request('POST', '/v1/dlq/bulk-resolve', {
      token,
      body: body({ filter: { group: 'abc' } }),
    });
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.message).toMatch(/^filter\.group: expected a group's fingerprint/);
  });
});

describe('concurrency', () => {
  it('bulk resolves of a group racing single resolves, over two processes: each pending entry of the group resolved exactly once, nothing else touched', async () => {
    const second = await startWeb(db.url);
    try {
      const target = await storm(40);
      const other = await storm(4, { step: 'capture' });
      const webs = [web, second];
      const bulk = (i: number) =>
        webs[i % 2]!.request('POST', '/v1/dlq/bulk-resolve', {
          token,
          body: {
            filter: { group: target.fingerprint },
            resolution_status: 'cancelled',
            resolution_notes: `bulk ${i}`,
            dry_run: false,
            preview_limit: 0,
          },
        });
      const single = (entry: string, i: number) =>
        webs[i % 2]!.request('PATCH', `/v1/dlq/entry/${entry}`, {
          token,
          body: { resolution_status: 'manually_resolved', resolution_notes: `single ${i}` },
        });
      const results = await Promise.all([
        bulk(0),
        ...target.entries.slice(0, 12).map((e, i) => single(e, i)),
        bulk(1),
        single(other.entries[0]!, 99),
        bulk(2),
      ]);
      for (const r of results) expect([200, 409]).toContain(r.status);
      const bulkResults = [results[0]!, results[13]!, results[15]!];
      const singles = results.slice(1, 13);
      const resolvedByBulk = bulkResults.reduce((n, r) => n + r.body.resolved, 0);
      const resolvedBySingle = singles.filter((r) => r.status === 200).length;
      expect(resolvedByBulk + resolvedBySingle).toBe(40);
      // Every entry of the group once, in exactly one audit row.
      const named = new Map<string, number>();
      for (const row of await auditRows(db.pool)) {
        const ids: string[] =
          row.action === 'dlq.bulk_resolve'
            ? row.details.dlq_entry_uuids
            : row.action === 'dlq.resolve'
              ? [row.target_id]
              : [];
        for (const id of ids) named.set(id, (named.get(id) ?? 0) + 1);
      }
      for (const e of target.entries) expect(named.get(e)).toBe(1);
      const { rows } = await db.pool.query(
        `SELECT count(*) FILTER (WHERE resolution_status = 'pending')::integer AS pending FROM tasker_tasks_dlq
          WHERE failure_fingerprint = $1`,
        [target.fingerprint],
      );
      expect(rows[0].pending).toBe(0);
      expect((await get(`/v1/dlq/groups/${target.fingerprint}`)).body.group).toMatchObject({
        pending: 0,
        resolved: 40,
      });
      expect((await get(`/v1/dlq/groups/${other.fingerprint}`)).body.group).toMatchObject({
        pending: 3,
        resolved: 1,
      });
      expect(await groupCountsDrift(db.pool)).toEqual([]);
    } finally {
      await second.stop();
    }
  }, 120_000);
});

describe('OpenAPI', () => {
  it('describes the group routes, their answers, and filter.group', async () => {
    const doc = (await web.request('GET', '/openapi.json')).body;
    const list = doc.paths['/v1/dlq/groups'].get;
    expect(list.description).toContain('Permission dlq:read');
    expect(list.parameters.map((p: { name: string }) => p.name).sort()).toEqual(
      [
        'include_resolved',
        'limit',
        'min_age_minutes',
        'namespace',
        'offset',
        'overdue',
        'reason',
        'task_name',
      ].sort(),
    );
    const answer = list.responses['200'].content['application/json'].schema;
    expect(Object.keys(answer.properties)).toEqual(['total', 'total_pending', 'ungrouped_pending', 'groups']);
    expect(Object.keys(answer.properties.groups.items.properties)).toEqual(
      expect.arrayContaining([
        'fingerprint',
        'pending',
        'resolved',
        'first_seen_at',
        'last_seen_at',
        'template',
        'diagnosis',
        'sample_dlq_entry_uuid',
        'trend',
      ]),
    );
    const one = doc.paths['/v1/dlq/groups/{fingerprint}'].get;
    expect(one.parameters.map((p: { name: string }) => p.name)).toEqual(
      expect.arrayContaining(['fingerprint', 'status', 'limit', 'offset']),
    );
    const bulk = doc.paths['/v1/dlq/bulk-resolve'].post.requestBody.content['application/json'].schema;
    expect(bulk.properties.filter.properties.group.pattern).toBe('^[0-9a-f]{32}$');
  });
});
