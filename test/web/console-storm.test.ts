/**
 * The console shows a stale storm while it lasts (issue 20), served by a real `web` process: each
 * entry's enrichment on the queue and entry pages in `dlq show`'s words (failing with its next
 * attempt, given up with its last error, enriched after failed attempts, awaiting), and the
 * Staleness page's storm panel with the figures `status` shows for the same rows
 * (test/helpers/storm.ts) plus tasks placed either side of each default threshold, its drain
 * only to a token that may read the jobs.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { databaseNow } from '../../src/db/queries/server.ts';
import { formatTime } from '../../src/web/console/html.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { insertTask, minutesBefore } from '../helpers/factories.ts';
import { placeStorm, STORM_ERROR, type StormRows } from '../helpers/storm.ts';
import { consoleSignIn, installBoss, startWeb, tokenWith, type WebProcess } from './web-process.ts';

const db = useTestDatabase();
let web: WebProcess;
let now: Date;
let storm: StormRows;
const tokens: Record<'all' | 'noJobs' | 'readOnly', string> = { all: '', noJobs: '', readOnly: '' };

beforeAll(async () => {
  await installBoss(db.url);
  web = await startWeb(db.url);
  // The default thresholds the storm's tasks are placed around (migrate wrote the test
  // configuration's; these are the base configuration's).
  await db.pool.query(
    `UPDATE tasker_lifecycle_settings
        SET waiting_for_dependencies_minutes = 60, waiting_for_retry_minutes = 30, steps_in_process_minutes = 30,
            task_max_lifetime_hours = 24`,
  );
  now = await databaseNow(db.pool);
  storm = await placeStorm(db.pool, now);
  // Either side of each default threshold: a minute past it (stale, waiting for detection) and a
  // minute short of it (not yet). A state without a setting of its own (pending) has 1440 minutes.
  for (const [state, threshold] of [
    ['waiting_for_retry', 30],
    ['waiting_for_dependencies', 60],
    ['pending', 1440],
  ] as const) {
    for (const minutes of [threshold + 1, threshold - 1])
      await insertTask(db.pool, { template: storm.template, state, enteredAt: minutesBefore(now, minutes) });
  }
  tokens.all = await tokenWith(db.pool, 'night', ['dlq:read', 'dlq:stats', 'jobs:read']);
  tokens.noJobs = await tokenWith(db.pool, 'stats', ['dlq:read', 'dlq:stats']);
  tokens.readOnly = await tokenWith(db.pool, 'reader', ['dlq:read']);
}, 60_000);
afterAll(async () => {
  await web?.stop();
});

const sessions = new Map<string, string>();

/** A console page as a browser signed in with this token gets it (one session per token). */
async function page(path: string, token = tokens.all): Promise<{ status: number; body: string }> {
  if (!sessions.has(token)) sessions.set(token, (await consoleSignIn(web.baseUrl, token)).cookie);
  const res = await fetch(`${web.baseUrl}${path}`, {
    headers: { cookie: sessions.get(token)! },
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
    const { status, body } = await page('/?view=entries');
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

describe('the storm panel', () => {
  const figures = (markup: string) =>
    Object.fromEntries(
      ['stale-waiting', 'detected', 'awaiting', 'retrying', 'given-up', 'enriched'].map((k) => [
        k,
        byId(markup, `storm-${k}`),
      ]),
    );

  it("shows on the Staleness page the storm's backlogs, counted either side of the thresholds, and the drain of the last 5 minutes", async () => {
    const { status, body } = await page('/staleness');
    expect(status).toBe(200);
    expect(figures(body)).toEqual({
      // 3 of the storm (120 to 122 minutes in steps_in_process) and 3 a minute past their
      // threshold; the 4 a minute short of theirs, and the fresh one, are not waiting.
      'stale-waiting': '6 (longest 1 d 0 h in its state)',
      detected: '600 tasks in the last 5 minutes (2/s), by 1 run',
      awaiting: '2 (oldest 30 min)',
      retrying: '2 (1 due now)',
      'given-up': '1 failed for good: only the detection snapshot is there',
      enriched: '300 entries in the last 5 minutes (1/s), by 2 runs',
    });
    expect(byId(body, 'storm')).toContain(
      'counted among the 100,000 in-flight tasks longest in their state, so at most 100,000',
    );
    // The panel comes first, and refreshes itself from /staleness/storm, which says the same.
    expect(body.indexOf('id="storm"')).toBeLessThan(body.indexOf('id="staleness"'));
    expect(body).toContain('data-refresh-url="/staleness/storm"');
    const live = await page('/staleness/storm');
    expect(live.status).toBe(200);
    expect(figures(live.body)).toEqual(figures(body));
  });

  it('shows the drain only to a token that may read the jobs, and nothing to one without dlq:stats', async () => {
    const noJobs = await page('/staleness', tokens.noJobs);
    expect(noJobs.status).toBe(200);
    expect(figures(noJobs.body)).toMatchObject({
      'stale-waiting': '6 (longest 1 d 0 h in its state)',
      awaiting: '2 (oldest 30 min)',
      detected: 'shown with the permission jobs:read, which your token lacks',
      enriched: 'shown with the permission jobs:read, which your token lacks',
    });
    for (const path of ['/staleness', '/staleness/storm']) {
      const refused = await page(path, tokens.readOnly);
      expect(refused.status).toBe(403);
      expect(refused.body).toContain('lacks the permission dlq:stats');
      expect(refused.body).not.toContain('storm-awaiting');
    }
  });
});
