/**
 * The console shows a stale storm while it lasts (issue 20), served by a real `web` process: each
 * entry's enrichment on the queue and entry pages in `dlq show`'s words (failing with its next
 * attempt, given up with its last error, enriched after failed attempts, awaiting), for the rows
 * of the storm `status` is tested with (test/helpers/storm.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { databaseNow } from '../../src/db/queries/server.ts';
import { formatTime } from '../../src/web/console/html.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { minutesBefore } from '../helpers/factories.ts';
import { placeStorm, STORM_ERROR, type StormRows } from '../helpers/storm.ts';
import { installBoss, startWeb, tokenWith, type WebProcess } from './web-process.ts';

const db = useTestDatabase();
let web: WebProcess;
let now: Date;
let storm: StormRows;
const tokens: Record<'all', string> = { all: '' };

beforeAll(async () => {
  await installBoss(db.url);
  web = await startWeb(db.url);
  now = await databaseNow(db.pool);
  storm = await placeStorm(db.pool, now);
  tokens.all = await tokenWith(db.pool, 'night', ['dlq:read', 'dlq:stats', 'jobs:read']);
}, 60_000);
afterAll(async () => {
  await web?.stop();
});

/** A console page as a signed-in browser gets it (the session cookie holds the token). */
async function page(path: string, token = tokens.all): Promise<{ status: number; body: string }> {
  const res = await fetch(`${web.baseUrl}${path}`, {
    headers: { cookie: `tasker_session=${token}` },
    redirect: 'manual',
  });
  return { status: res.status, body: await res.text() };
}

const ENTITIES: Record<string, string> = {
  '&lt;': '<',
  '&gt;': '>',
  '&quot;': '"',
  '&#39;': "'",
  '&amp;': '&',
};

/** What a reader sees of some markup: its text, tags as spaces, entities decoded, spaces collapsed. */
function textOf(markup: string): string {
  return markup
    .replace(/<[^>]+>/g, ' ')
    .replace(/&(lt|gt|quot|#39|amp);/g, (e) => ENTITIES[e]!)
    .replace(/\s+/g, ' ')
    .trim();
}

/** The text of the element with this id. */
function byId(markup: string, id: string): string {
  const m = new RegExp(`<(\\w+)[^>]*\\bid="${id}"[^>]*>([\\s\\S]*?)</\\1>`).exec(markup);
  if (!m) throw new Error(`no element #${id} in:\n${textOf(markup).slice(0, 2000)}`);
  return textOf(m[2]!);
}

/** The text of the queue's row of this entry. */
function queueRow(markup: string, entry: string): string {
  const m = new RegExp(`<tr data-entry="${entry}">([\\s\\S]*?)</tr>`).exec(markup);
  if (!m) throw new Error(`no queue row for ${entry}`);
  return textOf(m[1]!);
}

describe("an entry's enrichment", () => {
  it('the queue shows failing with the next attempt, given up, enriched after failed attempts, and awaiting, in each row', async () => {
    const { status, body } = await page('/');
    expect(status).toBe(200);
    const e = storm.entries;
    expect(queueRow(body, e.retryingLater)).toContain(
      `enrichment failing 2 of 8 attempt(s) failed; next attempt at ${formatTime(storm.nextAttemptAt)}`,
    );
    expect(queueRow(body, e.retryingDue)).toMatch(
      /enrichment failing 1 of 8 attempt\(s\) failed; next attempt at /,
    );
    expect(queueRow(body, e.givenUp)).toContain(
      'enrichment given up 8 of 8 attempt(s) failed; not tried again',
    );
    const enriched = queueRow(body, e.enriched);
    expect(enriched).toContain('step charge is out of retries enriched after 2 failed attempt(s)');
    for (const row of [e.retryingLater, e.givenUp, e.enriched])
      expect(queueRow(body, row)).not.toContain('awaiting');
    for (const row of e.awaiting) expect(queueRow(body, row)).toContain('awaiting enrichment');
    // The rows the page fetches again every 10 s say the same.
    const rows = await page('/queue/rows');
    expect(queueRow(rows.body, e.retryingLater)).toBe(queueRow(body, e.retryingLater));
  });

  it('the entry page says near its top that enrichment is failing: attempts, when the next is, the last error', async () => {
    const { status, body } = await page(`/dlq/${storm.entries.retryingLater}`);
    expect(status).toBe(200);
    const failedAt = formatTime(minutesBefore(now, 3));
    expect(byId(body, 'enrichment-state')).toBe(
      `Enrichment: failing: 2 of 8 attempt(s) failed, last at ${failedAt}; next attempt at ${formatTime(storm.nextAttemptAt)}; last error (${STORM_ERROR.code}): ${STORM_ERROR.message}`,
    );
    // Before the entry's facts, the diagnosis and the resolve form.
    expect(body.indexOf('id="enrichment-state"')).toBeLessThan(body.indexOf('<dl class="kv card">'));
    expect(textOf(body)).toContain('Not enriched: its enrichment is failing and will be tried again');
    expect(textOf(body)).not.toContain('shortly after detection');
  });

  it('the entry page of one given up says failed for good, with the last error, and that it is not tried again', async () => {
    const { body } = await page(`/dlq/${storm.entries.givenUp}`);
    expect(body).toMatch(/<p class="notice error" id="enrichment-state"/);
    expect(byId(body, 'enrichment-state')).toBe(
      `Enrichment: failed for good: 8 of 8 attempt(s) failed, last at ${formatTime(minutesBefore(now, 3))}; not tried again (only the detection snapshot is there); last error (${STORM_ERROR.code}): ${STORM_ERROR.message}`,
    );
    expect(textOf(body)).toContain('Not enriched: enrichment failed for good');
  });

  it('the entry page of one enriched after failed attempts says so, and nothing of awaiting', async () => {
    const { body } = await page(`/dlq/${storm.entries.enriched}`);
    expect(byId(body, 'enrichment-state')).toBe(`enriched ${formatTime(now)} after 2 failed attempt(s)`);
    expect(byId(body, 'diagnosis-summary')).toBe('step charge is out of retries');
    expect(textOf(body)).not.toMatch(/awaiting|not enriched/i);
  });

  it('the entry page of one never tried says it awaits enrichment', async () => {
    const { body } = await page(`/dlq/${storm.entries.awaiting[0]}`);
    expect(byId(body, 'enrichment-state')).toBe(
      'Enrichment: not enriched yet: the request of its detection batch or the next sweep enriches it',
    );
  });
});
