/**
 * The console's groups (issue 27), served by a real `web` process and read as a browser gets them:
 * the queue opens on groups of entries by cause (count, trend, template, shared diagnosis), with a
 * switch to single entries that keeps the filters and a count of the entries in no group yet; a
 * group's page with what its entries share and a page of them; each entry page links to its group;
 * "Resolve all in this group" (its preview count is the API's dry run), refused with the notes kept
 * when the group changed meanwhile, and not offered to a token without dlq:update.
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
import { auditRows, consoleSignIn, tokenWith, useWebProcess } from './web-process.ts';

const db = useTestDatabase();
const web = useWebProcess(db);
let shop: Template;
let now: Date;
let token: string;
let reader: string;

beforeEach(async () => {
  shop = await insertTemplate(db.pool, { namespace: 'shop', name: 'order' });
  token = await tokenWith(db.pool, 'ops', ['dlq:read', 'dlq:update']);
  reader = await tokenWith(db.pool, 'reader', ['dlq:read']);
  sessions.clear();
  now = new Date();
});

/** Each token's console session, signed in as a browser does (the server keeps the sessions). */
const sessions = new Map<string, string>();
async function cookieFor(secret: string): Promise<string> {
  if (!sessions.has(secret)) sessions.set(secret, (await consoleSignIn(web.baseUrl, secret)).cookie);
  return sessions.get(secret)!;
}

async function page(
  path: string,
  secret = token,
  extraCookie = '',
): Promise<{ status: number; body: string; location: string | null }> {
  const res = await fetch(`${web.baseUrl}${path}`, {
    headers: { cookie: `${await cookieFor(secret)}${extraCookie ? `; ${extraCookie}` : ''}` },
    redirect: 'manual',
  });
  return { status: res.status, body: await res.text(), location: res.headers.get('location') };
}

async function post(path: string, form: Record<string, string>, secret = token) {
  const res = await fetch(`${web.baseUrl}${path}`, {
    method: 'POST',
    headers: { cookie: await cookieFor(secret), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
    redirect: 'manual',
  });
  // The notice a redirect leaves for the next page rides in a cookie, as a browser would send it.
  const flash = res.headers.getSetCookie().find((c) => c.startsWith('tasker_flash='));
  return {
    status: res.status,
    body: await res.text(),
    location: res.headers.get('location'),
    flashCookie: flash?.split(';')[0] ?? '',
  };
}

const ENTITIES: Record<string, string> = {
  '&lt;': '<',
  '&gt;': '>',
  '&quot;': '"',
  '&#39;': "'",
  '&amp;': '&',
};
function textOf(markup: string): string {
  return markup
    .replace(/<[^>]+>/g, ' ')
    .replace(/&(lt|gt|quot|#39|amp);/g, (e) => ENTITIES[e]!)
    .replace(/\s+/g, ' ')
    .trim();
}
function byId(markup: string, id: string): string {
  const m = new RegExp(`<(\\w+)[^>]*\\bid="${id}"[^>]*>([\\s\\S]*?)</\\1>`).exec(markup);
  if (!m) throw new Error(`no element #${id} in:\n${textOf(markup).slice(0, 2000)}`);
  return textOf(m[2]!);
}
function rowsOf(markup: string, attr: 'data-group' | 'data-entry'): string[] {
  return [...markup.matchAll(new RegExp(`<tr ${attr}="([^"]+)"`, 'g'))].map((m) => m[1]!);
}
function hidden(markup: string, name: string): string {
  const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(markup);
  if (!m) throw new Error(`no field ${name}`);
  return m[1]!;
}

async function storm(n: number, step = 'charge') {
  const entries: string[] = [];
  for (let i = 0; i < n; i++) {
    const { entry } = await failingEntry(db.pool, {
      template: shop,
      step,
      error: { message: `card declined for order ${7000 + i}`, error_type: 'PaymentError' },
      at: now,
      minutesAgo: 20 + i * 30,
    });
    entries.push(entry);
  }
  await enrichAll(db.pool, entries, now);
  return { entries, fingerprint: (await fingerprintOf(db.pool, entries[0]!))! };
}

describe('the queue opens on groups', () => {
  it('most pending first, each with its count, trend, template and shared diagnosis; entries in no group counted, linked; the switch keeps the filters', async () => {
    const big = await storm(4);
    const small = await storm(1, 'capture');
    await insertDlqEntry(db.pool, {
      task: await insertTask(db.pool, { template: shop, state: 'error', enteredAt: hoursBefore(now, 1) }),
      reason: 'staleness_timeout',
      at: hoursBefore(now, 1),
      namespace: 'shop',
      taskName: 'order',
    });
    const { status, body } = await page('/');
    expect(status).toBe(200);
    expect(rowsOf(body, 'data-group')).toEqual([big.fingerprint, small.fingerprint]);
    expect(byId(body, 'groups-total')).toBe('2');
    expect(byId(body, 'groups-pending')).toBe('5');
    const row = textOf(new RegExp(`<tr data-group="${big.fingerprint}">([\\s\\S]*?)</tr>`).exec(body)![1]!);
    expect(row).toContain('4');
    expect(row).toContain('blocked at charge (PaymentError: card declined for order <n>)');
    expect(row).toContain('max_retries_exceeded');
    expect(row).toContain('shop/order 0.1.0');
    expect(row).toMatch(/pending 0 → 4 over 24 h \(peak 4\); 4 opened, 0 resolved/);
    expect(body).toContain(`href="/groups/${big.fingerprint}"`);
    expect(byId(body, 'ungrouped')).toContain('1 pending entry is in no group yet');
    expect(body).toContain('href="/?view=entries"');

    // The switch keeps the filters; single entries are the old queue.
    const filtered = await page('/?namespace=shop&reason=max_retries_exceeded');
    expect(filtered.body).toContain(
      'href="/?reason=max_retries_exceeded&amp;namespace=shop&amp;view=entries"',
    );
    const entries = await page('/?namespace=shop&view=entries');
    expect(entries.status).toBe(200);
    expect(rowsOf(entries.body, 'data-entry')).toHaveLength(6);
    expect(entries.body).toContain('<input type="hidden" name="view" value="entries">');
    expect(entries.body).toContain('href="/?namespace=shop" id="view-groups"');
    // The rows refresh in place, filters and all.
    const rows = await page('/groups/rows?reason=max_retries_exceeded');
    expect(rowsOf(rows.body, 'data-group')).toEqual([big.fingerprint, small.fingerprint]);
    expect(rowsOf((await page('/groups/rows?reason=manual_dlq')).body, 'data-group')).toEqual([]);
    expect(byId((await page('/?view=lists')).body, 'filter-problem')).toContain(
      'view "lists": expected groups or entries',
    );
  });
});

describe("a group's page", () => {
  it('what its entries share, its counts and hours, a page of its entries; each entry page links to its group', async () => {
    const { entries, fingerprint } = await storm(3);
    const { status, body } = await page(`/groups/${fingerprint}`);
    expect(status).toBe(200);
    expect(byId(body, 'group-diagnosis')).toBe(
      'blocked at charge (PaymentError: card declined for order <n>)',
    );
    expect(byId(body, 'group-pending')).toBe('3');
    expect(byId(body, 'group-resolved')).toBe('0');
    expect(byId(body, 'group-blocking')).toBe('charge : PaymentError: card declined for order <n>');
    expect(byId(body, 'group-trend-words')).toBe('pending 0 → 3 over 24 h (peak 3); 3 opened, 0 resolved');
    // Longest waiting first (entries[i] opened 20 + 30 i minutes ago).
    expect(rowsOf(body, 'data-entry')).toEqual([entries[2], entries[1], entries[0]]);
    const entry = await page(`/dlq/${entries[0]}`);
    expect(byId(entry.body, 'entry-group')).toBe(
      'blocked at charge (PaymentError: card declined for order <n>) (3 pending, 0 resolved)',
    );
    expect(entry.body).toContain(`href="/groups/${fingerprint}"`);
    expect((await page(`/groups/${'a'.repeat(32)}`)).status).toBe(404);
    expect((await page('/groups/nope')).status).toBe(404);
  });
});

describe('Resolve all in this group', () => {
  it("the count is the API's dry run; resolving leaves the queue without the group, one audit row; a group changed meanwhile is refused with the notes kept", async () => {
    const target = await storm(5);
    const other = await storm(2, 'capture');
    // The group page offers it; the preview (the set's ids read) comes when asked for.
    expect((await page(`/groups/${target.fingerprint}`)).body).toContain(
      `href="/groups/${target.fingerprint}?resolve=1#all-h" id="resolve-all-preview"`,
    );
    const groupPage = await page(`/groups/${target.fingerprint}?resolve=1`);
    expect(byId(groupPage.body, 'resolve-all-count')).toBe('5');
    const api = await web.request('POST', '/v1/dlq/bulk-resolve', {
      token,
      body: { filter: { group: target.fingerprint }, resolution_status: 'cancelled', resolution_notes: 'x' },
    });
    expect(api.body.matched).toBe(5);
    expect(hidden(groupPage.body, 'expected_fingerprint')).toBe(api.body.fingerprint);
    const form = {
      _csrf: hidden(groupPage.body, '_csrf'),
      expected_fingerprint: hidden(groupPage.body, 'expected_fingerprint'),
      expected_matched: hidden(groupPage.body, 'expected_matched'),
      status: 'permanently_failed',
      notes: 'Processor outage 02:10-03:05; orders voided upstream.',
    };

    // Another entry of the cause arrives after the preview: nothing is resolved, the notes stay.
    const late = await storm(1);
    expect(late.fingerprint).toBe(target.fingerprint);
    const refused = await post(`/groups/${target.fingerprint}/resolve`, form);
    expect(refused.status).toBe(409);
    expect(byId(refused.body, 'flash')).toContain('6 match now, not the 5 previewed; nothing was resolved');
    expect(refused.body).toContain('Processor outage 02:10-03:05; orders voided upstream.</textarea>');
    expect(byId(refused.body, 'resolve-all-count')).toBe('6');
    expect(await auditRows(db.pool, 'dlq.bulk_resolve')).toHaveLength(0);

    const applied = await post(`/groups/${target.fingerprint}/resolve`, {
      ...form,
      expected_fingerprint: hidden(refused.body, 'expected_fingerprint'),
      expected_matched: hidden(refused.body, 'expected_matched'),
    });
    expect(applied.status).toBe(303);
    expect(applied.location).toBe('/');
    const queue = await page('/', token, applied.flashCookie);
    expect(byId(queue.body, 'flash')).toMatch(
      /^Resolved all 6 pending entries of “blocked at charge \(PaymentError: card declined for order <n>\)” as permanently_failed \(audit row \d+\)\.$/,
    );
    expect(rowsOf(queue.body, 'data-group')).toEqual([other.fingerprint]);
    const audit = await auditRows(db.pool, 'dlq.bulk_resolve');
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({
      actor: 'ops',
      actor_kind: 'console',
      details: { group: target.fingerprint, resolved: 6 },
    });
    expect(byId((await page(`/groups/${target.fingerprint}`)).body, 'resolve-all-none')).toBe(
      'No pending entry is left in this group.',
    );
    expect(await groupCountsDrift(db.pool)).toEqual([]);
  });

  it('a resolution of more entries than a page lists names the first 100 on the audit and bulk pages, says how many, and the API keeps them all', async () => {
    const { entries, fingerprint } = await storm(103);
    const auditor = await tokenWith(db.pool, 'auditor', ['dlq:read', 'dlq:update', 'audit:read']);
    const done = await web.request('POST', '/v1/dlq/bulk-resolve', {
      token: auditor,
      body: {
        filter: { group: fingerprint },
        resolution_status: 'cancelled',
        resolution_notes: 'x',
        dry_run: false,
      },
    });
    expect(done.body).toMatchObject({ resolved: 103 });
    const auditPage = (await page('/audit', auditor)).body;
    const listed = [...auditPage.matchAll(/<li><a href="\/dlq\/([0-9a-f-]{36})">/g)].map((m) => m[1]!);
    expect(listed).toHaveLength(100);
    expect(entries).toEqual(expect.arrayContaining(listed));
    expect(textOf(auditPage)).toContain(
      'The first 100 of the 103 entries (all of them: tasker-lifecycle audit --json, or GET /v1/audit)',
    );
    const bulk = (await page(`/bulk?result=${done.body.audit_id}`, auditor)).body;
    expect(
      byId(bulk, 'bulk-resolved')
        .split(' ')
        .filter((w) => /^[0-9a-f-]{36}$/.test(w)),
    ).toHaveLength(100);
    const api = await web.request('GET', '/v1/audit?limit=5', { token: auditor });
    const row = api.body.find((r: { action: string }) => r.action === 'dlq.bulk_resolve');
    expect([...row.details.dlq_entry_uuids].sort()).toEqual([...entries].sort());
  });

  it('a token without dlq:update sees no form, and its POST is refused with nothing changed', async () => {
    const { fingerprint } = await storm(2);
    const body = (await page(`/groups/${fingerprint}`, reader)).body;
    expect(body).not.toContain(`action="/groups/${fingerprint}/resolve"`);
    expect(body).toContain('lacks dlq:update');
    const forged = await post(
      `/groups/${fingerprint}/resolve`,
      {
        _csrf: 'x',
        status: 'cancelled',
        notes: 'x',
        expected_fingerprint: 'a'.repeat(64),
        expected_matched: '2',
      },
      reader,
    );
    expect(forged.status).toBe(403);
    const { rows } = await db.pool.query(
      `SELECT count(*)::integer AS n FROM tasker_tasks_dlq WHERE resolution_status = 'pending'`,
    );
    expect(rows[0].n).toBe(2);
  });
});
