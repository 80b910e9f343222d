/**
 * The web console in headless Chromium: sign in (with the keyboard), the queue and its filters in
 * the URL, an entry's diagnosis, graph and timeline, resolving it and seeing it leave the queue; a
 * token without dlq:update sees no resolve form and a forged POST is refused. axe-core checks every
 * page (no serious or critical violations) at 1280 px and at a phone's width; screenshots go to
 * artifacts/console/. Bounded: one browser, one database, well under a minute.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import detectStaleTasks from '../../jobs/detect-stale-tasks.ts';
import { ConfigSchema } from '../../src/config/schema.ts';
import { enrichEntries } from '../../src/db/queries/dlq-enrichment.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { createBoss } from '../../src/worker/boss.ts';
import { deadLetterQueue } from '../../src/worker/worker.ts';
import { insertFinishedGraph } from '../helpers/archive-factories.ts';
import { docsScreenshot, launchChromium, screenshot, seriousAxeViolations } from '../helpers/browser.ts';
import { runCli } from '../helpers/cli-process.ts';
import { type ConsoleHarness, startConsoleHarness } from '../helpers/console-server.ts';
import { defaultLimits, detectAtNow, insertStuckOrder } from '../helpers/enrichment-factories.ts';
import { hoursBefore, insertDlqEntry, insertTask, insertTemplate, NOW } from '../helpers/factories.ts';

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

    await expect(page.locator('#queue tbody tr[data-entry]').count()).resolves.toBe(4);
    // Most urgent first: the cycle outranks the timeouts.
    await expect(
      page.locator('#queue tbody tr[data-entry]').first().getAttribute('data-entry'),
    ).resolves.toBe(orderEntry);
    await expectAccessible(page, 'queue');
    await docsScreenshot(page, 'queue', 560);

    await page.selectOption('#f-namespace', 'billing');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/namespace=billing/);
    const rows = await page
      .locator('#queue tbody tr[data-entry]')
      .evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-entry')));
    expect(rows.sort()).toEqual([...billingEntries].sort());
    await expect(page.locator('#queue-total').textContent()).resolves.toBe('3');
    await expectAccessible(page, 'queue-filtered');
    // A bad filter value is refused, naming the field.
    const bad = await page.goto(`${h.url}/?min_age_minutes=-5`);
    expect(bad!.status()).toBe(400);
    await expect(page.locator('[role=alert]').textContent()).resolves.toContain('min_age_minutes');

    await page.goto(`${h.url}/?namespace=shop`);
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
    expect(await page.getByText('max_steps_in_process_minutes').isVisible()).toBe(true);
    expect(await page.getByText('manually_resolved by fixture').isVisible()).toBe(true);
    expect(await page.getByText(orderTask).isVisible()).toBe(true);
    await expectAccessible(page, 'entry');
    await docsScreenshot(page, 'entry', 1700);

    await page.getByLabel('Status').selectOption('manually_resolved');
    await page.getByLabel('Notes').fill('Broke the audit_a/audit_b cycle in the template; re-ran charge.');
    await page.getByRole('button', { name: 'Resolve' }).click();
    await page.waitForURL(`${h.url}/dlq/${orderEntry}`);
    await expect(page.locator('#resolved-by').textContent()).resolves.toBe('alice');
    await expect(page.locator('#entry-status').textContent()).resolves.toBe('manually_resolved');
    await expect(page.getByRole('button', { name: 'Resolve' }).count()).resolves.toBe(0);
    await expectAccessible(page, 'entry-resolved');
    expect(await isPending(orderEntry)).toBe(false);
    const audit = await h.pool.query(
      `SELECT actor, actor_kind, action FROM tasker_audit_log WHERE target_id = $1`,
      [orderEntry],
    );
    expect(audit.rows).toEqual([{ actor: 'alice', actor_kind: 'console', action: 'dlq.resolve' }]);

    await page.goto(`${h.url}/`);
    await expect(page.locator(`#queue tr[data-entry="${orderEntry}"]`).count()).resolves.toBe(0);
    await expect(page.locator('#queue-total').textContent()).resolves.toBe('3');
    await context.close();
  });

  it('the queue updates itself: an entry resolved elsewhere disappears without a reload', async () => {
    const context = await browser.newContext({ bypassCSP: true, viewport: { width: 1280, height: 900 } });
    const page = await signIn(context, await h.token('bob', ['*']));
    const target = billingEntries[0]!;
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
    await expectAccessible(page, 'queue-phone');
    const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth');
    expect(overflow).toBeLessThanOrEqual(0);
    await page.goto(`${h.url}/dlq/${orderEntry}`);
    await expectAccessible(page, 'entry-phone');
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
  it('bulk resolve: the preview count matches the API, "Resolve all" resolves them in one action', async () => {
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
    await page.getByLabel('Namespace').fill('bulkns');
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
    await page.getByRole('button', { name: 'Resolve all' }).click();
    await expect(page.locator('#bulk-outcome').textContent()).resolves.toContain('Resolved 4 of 4');
    for (const e of entries) expect(await isPending(e)).toBe(false);
    // One action, one audit row, naming the four entries.
    const audit = await h.pool.query<{ actor: string; entries: string[] }>(
      `SELECT actor, details->'dlq_entry_uuids' AS entries FROM tasker_audit_log WHERE action = 'dlq.bulk_resolve'`,
    );
    expect(audit.rows.map((r) => ({ actor: r.actor, entries: [...r.entries].sort() }))).toEqual([
      { actor: 'frank', entries: [...entries].sort() },
    ]);
    await page.goto(`${h.url}/?namespace=bulkns`);
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
    await expect(page.locator('#jobs-notice').textContent()).resolves.toMatch(/^Retried dead-lettered run/);
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
    await expect(page.locator('#jobs-notice').textContent()).resolves.toContain('already waiting');
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
    await expectAccessible(page, 'archive');
    await page.getByRole('button', { name: 'Restore' }).click();
    await expect(page.locator('#archive-notice').textContent()).resolves.toBe(
      `Restored task ${task} to the live tables.`,
    );
    const live = await h.pool.query('SELECT 1 FROM tasker_tasks WHERE task_uuid = $1', [task]);
    expect(live.rows).toHaveLength(1);

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
