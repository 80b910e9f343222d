/**
 * The console's /archive page with the partitioned archive (issue 24, step 5): the months with their
 * rows (from the rollup), sizes (the partitions' files), export state and the retention in force;
 * and a lookup finds an archived task in any month's partition.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import archiveJob, { runArchival } from '../../jobs/archive-finished-tasks.ts';
import { loadConfig } from '../../src/config/load.ts';
import { exportArchiveMonth } from '../../src/db/archive-export.ts';
import { addPartitionsForMonths } from '../../src/db/queries/archive-partitions.ts';
import { monthsFrom } from '../../src/domain/archive-months.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import { insertFinishedGraphs } from '../helpers/archive-factories.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { hoursBefore, insertTemplate } from '../helpers/factories.ts';
import { consoleSignIn, installBoss, startWeb, tokenWith, type WebProcess } from './web-process.ts';

const db = useTestDatabase();
let web: WebProcess;
const dir = mkdtempSync(join(tmpdir(), 'tasker-console-export-'));

beforeAll(async () => {
  await installBoss(db.url);
  web = await startWeb(db.url, { TASKER__archive__keep_months: '6' });
}, 60_000);
afterAll(async () => {
  await web?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it('shows each month with its rows, size and export state, the retention in force, and finds a task in any partition', async () => {
  const OCT = new Date('2036-10-15T00:00:00Z');
  const NOV = new Date('2036-11-15T00:00:00Z');
  await addPartitionsForMonths(db.pool, monthsFrom(OCT, 1));
  const template = await insertTemplate(db.pool, { name: 'console_months' });
  const options = {
    ...archiveJob.optionsFromConfig(loadConfig({ env: {} }).config),
    pause_between_batches_ms: 0,
  };
  const archived: string[] = [];
  for (const [now, count] of [
    [OCT, 3],
    [NOV, 2],
  ] as const) {
    archived.push(
      ...(await insertFinishedGraphs(db.pool, {
        named_task_uuid: template.named_task_uuid,
        state: 'complete',
        finishedAt: hoursBefore(now, 24 * 40),
        count,
        steps: 2,
      })),
    );
    await runArchival(
      { pool: db.pool, now, logger: silentLogger(), signal: new AbortController().signal },
      options,
    );
  }
  await exportArchiveMonth(db.pool, { month: '2036-10', directory: dir, now: NOV });
  const reader = await tokenWith(db.pool, 'archivist', ['archive:read']);
  const cookie = (await consoleSignIn(web.baseUrl, reader)).cookie;
  const get = async (path: string) => (await fetch(`${web.baseUrl}${path}`, { headers: { cookie } })).text();

  const body = await get('/archive');
  expect(body).toContain('Retention keeps this month and the 6 before it');
  const row = (month: string) =>
    body.match(new RegExp(`<tr><td data-label="Month">${month}</td>[\\s\\S]*?</tr>`))?.[0] ?? '';
  // October: 3 graphs of 1 task, 2 steps, 1 edge, 4 task transitions, 6 step transitions = 14 rows each
  expect(row('2036-10')).toContain('<td data-label="Rows">42</td>');
  expect(row('2036-10')).toMatch(/<td data-label="Size">\d+ kB<\/td>/);
  expect(row('2036-10')).toContain(`verified`);
  expect(row('2036-10')).toContain(dir);
  expect(row('2036-11')).toContain('<td data-label="Rows">28</td>');
  expect(row('2036-11')).toContain('not exported');
  // a task of either month's partition is found
  for (const task of [archived[0]!, archived.at(-1)!]) {
    expect(await get(`/archive?task_uuid=${task}`)).toContain(`Archived task ${task}`);
  }
});
