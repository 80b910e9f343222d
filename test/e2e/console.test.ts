/**
 * The web console in headless Chromium: sign in (with the keyboard), the queue and its filters in
 * the URL, an entry's diagnosis, graph and timeline, resolving it and seeing it leave the queue; a
 * token without dlq:update sees no resolve form and a forged POST is refused. axe-core checks every
 * page (no serious or critical violations) at 1280 px and at a phone's width; screenshots go to
 * artifacts/console/. Bounded: one browser, one database, well under a minute.
 */

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import archiveFinishedTasks from '../../jobs/archive-finished-tasks.ts';
import detectStaleTasks from '../../jobs/detect-stale-tasks.ts';
import { ConfigSchema } from '../../src/config/schema.ts';
import {
  createDemoTask,
  createTroubledDemoTask,
  ensureDemoTemplates,
  markStuck,
} from '../../src/db/queries/demo-engine.ts';
import { enrichEntries } from '../../src/db/queries/dlq-enrichment.ts';
import { insertRun } from '../../src/db/queries/job-runs.ts';
import { databaseNow } from '../../src/db/queries/server.ts';
import { revokeToken } from '../../src/operations/tokens.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { createBoss } from '../../src/worker/boss.ts';
import { deadLetterQueue } from '../../src/worker/worker.ts';
import { insertFinishedGraph } from '../helpers/archive-factories.ts';
import { docsScreenshot, launchChromium, screenshot, seriousAxeViolations } from '../helpers/browser.ts';
import { runCli } from '../helpers/cli-process.ts';
import { type ConsoleHarness, startConsoleHarness } from '../helpers/console-server.ts';
import { defaultLimits, detectAtNow, insertStuckOrder } from '../helpers/enrichment-factories.ts';
import {
  hoursBefore,
  insertDlqEntry,
  insertTask,
  insertTemplate,
  minutesBefore,
  NOW,
} from '../helpers/factories.ts';
import { enrichAll, failingEntry, fingerprintOf } from '../helpers/group-factories.ts';
import { waitFor } from '../helpers/wait.ts';

let h: ConsoleHarness;
let browser: Browser;
let orderEntry: string;
let orderTask: string;
const billingEntries: string[] = [];

beforeAll(async () => {
  h = await startConsoleHarness();
  const order = await insertStuckOrder(h.pool);
  orderTask = order.task;
  // An earlier, resolved investigation of the same task.
  await insertDlqEntry(h.pool, {
    task: order.task,
    reason: 'staleness_timeout',
    status: 'manually_resolved',
    at: hoursBefore(NOW, 48),
    namespace: 'shop',
    taskName: 'order',
  });
  const detected = await detectAtNow(h.pool);
  expect(detected).toHaveLength(1);
  orderEntry = detected[0]!;
  await enrichEntries(h.pool, [orderEntry], defaultLimits());
  const billing = await insertTemplate(h.pool, { namespace: 'billing', name: 'invoice' });
  for (let i = 0; i < 3; i++) {
    const task = await insertTask(h.pool, {
      template: billing,
      state: 'waiting_for_retry',
      enteredAt: hoursBefore(NOW, 3),
    });
    billingEntries.push(
      await insertDlqEntry(h.pool, {
        task,
        reason: 'staleness_timeout',
        at: hoursBefore(NOW, 2 + i),
        namespace: 'billing',
        taskName: 'invoice',
        state: 'waiting_for_retry',
      }),
    );
  }
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await h?.close();
});

async function signIn(context: BrowserContext, secret: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${h.url}/`);
  expect(new URL(page.url()).pathname).toBe('/sign-in');
  // The field takes focus (autofocus, which the browser applies at its next rendering update, not
  // at once: reading activeElement straight after load failed once in a full .ci/run); then type
  // and press Enter, as a keyboard user does.
  await page.waitForFunction("document.activeElement?.id === 'token'", undefined, { timeout: 5000 });
  await expect(page.evaluate<string | undefined>('document.activeElement?.id')).resolves.toBe('token');
  await page.keyboard.type(secret);
  await page.keyboard.press('Enter');
  await page.waitForURL(`${h.url}/`);
  return page;
}

async function expectAccessible(page: Page, name: string): Promise<void> {
  await screenshot(page, name);
  expect(await seriousAxeViolations(page)).toEqual([]);
}

async function isPending(entry: string): Promise<boolean> {
  const { rows } = await h.pool.query(
    `SELECT resolution_status::text AS s FROM tasker_tasks_dlq WHERE dlq_entry_uuid = $1`,
    [entry],
  );
  return rows[0].s === 'pending';
}

describe('an operator with dlq:read and dlq:update', () => {
  it('signs in, filters the queue, reads an entry and resolves it; it leaves the queue', async () => {
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, await h.token('alice', ['dlq:read', 'dlq:update']));
    const cookie = (await context.cookies()).find((c) => c.name === 'tasker_session')!;
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' });

    // The queue opens on groups by cause; the switch shows the entries one by one.
    await page.locator('#view-entries').click();
    await page.waitForURL(`${h.url}/?view=entries`);
    await expect(page.locator('#queue tbody tr[data-entry]').count()).resolves.toBe(4);
    // Most urgent first: the cycle outranks the timeouts.
    await expect(
      page.locator('#queue tbody tr[data-entry]').first().getAttribute('data-entry'),
    ).resolves.toBe(orderEntry);
    await expectAccessible(page, 'queue');

    await page.selectOption('#f-namespace', 'billing');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/namespace=billing/);
    const rows = await page
      .locator('#queue tbody tr[data-entry]')
      .evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-entry')));
    expect(rows.sort()).toEqual([...billingEntries].sort());
    await expect(page.locator('#queue-total').textContent()).resolves.toBe('3');
    await expectAccessible(page, 'queue-filtered');
    // A bad filter value is refused, naming the field; the page comes back with its form.
    const bad = await page.goto(`${h.url}/?min_age_minutes=-5`);
    expect(bad!.status()).toBe(400);
    await expect(page.locator('[role=alert]').textContent()).resolves.toContain('min_age_minutes');
    await page.goto(`${h.url}/?reason=stale&namespace=billing`);
    await expect(page.locator('#filter-problem').textContent()).resolves.toContain(
      'reason "stale": expected one of staleness_timeout, max_retries_exceeded, dependency_cycle_detected, worker_unavailable, manual_dlq',
    );
    await expect(page.getByLabel('Namespace').inputValue()).resolves.toBe('billing');
    await expect(page.getByLabel('Reason').getAttribute('aria-invalid')).resolves.toBe('true');
    await expectAccessible(page, 'queue-bad-filter');

    await page.goto(`${h.url}/?namespace=shop&view=entries`);
    await page.locator(`a[href="/dlq/${orderEntry}"]`).click();
    await page.waitForURL(`${h.url}/dlq/${orderEntry}`);
    const summary = await page.locator('#diagnosis-summary').textContent();
    expect(summary).toMatch(/cycle/i);
    const graph = page.locator('figure.graph svg');
    await expect(graph.locator('g.node').count()).resolves.toBe(9);
    await expect(graph.locator('g.node.blocking').count()).resolves.toBeGreaterThan(0);
    await expect(
      graph.locator('g.node.on-cycle').evaluateAll((gs) => gs.map((g) => g.getAttribute('data-step')).sort()),
    ).resolves.toEqual(['audit_a', 'audit_b']);
    await expect(graph.locator('g.node[data-step="charge"]').getAttribute('data-state')).resolves.toBe(
      'error',
    );
    await expect(page.locator('#timeline li').count()).resolves.toBeGreaterThan(10);
    await expect(page.locator('#steps').textContent()).resolves.toContain('card declined');
    expect(await page.getByText('max_steps_in_process_minutes', { exact: true }).isVisible()).toBe(true);
    expect(await page.getByText('manually_resolved by fixture').isVisible()).toBe(true);
    expect(await page.getByText(orderTask).isVisible()).toBe(true);
    await expectAccessible(page, 'entry');

    await page.getByLabel('Status').selectOption('manually_resolved');
    await page.getByLabel('Notes').fill('Broke the audit_a/audit_b cycle in the template; re-ran charge.');
    await page.getByRole('button', { name: 'Resolve' }).click();
    await page.waitForURL(`${h.url}/dlq/${orderEntry}`);
    await expect(page.locator('#flash').textContent()).resolves.toBe('Resolved as manually_resolved.');
    // Who resolved it: the token signed in, by name and id.
    await expect(page.locator('#resolved-by').textContent()).resolves.toMatch(
      /^alice \(token [0-9a-f]{16}\)$/,
    );
    await expect(page.locator('#entry-status').textContent()).resolves.toBe('manually_resolved');
    await expect(page.getByRole('button', { name: 'Resolve' }).count()).resolves.toBe(0);
    await expectAccessible(page, 'entry-resolved');
    expect(await isPending(orderEntry)).toBe(false);
    const audit = await h.pool.query(
      `SELECT actor, actor_kind, action FROM tasker_audit_log WHERE target_id = $1`,
      [orderEntry],
    );
    expect(audit.rows).toEqual([{ actor: 'alice', actor_kind: 'console', action: 'dlq.resolve' }]);

    await page.goto(`${h.url}/?view=entries`);
    await expect(page.locator(`#queue tr[data-entry="${orderEntry}"]`).count()).resolves.toBe(0);
    await expect(page.locator('#queue-total').textContent()).resolves.toBe('3');
    await context.close();
  });

  it('the queue updates itself: an entry resolved elsewhere disappears without a reload', async () => {
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, await h.token('bob', ['*']));
    const target = billingEntries[0]!;
    await page.goto(`${h.url}/?view=entries`);
    await expect(page.locator(`#queue tr[data-entry="${target}"]`).count()).resolves.toBe(1);
    await h.pool.query(
      `UPDATE tasker_tasks_dlq SET resolution_status = 'cancelled', resolved_by = 'elsewhere', resolution_timestamp = now() WHERE dlq_entry_uuid = $1`,
      [target],
    );
    await page.locator(`#queue tr[data-entry="${target}"]`).waitFor({ state: 'detached', timeout: 15_000 });
    await expect(page.locator('#live-status').textContent()).resolves.toMatch(/Updated/);
    await context.close();
  });

  it('works with the keyboard alone: skip link, an entry opened with Enter, the resolve form reached with Tab', async () => {
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, await h.token('kim', ['dlq:read', 'dlq:update']));
    await page.goto(`${h.url}/?view=entries`);
    const focused = () =>
      page.evaluate<string>(
        "(() => { const e = document.activeElement; return e ? e.tagName + ' ' + (e.getAttribute('href') || e.id || '') : ''; })()",
      );
    await page.keyboard.press('Tab');
    expect(await focused()).toBe('A #main');
    await page.keyboard.press('Enter');
    const tabUntil = async (match: RegExp) => {
      for (let i = 0; i < 40; i++) {
        await page.keyboard.press('Tab');
        const now = await focused();
        if (match.test(now)) return now;
      }
      throw new Error(`never reached ${match} with Tab`);
    };
    const link = await tabUntil(/^A \/dlq\//);
    await page.keyboard.press('Enter');
    await page.waitForURL(`${h.url}${link.slice(2)}`);
    await tabUntil(/^TEXTAREA r-notes$/);
    await context.close();
  });

  it('works at a phone width', async () => {
    const context = await browser.newContext({
      bypassCSP: true,
      viewport: { width: 390, height: 844 },
      isMobile: true,
    });
    const page = await signIn(context, await h.token('carol', ['dlq:read']));
    // The groups (the queue as it opens), then the single entries.
    for (const [view, table] of [
      ['', '#groups'],
      ['?view=entries', '#queue'],
    ] as const) {
      await page.goto(`${h.url}/${view}`);
      await expectAccessible(page, view ? 'queue-phone' : 'groups-phone');
      const overflow = await page.evaluate<number>(
        'document.documentElement.scrollWidth - window.innerWidth',
      );
      expect(overflow).toBeLessThanOrEqual(0);
      // A cell's badges stay beside its label, in the cell's content, not under the label.
      const misplaced = await page.evaluate<number>(
        `Array.from(document.querySelectorAll('${table} td .badge')).filter((b) => b.getBoundingClientRect().left < b.closest('td').getBoundingClientRect().left + 100).length`,
      );
      expect(misplaced).toBe(0);
    }
    await page.goto(`${h.url}/dlq/${orderEntry}`);
    await expectAccessible(page, 'entry-phone');
    // Nothing sticks out of the page; the graph keeps its natural size and scrolls in its frame.
    expect(
      await page.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth'),
    ).toBeLessThanOrEqual(0);
    const graph = await page.evaluate<{
      drawn: number;
      natural: number;
      frame: number;
      scroll: number;
    }>(`(() => {
      const svg = document.querySelector('figure.graph svg');
      const figure = document.querySelector('figure.graph');
      return { drawn: svg.getBoundingClientRect().width, natural: Number(svg.getAttribute('width')),
               frame: figure.clientWidth, scroll: figure.scrollWidth };
    })()`);
    expect(graph.drawn).toBe(graph.natural);
    expect(graph.scroll).toBeGreaterThan(graph.frame);
    // Long keys wrap inside the card; badges keep their own width.
    const keys = await page.evaluate<number>(
      "Array.from(document.querySelectorAll('dl.kv dt, dl.kv dd')).filter((e) => e.scrollWidth > e.clientWidth + 1).length",
    );
    expect(keys).toBe(0);
    // A badge is as wide as its text and padding, never stretched to its cell.
    const stretched =
      await page.evaluate<number>(`Array.from(document.querySelectorAll('.badge')).filter((b) => {
      const r = document.createRange(); r.selectNodeContents(b);
      return b.getBoundingClientRect().width - r.getBoundingClientRect().width > 24;
    }).length`);
    expect(stretched).toBe(0);
    // Steps: the failed one first, then in dependency order.
    const steps = await page
      .locator('#steps tbody tr')
      .evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-step')));
    expect(steps.slice(0, 2)).toEqual(['refund', 'charge']); // both failed; refund has no predecessor
    expect(steps.indexOf('fetch')).toBeLessThan(steps.indexOf('validate'));
    expect(steps.indexOf('validate')).toBeLessThan(steps.indexOf('ship'));
    await context.close();
  });
});

it('the accessibility check finds what it is there to find (an unlabelled field, an image without text)', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.setContent(
    '<!doctype html><html lang="en"><title>t</title><main><input type="text"><img src="x.png"></main></html>',
  );
  const ids = (await seriousAxeViolations(page)).map((v) => v.id).sort();
  expect(ids).toEqual(expect.arrayContaining(['image-alt', 'label']));
  await context.close();
});

it('staleness: per template healthy, warning and stale counts, and the tasks nearest their threshold', async () => {
  // Either side of the waiting_for_dependencies threshold in force (warning from 80%); the view
  // measures against now(), so the tasks are placed relative to the database's clock.
  const { rows } = await h.pool.query<{ threshold: number; now: Date }>(
    'SELECT waiting_for_dependencies_minutes AS threshold, now() FROM tasker_lifecycle_settings',
  );
  const { threshold, now } = rows[0]!;
  const reports = await insertTemplate(h.pool, { namespace: 'reports', name: 'nightly' });
  const at = (fraction: number) => new Date(now.getTime() - fraction * threshold * 60_000);
  const place = (fraction: number) =>
    insertTask(h.pool, {
      template: reports,
      state: 'waiting_for_dependencies',
      enteredAt: at(fraction),
      createdAt: new Date(at(fraction).getTime() - 60_000),
    });
  const healthy = await place(0.1);
  const warning = await place(0.9);
  await place(2);
  const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
  const page = await signIn(context, await h.token('dana', ['dlq:read', 'dlq:stats']));
  await page.getByRole('link', { name: 'Staleness' }).click();
  await page.waitForURL(`${h.url}/staleness`);
  const cells = await page
    .locator('#staleness tr[data-template="reports/nightly"] td')
    .evaluateAll((tds) => tds.map((td) => td.textContent?.trim()));
  expect(cells.slice(0, 4)).toEqual(['reports/nightly', '1', '1', '1']);
  const nearest = await page
    .locator('#nearest tbody tr')
    .evaluateAll((trs) => trs.map((tr) => tr.textContent ?? ''));
  expect(nearest[0]).toContain(warning);
  expect(nearest[1]).toContain(healthy);
  await expectAccessible(page, 'staleness');
  // A token without dlq:stats has no link and gets 403.
  const readerContext = await browser.newContext();
  const reader = await signIn(readerContext, await h.token('erin', ['dlq:read']));
  await expect(reader.getByRole('link', { name: 'Staleness' }).count()).resolves.toBe(0);
  expect((await reader.goto(`${h.url}/staleness`))!.status()).toBe(403);
  await readerContext.close();
  await context.close();
});

describe('a token without dlq:update', () => {
  it('sees no resolve form, and a forged POST is refused with nothing changed', async () => {
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, await h.token('reader', ['dlq:read']));
    const target = billingEntries[1]!;
    await page.goto(`${h.url}/dlq/${target}`);
    await expect(page.getByRole('button', { name: 'Resolve' }).count()).resolves.toBe(0);
    await expect(page.getByLabel('Notes').count()).resolves.toBe(0);
    expect(await page.getByText('lacks dlq:update').isVisible()).toBe(true);
    await expectAccessible(page, 'entry-read-only');

    const cookie = (await context.cookies()).find((c) => c.name === 'tasker_session')!;
    const post = (body: Record<string, string>, withCookie = true) =>
      fetch(`${h.url}/dlq/${target}/resolve`, {
        method: 'POST',
        redirect: 'manual',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          ...(withCookie ? { cookie: `tasker_session=${cookie.value}` } : {}),
        },
        body: new URLSearchParams(body).toString(),
      });
    // Without the CSRF value, with a made-up one, and without a session at all.
    expect((await post({ status: 'cancelled', notes: 'forged' })).status).toBe(403);
    expect((await post({ _csrf: 'x'.repeat(43), status: 'cancelled', notes: 'forged' })).status).toBe(403);
    expect((await post({ status: 'cancelled', notes: 'forged' }, false)).status).toBe(401);
    // Even the page's own CSRF value does not lend a permission the token lacks.
    const csrf = await page.locator('form[action="/sign-out"] input[name=_csrf]').inputValue();
    const refused = await post({ _csrf: csrf, status: 'cancelled', notes: 'forged' });
    expect(refused.status).toBe(403);
    expect(await refused.text()).toContain('lacks the permission dlq:update');
    expect(await isPending(target)).toBe(true);
    await context.close();
  });

  it('a link /sign-in#token=… (as npm start prints) signs in, and the token leaves the address bar', async () => {
    const context = await browser.newContext({ bypassCSP: true });
    const page = await context.newPage();
    await page.goto(`${h.url}/sign-in#token=${await h.token('linked', ['dlq:read'])}`);
    await page.waitForURL(`${h.url}/`);
    await expect(page.locator('header.top .who strong').textContent()).resolves.toBe('linked');
    expect(page.url()).not.toContain('tlk_');
    await context.close();
  });

  it('an unknown token is refused at sign-in', async () => {
    const context = await browser.newContext({ bypassCSP: true });
    const page = await context.newPage();
    await page.goto(`${h.url}/sign-in`);
    await page.getByLabel('Token').fill('tl_not-a-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.locator('[role=alert]').textContent()).resolves.toContain(
      'unknown, expired or revoked',
    );
    await expectAccessible(page, 'sign-in');
    expect((await context.cookies()).some((c) => c.name === 'tasker_session')).toBe(false);
    await context.close();
  });
});

describe('bulk work, jobs, archive and audit', () => {
  it('bulk resolve: the preview count matches the API, "Resolve these 4" resolves them in one action', async () => {
    const batch = await insertTemplate(h.pool, { namespace: 'bulkns', name: 'sync' });
    const entries: string[] = [];
    for (let i = 0; i < 4; i++) {
      const task = await insertTask(h.pool, {
        template: batch,
        state: 'waiting_for_retry',
        enteredAt: hoursBefore(NOW, 5),
      });
      entries.push(
        await insertDlqEntry(h.pool, {
          task,
          reason: 'worker_unavailable',
          at: hoursBefore(NOW, 4 + i),
          namespace: 'bulkns',
          taskName: 'sync',
        }),
      );
    }
    const secret = await h.token('frank', ['dlq:read', 'dlq:update']);
    const api = await fetch(`${h.url}/v1/dlq/bulk-resolve`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        filter: { namespace: 'bulkns', reason: 'worker_unavailable' },
        resolution_status: 'cancelled',
        resolution_notes: 'x',
        dry_run: true,
      }),
    });
    expect(api.status).toBe(200);
    const apiPreview = (await api.json()) as { matched: number };
    expect(apiPreview.matched).toBe(4);

    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, secret);
    await page.getByRole('link', { name: 'Bulk resolve' }).click();
    await page.getByLabel('Namespace').selectOption('bulkns');
    await page.getByLabel('Reason').selectOption('worker_unavailable');
    await page.getByRole('button', { name: 'Preview' }).click();
    await page.waitForURL(/preview=1/);
    await expect(page.locator('#bulk-count').textContent()).resolves.toBe(String(apiPreview.matched));
    const listed = await page
      .locator('#bulk-preview a')
      .evaluateAll((as) => as.map((a) => a.getAttribute('href')));
    expect(listed.sort()).toEqual(entries.map((e) => `/dlq/${e}`).sort());
    await expectAccessible(page, 'bulk-preview');
    await page.getByLabel('Status').selectOption('cancelled');
    await page.getByLabel('Notes').fill('workers were redeployed; the engine re-ran these');
    await page.getByRole('button', { name: 'Resolve these 4' }).click();
    await page.waitForURL(/\/bulk\?result=\d+$/);
    await expect(page.locator('#bulk-outcome h2').textContent()).resolves.toBe('Resolved 4 entries');
    for (const e of entries) expect(await isPending(e)).toBe(false);
    // One action, one audit row, naming the four entries.
    const audit = await h.pool.query<{ actor: string; entries: string[] }>(
      `SELECT actor, details->'dlq_entry_uuids' AS entries FROM tasker_audit_log WHERE action = 'dlq.bulk_resolve'`,
    );
    expect(audit.rows.map((r) => ({ actor: r.actor, entries: [...r.entries].sort() }))).toEqual([
      { actor: 'frank', entries: [...entries].sort() },
    ]);
    await page.goto(`${h.url}/?namespace=bulkns&view=entries`);
    await expect(page.locator('#queue-total').textContent()).resolves.toBe('0');
    await context.close();
  });

  it('jobs: a dead-lettered run shows its error and "Retry" queues it again', async () => {
    const job = detectStaleTasks;
    const config = ConfigSchema.parse({});
    const boss = createBoss(config, h.databaseUrl, 'client', silentLogger());
    await boss.start();
    let deadId: string;
    try {
      const id = await boss.send(job.name, { trigger: 'adhoc', options: {} }, { retryLimit: 0 });
      const [fetched] = await boss.fetch(job.name);
      expect(fetched?.id).toBe(id);
      await boss.fail(job.name, id!, { message: 'connection to the database was lost' });
      const dead = await h.pool.query<{ id: string }>(
        `SELECT id FROM pgboss.job WHERE name = $1 AND state = 'created'`,
        [deadLetterQueue(job)],
      );
      expect(dead.rows).toHaveLength(1);
      deadId = dead.rows[0]!.id;
    } finally {
      await boss.stop({ graceful: false });
    }
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, await h.token('gina', ['dlq:read', 'jobs:read', 'jobs:run']));
    await page.getByRole('link', { name: 'Jobs' }).click();
    const item = page.locator(`li[data-dead="${deadId}"]`);
    await expect(item.locator('.dead-error').textContent()).resolves.toBe(
      'connection to the database was lost',
    );
    await expectAccessible(page, 'jobs');
    await item.getByRole('button', { name: `Retry dead-lettered run ${deadId}` }).click();
    // Answered with a redirect to the new run's own page.
    await page.waitForURL(new RegExp(`/jobs/${job.name}/runs/[0-9a-f-]{36}$`));
    await expect(page.locator('#flash').textContent()).resolves.toMatch(/^Retried dead-lettered run/);
    await expect(page.locator('#run-status').textContent()).resolves.toBe('waiting for a worker');
    await page.goto(`${h.url}/jobs`);
    await expect(page.locator(`li[data-dead="${deadId}"]`).count()).resolves.toBe(0);
    const queued = await h.pool.query(`SELECT state FROM pgboss.job WHERE name = $1 AND state = 'created'`, [
      job.name,
    ]);
    expect(queued.rows).toHaveLength(1);
    const audit = await h.pool.query(`SELECT actor, action FROM tasker_audit_log WHERE target_id = $1`, [
      deadId,
    ]);
    expect(audit.rows).toEqual([{ actor: 'gina', action: 'job.retry' }]);
    // A second run cannot wait beside it: the enqueue form says so.
    await page.getByRole('button', { name: 'Queue detection' }).click();
    await page.waitForURL(`${h.url}/jobs`);
    await expect(page.locator('#flash').textContent()).resolves.toContain('already waiting');
    await context.close();
  });

  it('archive: monthly statistics, look up an archived task and restore it; the audit log shows it', async () => {
    const template = await insertTemplate(h.pool, { namespace: 'archive', name: 'old' });
    const task = await insertFinishedGraph(h.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: new Date(Date.now() - 40 * 86_400_000),
    });
    const archived = await runCli(['archive', '--retention-days', '30'], { DATABASE_URL: h.databaseUrl });
    expect(archived.code).toBe(0);
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(
      context,
      await h.token('hana', ['dlq:read', 'archive:read', 'archive:restore', 'audit:read']),
    );
    await page.getByRole('link', { name: 'Archive' }).click();
    await expect(page.locator('#archive-months tbody tr').count()).resolves.toBeGreaterThan(0);
    await page.getByLabel('Task uuid').fill(task);
    await page.getByRole('button', { name: 'Look up' }).click();
    await expect(page.locator('#archived-task h2').textContent()).resolves.toContain(task);
    // It finished 40 days ago, past the 30-day retention: restoring it says so, and offers a hold.
    await expect(page.locator('#restore-warning').textContent()).resolves.toContain(
      'past the retention of 30 days: the next archival run archives it again',
    );
    await expect(page.getByLabel('Hold out of archival for').inputValue()).resolves.toBe('7');
    await expectAccessible(page, 'archive');
    await page.getByRole('button', { name: 'Restore' }).click();
    await page.waitForURL(`${h.url}/archive?task_uuid=${task}`);
    await expect(page.locator('#flash').textContent()).resolves.toMatch(
      new RegExp(
        `^Restored task ${task} to the live tables; held out of archival until \\S+; the first archival run after that archives it again\\.$`,
      ),
    );
    await expect(page.locator('#task-archival').textContent()).resolves.toMatch(
      /^held out of archival until/,
    );
    await expect(page.locator(`#archive-holds tr[data-task="${task}"]`).count()).resolves.toBe(1);
    await expectAccessible(page, 'archive-held');
    const live = await h.pool.query('SELECT 1 FROM tasker_tasks WHERE task_uuid = $1', [task]);
    expect(live.rows).toHaveLength(1);
    // Archival passes over it while the hold lasts.
    expect((await runCli(['archive', '--retention-days', '30'], { DATABASE_URL: h.databaseUrl })).code).toBe(
      0,
    );
    expect((await h.pool.query('SELECT 1 FROM tasker_tasks WHERE task_uuid = $1', [task])).rows).toHaveLength(
      1,
    );

    await page.getByRole('link', { name: 'Audit log' }).click();
    await page.getByLabel('Actor').fill('hana');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/actor=hana/);
    const actions = await page
      .locator('#audit tbody tr')
      .evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-action')));
    expect(actions).toEqual(['archive.restore']);
    await expectAccessible(page, 'audit');
    await context.close();
  });
});

describe('actions do exactly what the operator was shown (issue 28)', () => {
  async function pendingOf(entries: string[]): Promise<number> {
    const { rows } = await h.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM tasker_tasks_dlq WHERE dlq_entry_uuid = ANY ($1::uuid[]) AND resolution_status = 'pending'`,
      [entries],
    );
    return rows[0]!.n;
  }

  async function entriesIn(namespace: string, name: string, count: number): Promise<string[]> {
    const template = await insertTemplate(h.pool, { namespace, name });
    const out: string[] = [];
    for (let i = 0; i < count; i++) {
      const task = await insertTask(h.pool, {
        template,
        state: 'waiting_for_retry',
        enteredAt: hoursBefore(NOW, 6),
      });
      out.push(
        await insertDlqEntry(h.pool, {
          task,
          reason: 'staleness_timeout',
          at: hoursBefore(NOW, 5 + i),
          namespace,
          taskName: name,
          state: 'waiting_for_retry',
        }),
      );
    }
    return out;
  }

  it('bulk resolve resolves the previewed set only: entries opened after the preview make it refuse, keep the notes and show the new count on the button', async () => {
    const previewed = await entriesIn('exact', 'sync', 7);
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, await h.token('ivan', ['dlq:read', 'dlq:update', 'audit:read']));
    await page.goto(`${h.url}/bulk`);
    await page.getByLabel('Namespace').selectOption('exact');
    await page.getByRole('button', { name: 'Preview' }).click();
    await page.waitForURL(/preview=1/);
    await expect(page.locator('#bulk-count').textContent()).resolves.toBe('7');
    await page.getByLabel('Status').selectOption('cancelled');
    await page.getByLabel('Notes').fill('the sync namespace was drained by hand');
    // A detection run opens two more entries that match the same filter.
    const later = await entriesIn('exact', 'sync_late', 2);
    await page.getByRole('button', { name: 'Resolve these 7' }).click();
    await expect(page.locator('#flash').textContent()).resolves.toBe(
      'Not resolved: the pending entries matching this filter changed since the preview: 9 match now, not the 7 previewed; nothing was resolved (preview again).',
    );
    expect(await pendingOf([...previewed, ...later])).toBe(9);
    // The new preview, with the notes kept and the new count on the button.
    await expect(page.locator('#bulk-count').textContent()).resolves.toBe('9');
    await expect(page.getByLabel('Notes').inputValue()).resolves.toBe(
      'the sync namespace was drained by hand',
    );
    await expect(page.getByLabel('Status').inputValue()).resolves.toBe('cancelled');
    await expectAccessible(page, 'bulk-refused');
    await page.getByRole('button', { name: 'Resolve these 9' }).click();
    await page.waitForURL(/\/bulk\?result=\d+$/);
    await expect(page.locator('#bulk-outcome h2').textContent()).resolves.toBe('Resolved 9 entries');
    expect(await pendingOf([...previewed, ...later])).toBe(0);
    // Reloading the outcome reads it again; nothing more is resolved or recorded.
    await page.reload();
    await page.reload();
    await expect(page.locator('#bulk-outcome h2').textContent()).resolves.toBe('Resolved 9 entries');
    const audit = await h.pool.query(
      `SELECT details->'resolved' AS n FROM tasker_audit_log WHERE action = 'dlq.bulk_resolve' AND actor = 'ivan'`,
    );
    expect(audit.rows).toEqual([{ n: 9 }]);
    await context.close();
  });

  it('queueing a run answers with a redirect to the run, which follows it by itself; reloading it queues nothing', async () => {
    const config = ConfigSchema.parse({});
    const boss = createBoss(config, h.databaseUrl, 'client', silentLogger());
    await boss.start();
    try {
      const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
      const page = await signIn(context, await h.token('jane', ['dlq:read', 'jobs:read', 'jobs:run']));
      await page.goto(`${h.url}/jobs`);
      const form = page.getByRole('form', { name: 'Queue an archival run' });
      // What "Max batches" means, said where it is typed; "This run only" is ticked.
      await expect(form.locator('#a-max-help').textContent()).resolves.toContain(
        'hands the rest on to another run at once',
      );
      await expect(form.getByLabel(/This run only/).isChecked()).resolves.toBe(true);
      await form.getByLabel('Max batches', { exact: true }).fill('3');
      await form.getByLabel(/Dry run/).check();
      const posted = page.waitForResponse((r) => r.request().method() === 'POST');
      await form.getByRole('button', { name: 'Queue archival' }).click();
      expect((await posted).status()).toBe(303);
      await page.waitForURL(new RegExp(`/jobs/${archiveFinishedTasks.name}/runs/[0-9a-f-]{36}$`));
      const runId = page.url().split('/').at(-1)!;
      await expect(page.locator('#flash').textContent()).resolves.toContain('(this run only)');
      await expect(page.locator('#run-status').textContent()).resolves.toBe('waiting for a worker');
      await expectAccessible(page, 'run-waiting');
      for (let i = 0; i < 4; i++) await page.reload();
      const queued = await h.pool.query(`SELECT id, data FROM pgboss.job WHERE name = $1`, [
        archiveFinishedTasks.name,
      ]);
      expect(queued.rows.map((r) => r.id)).toEqual([runId]);
      expect(queued.rows[0].data).toMatchObject({ options: { max_batches: 3, dry_run: true } });
      // Beside the request, not in it: the previous release's workers refuse a field they do not know.
      const extras = await h.pool.query(
        'SELECT extras FROM tasker_run_request_extras WHERE pgboss_job_id = $1',
        [runId],
      );
      expect(extras.rows).toEqual([{ extras: { this_run_only: true } }]);
      const audit = await h.pool.query(
        `SELECT actor FROM tasker_audit_log WHERE action = 'job.enqueue' AND target_id = $1`,
        [runId],
      );
      expect(audit.rows).toEqual([{ actor: 'jane' }]);

      // A worker takes it and finishes: the page shows it without a reload, counts in words.
      const [taken] = await boss.fetch(archiveFinishedTasks.name);
      expect(taken?.id).toBe(runId);
      const counts = {
        dry_run: true,
        batches: 3,
        tasks_archived: 2250,
        rows_archived: 13500,
        stopped_by: 'max_batches',
      };
      await insertRun(h.pool, {
        run_id: randomUUID(),
        job_name: archiveFinishedTasks.name,
        trigger: 'adhoc',
        pgboss_job_id: runId,
        worker: 'e2e',
        started_at: new Date(),
        options: {},
      });
      await h.pool.query(
        `UPDATE tasker_job_runs SET outcome = 'completed', counts = $2, duration_ms = 1200, finished_at = now() WHERE pgboss_job_id = $1`,
        [runId, JSON.stringify(counts)],
      );
      await boss.complete(archiveFinishedTasks.name, runId, counts);
      await page.locator('#run-status', { hasText: 'completed' }).waitFor({ timeout: 15_000 });
      await expect(page.locator('#run-words').textContent()).resolves.toBe(
        'would archive 2,250 tasks (13,500 rows) in 3 batches; stopped at its max batches with more to do',
      );
      await expect(page.getByRole('button', { name: 'Cancel run' }).count()).resolves.toBe(0);
      await context.close();
    } finally {
      await boss.stop({ graceful: false });
    }
  });

  it('a run that handed its work on is one run on the Jobs page, and "Cancel run" stops the link waiting (audited)', async () => {
    const config = ConfigSchema.parse({});
    const boss = createBoss(config, h.databaseUrl, 'client', silentLogger());
    await boss.start();
    try {
      const job = archiveFinishedTasks.name;
      const first = (await boss.send(
        job,
        { trigger: 'adhoc', options: { max_batches: 3 } },
        { singletonKey: 'run' },
      ))!;
      const [taken] = await boss.fetch(job);
      expect(taken?.id).toBe(first);
      const second = (await boss.send(
        job,
        { trigger: 'adhoc', options: { max_batches: 3 }, continues: first },
        { singletonKey: 'run' },
      ))!;
      const counts = {
        dry_run: false,
        batches: 3,
        tasks_archived: 3000,
        rows_archived: 18000,
        stopped_by: 'max_batches',
        handed_on_to: second,
      };
      await insertRun(h.pool, {
        run_id: randomUUID(),
        job_name: job,
        trigger: 'adhoc',
        pgboss_job_id: first,
        worker: 'e2e',
        started_at: new Date(),
        options: {},
      });
      await h.pool.query(
        `UPDATE tasker_job_runs SET outcome = 'completed', counts = $2, duration_ms = 900, finished_at = now() WHERE pgboss_job_id = $1`,
        [first, JSON.stringify(counts)],
      );
      await boss.complete(job, first, counts);

      const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
      const page = await signIn(
        context,
        await h.token('kate', ['dlq:read', 'jobs:read', 'jobs:run', 'audit:read']),
      );
      await page.goto(`${h.url}/jobs`);
      const card = page.locator(`section[data-job="${job}"]`);
      const row = card.locator('table.runs tbody tr', {
        has: page.locator(`a[href="/jobs/${job}/runs/${first}"]`),
      });
      await expect(row.textContent()).resolves.toContain('2 jobs, handed on');
      await expect(row.locator('.run-words').textContent()).resolves.toBe(
        'archived 3,000 tasks (18,000 rows) in 3 batches; stopped at its max batches with more to do',
      );
      await expect(card.locator('.next-run').count()).resolves.toBe(1); // migrate filed the schedule
      await row.getByRole('link').click();
      await page.waitForURL(`${h.url}/jobs/${job}/runs/${first}`);
      await expect(page.locator('#run-links').textContent()).resolves.toContain(
        'one run over 2 pg-boss jobs',
      );
      await expect(page.locator('#run-status').textContent()).resolves.toBe('waiting for a worker');
      await page.getByRole('button', { name: 'Cancel run' }).click();
      await page.waitForURL(`${h.url}/jobs/${job}/runs/${first}`);
      await expect(page.locator('#flash').textContent()).resolves.toBe('Cancelled: the run will not start.');
      await expect(page.locator('#run-status').textContent()).resolves.toBe('cancelled');
      await expect(page.locator('#run-cancelled-by').textContent()).resolves.toMatch(
        /^Cancelled by kate \(token [0-9a-f]{16}\) at/,
      );
      await expectAccessible(page, 'run-cancelled');
      const states = await h.pool.query(
        `SELECT id, state FROM pgboss.job WHERE name = $1 AND id = ANY($2::uuid[])`,
        [job, [first, second]],
      );
      expect(Object.fromEntries(states.rows.map((r) => [r.id, r.state]))).toEqual({
        [first]: 'completed',
        [second]: 'cancelled',
      });
      const audit = await h.pool.query(
        `SELECT actor, actor_kind, before, after FROM tasker_audit_log WHERE action = 'job.cancel' AND target_id = $1`,
        [second],
      );
      expect(audit.rows).toEqual([
        { actor: 'kate', actor_kind: 'console', before: { state: 'created' }, after: { state: 'cancelled' } },
      ]);
      await context.close();
    } finally {
      await boss.stop({ graceful: false });
    }
  });

  it('a resolve refused because someone else resolved first says who and when, and keeps the notes', async () => {
    const [entry] = await entriesIn('refused', 'ship', 1);
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, await h.token('lena', ['dlq:read', 'dlq:update']));
    await page.goto(`${h.url}/dlq/${entry}`);
    await page.getByLabel('Status').selectOption('permanently_failed');
    await page.getByLabel('Notes').fill('The carrier API rejects this address; marked failed.');
    await h.pool.query(
      `UPDATE tasker_tasks_dlq SET resolution_status = 'cancelled', resolved_by = 'mo', resolution_timestamp = '2026-06-01T11:00:00Z' WHERE dlq_entry_uuid = $1`,
      [entry],
    );
    await page.getByRole('button', { name: 'Resolve' }).click();
    await expect(page.locator('#not-saved').textContent()).resolves.toBe(
      'Not saved: already cancelled by mo at 2026-06-01 11:00:00Z. Your notes are kept below.',
    );
    await expect(page.getByLabel('Notes').inputValue()).resolves.toBe(
      'The carrier API rejects this address; marked failed.',
    );
    await expectAccessible(page, 'entry-not-saved');
    await context.close();
  });

  it('after the session ends, the form leads to sign-in and back to the entry with the notes kept', async () => {
    const [entry] = await entriesIn('ended', 'pack', 1);
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, await h.token('nora', ['dlq:read', 'dlq:update']));
    await page.goto(`${h.url}/dlq/${entry}`);
    await page.getByLabel('Status').selectOption('manually_resolved');
    const notes = `Repacked by hand.\n${'Long notes survive the round trip. '.repeat(250)}`;
    await page.getByLabel('Notes').fill(notes);
    await revokeToken(h.pool, { name: 'nora', actor: { kind: 'cli', name: 'e2e' }, now: new Date() });
    await page.getByRole('button', { name: 'Resolve' }).click();
    await expect(page.locator('#session-ended').textContent()).resolves.toContain('your notes are kept');
    await expect(page.getByRole('link', { name: 'where you were' }).getAttribute('href')).resolves.toBe(
      `/dlq/${entry}`,
    );
    expect(await isPending(entry!)).toBe(true);
    await expectAccessible(page, 'sign-in-again');
    await page.getByLabel('Token').fill(await h.token('nora2', ['dlq:read', 'dlq:update']));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.locator('#flash').textContent()).resolves.toContain('Your notes are back in the form');
    await expect(page.getByLabel('Notes').inputValue()).resolves.toBe(notes);
    await expect(page.getByLabel('Status').inputValue()).resolves.toBe('manually_resolved');
    await page.getByRole('button', { name: 'Resolve' }).click();
    await page.waitForURL(`${h.url}/dlq/${entry}`);
    await expect(page.locator('#resolved-by').textContent()).resolves.toMatch(
      /^nora2 \(token [0-9a-f]{16}\)$/,
    );
    await context.close();
  });

  it('a task uuid opens its investigation, in the address and in the search box of the header', async () => {
    const [entry] = await entriesIn('find', 'me', 1);
    const { rows } = await h.pool.query<{ task_uuid: string }>(
      'SELECT task_uuid FROM tasker_tasks_dlq WHERE dlq_entry_uuid = $1',
      [entry],
    );
    const task = rows[0]!.task_uuid;
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, await h.token('olga', ['dlq:read']));
    await page.goto(`${h.url}/dlq/${task}`);
    expect(page.url()).toBe(`${h.url}/dlq/${entry}`);
    await page.goto(`${h.url}/`);
    await page.getByLabel('Find investigation').fill(task);
    await page.keyboard.press('Enter');
    await page.waitForURL(`${h.url}/dlq/${entry}`);
    await expect(page.locator('#entry-status').count()).resolves.toBe(1);
    // A task without an investigation says so.
    const lone = await insertTask(h.pool, {
      template: await insertTemplate(h.pool, { namespace: 'lone', name: 'quiet' }),
      state: 'steps_in_process',
      enteredAt: NOW,
    });
    expect((await page.goto(`${h.url}/dlq/${lone}`))!.status()).toBe(404);
    await expect(page.locator('[role=alert]').textContent()).resolves.toContain(
      'is live and has no investigation',
    );
    await context.close();
  });
});

describe('what the pages say next (issue 28)', () => {
  it('the audit page shows before → after, a bulk resolution with its count and entries, and the template beside an entry', async () => {
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, await h.token('pia', ['dlq:read', 'audit:read']));
    await page.goto(`${h.url}/audit?actor=alice`);
    const resolve = page.locator('#audit tr[data-action="dlq.resolve"]');
    await expect(
      resolve.locator('ul.changes li', { hasText: 'resolution_status' }).textContent(),
    ).resolves.toBe('resolution_status: "pending" → "manually_resolved"');
    await expect(resolve.locator('.template').textContent()).resolves.toBe('shop/order');
    await page.goto(`${h.url}/audit?actor=frank`);
    const bulk = page.locator('#audit tr[data-action="dlq.bulk_resolve"]');
    await expect(bulk.locator('.bulk-count').textContent()).resolves.toBe('4 entries resolved together');
    await bulk.getByText('The 4 entries').click();
    await expect(bulk.locator('details.more li').count()).resolves.toBe(4);
    await expect(bulk.locator('details.more li').first().textContent()).resolves.toContain('bulkns/sync');
    await expectAccessible(page, 'audit-bulk');
    // A filter the page cannot read comes back with its form and what it expected.
    expect((await page.goto(`${h.url}/audit?since=lately`))!.status()).toBe(400);
    await expect(page.locator('#filter-problem').textContent()).resolves.toContain(
      'since "lately": expected a time with a zone such as 2026-05-01T00:00:00Z, a date such as 2026-05-01 (UTC), or a span back from now such as 30m, 1h, 2d, 1w',
    );
    await page.goto(`${h.url}/audit?since=1h&actor=frank`);
    await expect(page.locator('#audit tr[data-action="dlq.bulk_resolve"]').count()).resolves.toBe(1);
    await context.close();
  });

  it('the bulk form says when a name matches no template', async () => {
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, await h.token('quin', ['dlq:read', 'dlq:update']));
    expect((await page.goto(`${h.url}/bulk?namespace=bulkns&task_name=synk&preview=1`))!.status()).toBe(400);
    await expect(page.locator('#filter-problem').textContent()).resolves.toBe(
      'Not previewed: namespace "bulkns" with task_name "synk" matches no task template (templates in bulkns: sync)',
    );
    await expect(page.getByLabel('Template').inputValue()).resolves.toBe('synk');
    await context.close();
  });

  it("the demo's investigations: why each was opened, a malformed template named; the README's pictures come from them", async () => {
    const templates = await ensureDemoTemplates(h.pool);
    const id = (name: string) => templates.find((t) => t.name === name)!.named_task_uuid;
    const now = await databaseNow(h.pool);
    const made = {
      retries: await createTroubledDemoTask(
        h.pool,
        id('invoice_export'),
        'retries_exhausted',
        minutesBefore(now, 20),
      ),
      cycle: await createTroubledDemoTask(
        h.pool,
        id('order_fulfilment'),
        'dependency_cycle',
        minutesBefore(now, 20),
      ),
      worker: await createTroubledDemoTask(
        h.pool,
        id('order_fulfilment'),
        'missing_worker',
        minutesBefore(now, 20),
      ),
      nightly: await createDemoTask(
        h.pool,
        id('nightly_report'),
        'waiting_for_retry',
        minutesBefore(now, 45),
        5,
      ),
    };
    await markStuck(h.pool, made.nightly);
    const config = ConfigSchema.parse({});
    const result = await detectStaleTasks.run(
      { pool: h.pool, now, logger: silentLogger(), signal: new AbortController().signal },
      detectStaleTasks.optionsFromConfig(config),
    );
    const entryOf = (task: string) => result.tasks.find((t) => t.task_uuid === task)!.dlq_entry_uuid!;
    await enrichEntries(h.pool, Object.values(made).map(entryOf), defaultLimits({ now }));
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, await h.token('demo', ['*']));
    await page.goto(`${h.url}/?namespace=demo&view=entries`);
    await expect(page.locator('#queue-total').textContent()).resolves.toBe('4');
    await expectAccessible(page, 'queue-demo');
    await docsScreenshot(page, 'queue', 700);

    await page.goto(`${h.url}/dlq/${entryOf(made.nightly)}`);
    await expect(page.locator('#why-stale').textContent()).resolves.toBe(
      'Stale: 45 min in waiting_for_retry, past its threshold of 30 min — the global default (staleness_detection.thresholds.waiting_for_retry_minutes = 30), because the template\'s max_waiting_for_retry_minutes is "soon", not a whole number of minutes.',
    );
    await expect(page.locator('#template-problems li').textContent()).resolves.toBe(
      'max_waiting_for_retry_minutes must be a positive whole number of minutes, got "soon"',
    );
    await page.goto(`${h.url}/dlq/${entryOf(made.retries)}`);
    await expect(page.locator('#why-stale').textContent()).resolves.toContain(
      "the template's max_steps_in_process_minutes = 1",
    );
    await expect(page.locator('#diagnosis-summary').textContent()).resolves.toMatch(/transform/);
    await expectAccessible(page, 'entry-demo');
    await docsScreenshot(page, 'entry', 1500);
    await context.close();
  });
});

describe('investigations grouped by cause (issue 27)', () => {
  it('the queue of groups → a group → "Resolve all in this group" (the count the API previews) → the queue without it', async () => {
    const now = await databaseNow(h.pool);
    const pay = await insertTemplate(h.pool, { namespace: 'grp', name: 'pay' });
    const make = async (n: number, step: string) => {
      const entries: string[] = [];
      for (let i = 0; i < n; i++)
        entries.push(
          (
            await failingEntry(h.pool, {
              template: pay,
              step,
              error: {
                message: `card declined for order ${500 + i} at ${now.toISOString()}`,
                error_type: 'PaymentError',
              },
              at: now,
              minutesAgo: 15 + 20 * i,
            })
          ).entry,
        );
      await enrichAll(h.pool, entries, now);
      return { entries, fingerprint: (await fingerprintOf(h.pool, entries[0]!))! };
    };
    const declined = await make(6, 'charge');
    const refunds = await make(2, 'refund');
    const secret = await h.token('gwen', ['dlq:read', 'dlq:update']);
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, secret);
    await page.getByLabel('Namespace').selectOption('grp');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/namespace=grp/);
    await expect(
      page
        .locator('#groups tbody tr[data-group]')
        .evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-group'))),
    ).resolves.toEqual([declined.fingerprint, refunds.fingerprint]);
    await expect(page.locator('#groups-pending').textContent()).resolves.toBe('8');
    await expect(
      page.locator(`tr[data-group="${declined.fingerprint}"] .group-pending`).textContent(),
    ).resolves.toBe('6');
    await expect(
      page.locator(`tr[data-group="${declined.fingerprint}"] svg.spark`).getAttribute('aria-label'),
    ).resolves.toBe('pending 0 → 6 over 24 h (peak 6); 6 opened, 0 resolved');
    await expectAccessible(page, 'groups');
    await docsScreenshot(page, 'groups', 520);

    await page
      .getByRole('link', { name: 'blocked at charge (PaymentError: card declined for order <n> at <time>)' })
      .click();
    await page.waitForURL(`${h.url}/groups/${declined.fingerprint}`);
    const api = await fetch(`${h.url}/v1/dlq/bulk-resolve`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        filter: { group: declined.fingerprint },
        resolution_status: 'cancelled',
        resolution_notes: 'preview',
      }),
    });
    const preview = (await api.json()) as { matched: number };
    expect(preview.matched).toBe(6);
    await expect(page.locator('#group-entries tbody tr[data-entry]').count()).resolves.toBe(6);
    await expectAccessible(page, 'group');
    await page.getByRole('link', { name: 'Resolve all in this group…' }).click();
    await page.waitForURL(`${h.url}/groups/${declined.fingerprint}?resolve=1#all-h`);
    await expect(page.locator('#resolve-all-count').textContent()).resolves.toBe(String(preview.matched));
    await expectAccessible(page, 'group-resolve-all');
    await page.getByLabel('Status').selectOption('permanently_failed');
    await page.getByLabel('Notes').fill('Card processor outage 02:10-03:05; orders voided upstream.');
    await page.getByRole('button', { name: 'Resolve all 6 in this group' }).click();
    await page.waitForURL(`${h.url}/`);
    await expect(page.locator('#flash').textContent()).resolves.toMatch(
      /^Resolved all 6 pending entries of “blocked at charge \(PaymentError: card declined for order <n> at <time>\)” as permanently_failed/,
    );
    await expect(page.locator(`#groups tr[data-group="${declined.fingerprint}"]`).count()).resolves.toBe(0);
    await expect(page.locator(`#groups tr[data-group="${refunds.fingerprint}"]`).count()).resolves.toBe(1);
    for (const e of declined.entries) expect(await isPending(e)).toBe(false);
    for (const e of refunds.entries) expect(await isPending(e)).toBe(true);

    // An entry page links to its group.
    await page.goto(`${h.url}/dlq/${refunds.entries[0]}`);
    await page.locator('#entry-group a').click();
    await page.waitForURL(`${h.url}/groups/${refunds.fingerprint}`);
    await expect(page.locator('#group-pending').textContent()).resolves.toBe('2');
    await context.close();

    // At a phone's width the groups fit, their badges beside their labels.
    const phone = await browser.newContext({
      bypassCSP: true,
      viewport: { width: 390, height: 844 },
      isMobile: true,
    });
    const small = await signIn(phone, secret);
    await small.goto(`${h.url}/?namespace=grp`);
    await expectAccessible(small, 'groups-phone-rows');
    expect(
      await small.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth'),
    ).toBeLessThanOrEqual(0);
    await expect(small.locator('#groups td .badge').count()).resolves.toBeGreaterThan(0);
    expect(
      await small.evaluate<number>(
        "Array.from(document.querySelectorAll('#groups td .badge')).filter((b) => b.getBoundingClientRect().left < b.closest('td').getBoundingClientRect().left + 100).length",
      ),
    ).toBe(0);
    await phone.close();
  });
});

describe('the record and the session (issue 23)', () => {
  const idOf = (secret: string) => /^tlk_([0-9a-f]{16})_/.exec(secret)![1]!;

  async function pendingIn(namespace: string): Promise<string> {
    const template = await insertTemplate(h.pool, { namespace, name: 'record' });
    const task = await insertTask(h.pool, {
      template,
      state: 'waiting_for_retry',
      enteredAt: hoursBefore(NOW, 6),
    });
    return insertDlqEntry(h.pool, {
      task,
      reason: 'staleness_timeout',
      at: hoursBefore(NOW, 5),
      namespace,
      taskName: 'record',
      state: 'waiting_for_retry',
    });
  }

  const api = (method: string, path: string, token: string, body?: unknown) =>
    fetch(`${h.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  it('a forged resolved_by is shown as on behalf of, beside the token that resolved it; rewriting it is refused', async () => {
    const entry = await pendingIn('forged');
    const ops = await h.token('ops-forger', ['dlq:read', 'dlq:update']);
    const resolved = await api('PATCH', `/v1/dlq/entry/${entry}`, ops, {
      resolution_status: 'cancelled',
      resolution_notes: 'duplicate',
      resolved_by: 'the-cfo',
    });
    expect(resolved.status).toBe(200);
    const rewrite = await api('PATCH', `/v1/dlq/entry/${entry}`, ops, {
      resolution_notes: 'it was someone else',
    });
    expect(rewrite.status).toBe(409);
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, await h.token('rita', ['dlq:read', 'dlq:update']));
    await page.goto(`${h.url}/dlq/${entry}`);
    await expect(page.locator('#resolved-by').textContent()).resolves.toBe(`ops-forger (token ${idOf(ops)})`);
    await expect(page.locator('#resolved-on-behalf-of').textContent()).resolves.toBe(
      'the-cfo (as the resolver said; not checked)',
    );
    await expect(page.getByText('duplicate', { exact: true }).count()).resolves.toBe(1);
    await expect(page.getByRole('button', { name: 'Resolve' }).count()).resolves.toBe(0);
    await expectAccessible(page, 'entry-on-behalf-of');
    await context.close();
  });

  it('a token name given again is told apart on the audit page by its token id', async () => {
    const [a, b] = [await pendingIn('reused-a'), await pendingIn('reused-b')];
    const first = await h.token('updater', ['dlq:update']);
    await api('PATCH', `/v1/dlq/entry/${a}`, first, { resolution_status: 'cancelled' });
    await revokeToken(h.pool, { name: 'updater', actor: { kind: 'cli', name: 'e2e' }, now: new Date() });
    const second = await h.token('updater', ['dlq:update']);
    await api('PATCH', `/v1/dlq/entry/${b}`, second, { resolution_status: 'cancelled' });
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, await h.token('sam', ['audit:read']));
    await page.goto(`${h.url}/audit?actor=updater`);
    const ids = await page.locator('#audit tr[data-action="dlq.resolve"] .token-id').allTextContents();
    expect(ids).toEqual([idOf(second), idOf(first)]);
    await page.locator('#audit .token-id', { hasText: idOf(first) }).click();
    await page.waitForURL(new RegExp(`token_id=${idOf(first)}`));
    await expect(page.locator('#audit tr[data-action]').count()).resolves.toBe(1);
    await expectAccessible(page, 'audit-token-ids');
    await context.close();
  });

  it("sign-in's next never leaves the console: /\\x, /\\t/x, /%5Cx and CR/LF land on the console's own page", async () => {
    // No bypassCSP here: what keeps the browser home is the server's answer, not the policy.
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const token = await h.token('tess', ['dlq:read']);
    for (const next of ['/\\evil.example', '/\t/evil.example', '/%5Cevil.example', '/x\r\nSet-Cookie: a=b']) {
      const page = await context.newPage();
      await page.goto(`${h.url}/sign-in?next=${encodeURIComponent(next)}`);
      await page.getByLabel('Token').fill(token);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForLoadState('load');
      expect({ next, at: page.url() }).toEqual({ next, at: `${h.url}/` });
      await page.close();
    }
    await context.close();
  });

  it('a copied session cookie is dead after sign-out, and its use is logged with the token id and the address', async () => {
    const entry = await pendingIn('copied');
    const token = await h.token('uma', ['dlq:read', 'dlq:update']);
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, token);
    const copied = (await context.cookies()).filter((c) => c.name === 'tasker_session');
    expect(copied).toHaveLength(1);
    expect(copied[0]!.value).not.toContain(token);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${h.url}/sign-in`);
    // Someone who took the cookie off the machine before sign-out.
    const thief = await browser.newContext({ bypassCSP: true });
    await thief.addCookies(copied);
    const stolen = await thief.newPage();
    await stolen.goto(`${h.url}/dlq/${entry}`);
    expect(new URL(stolen.url()).pathname).toBe('/sign-in');
    expect(await isPending(entry)).toBe(true);
    await waitFor('the refusal in the log', async () =>
      h.web.stderrSoFar().includes(`token_id=${idOf(token)} detail=the session was signed out`),
    );
    const line = h.web
      .stderrSoFar()
      .split('\n')
      .find((l) => l.includes(`token_id=${idOf(token)} detail=the session was signed out`))!;
    expect(line).toMatch(
      /warn +request refused .*reason=bad_session .*route=\/dlq\/:uuid .*client_address=127\.0\.0\.1/,
    );
    await thief.close();
    await context.close();
  });

  it('what used to be a 500 is a page of the console saying what it expected, with its headers', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, await h.token('vic', ['*']));
    const answer = await page.goto(`${h.url}/audit?actor=${encodeURIComponent('a\u0000b')}`);
    expect(answer!.status()).toBe(400);
    expect(answer!.headers()['content-security-policy']).toContain("base-uri 'none'");
    expect(answer!.headers()['x-content-type-options']).toBe('nosniff');
    await expect(page.locator('#problem').textContent()).resolves.toBe(
      'actor: expected text without NUL characters (\\u0000). Nothing was changed.',
    );
    // Queueing a run of a job named after an Object member: the Jobs page says no such job.
    await page.goto(`${h.url}/jobs`);
    const csrf = await page.locator('form[action="/sign-out"] input[name=_csrf]').inputValue();
    const queued = await page.evaluate(async (value) => {
      const res = await fetch('/jobs/constructor/runs', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `_csrf=${encodeURIComponent(value)}`,
      });
      return { status: res.status, url: res.url, text: await res.text() };
    }, csrf);
    expect(queued.status).toBe(200);
    expect(new URL(queued.url).pathname).toBe('/jobs');
    expect(queued.text).toContain('Not queued: no job constructor.');
    await context.close();
  });
});
