/**
 * Read replicas (issue 25), on PostgreSQL's own streaming replication: a primary started here, a
 * replica made from it by `pg_basebackup -R` (test/helpers/replica.ts), a real `web` process and a
 * real worker with database.replica_url pointing at the replica. It shows:
 *
 * - reads served by the replica: with replay paused, a row written on the primary is not in the
 *   API's list nor on the console (and the web process's sessions on the replica, in its
 *   pg_stat_activity, ran the reads), while a resolve's write lands on the primary;
 * - a resolve in the console followed by its page, which reads its own write from the primary
 *   (the read-your-writes cookie), while a page without it still reads the paused replica;
 * - the lag gauge moving while replay is paused (pg_wal_replay_pause()), reads falling back to
 *   the primary past database.replica_max_lag_seconds, and coming back after pg_wal_replay_resume();
 * - the fallback when the replica is stopped: the API still answers (from the primary), with one
 *   warning however many requests, and `status` says where it read and why.
 *
 * One file, run once by `npm run test:e2e` (it starts its own servers, whatever DATABASE_URL is).
 */
import { afterAll, afterEach, beforeAll, expect, it } from '@jest/globals';
import pg from 'pg';
import { createToken } from '../../src/operations/tokens.ts';
import { type CliProcess, runCli } from '../helpers/cli-process.ts';
import {
  insertDlqEntry,
  insertTask,
  insertTemplate,
  minutesBefore,
  type Template,
} from '../helpers/factories.ts';
import { type ReplicatedCluster, startReplicatedCluster } from '../helpers/replica.ts';
import { waitFor } from '../helpers/wait.ts';
import { installFor, startWorkerProcess } from '../helpers/workers.ts';
import { consoleSignIn, startWeb, type WebProcess } from '../web/web-process.ts';

let cluster: ReplicatedCluster;
let primary: pg.Pool;
let replica: pg.Pool;
let web: WebProcess;
let worker: CliProcess | undefined;
let token: string;
let template: Template;
let env: Record<string, string>;

beforeAll(async () => {
  cluster = await startReplicatedCluster();
  const admin = new pg.Pool({ connectionString: cluster.primary.url('postgres'), max: 1 });
  await admin.query('CREATE DATABASE tasker');
  await admin.end();
  env = {
    DATABASE_REPLICA_URL: cluster.replica.url('tasker'),
    TASKER__database__replica_max_lag_seconds: '5',
    TASKER__metrics__gauges_interval_seconds: '1',
    TASKER__staleness_detection__enabled: 'false',
    TASKER__archive__enabled: 'false',
  };
  await installFor(cluster.primary.url('tasker'), env);
  primary = new pg.Pool({ connectionString: cluster.primary.url('tasker'), max: 2 });
  replica = new pg.Pool({ connectionString: cluster.replica.url('tasker'), max: 2 });
  replica.on('error', () => undefined); // its idle sessions end when the test stops the replica
  token = (
    await createToken(primary, {
      name: 'replica-test',
      permissions: ['*'],
      actor: { name: 'test', kind: 'cli' },
      now: new Date(),
    })
  ).token;
  template = await insertTemplate(primary, { namespace: 'billing', name: 'invoice' });
  web = await startWeb(cluster.primary.url('tasker'), env);
}, 120_000);

afterEach(async () => {
  // A test that failed with replay paused leaves the next one a replica that never catches up.
  await replica?.query('SELECT pg_wal_replay_resume()').catch(() => undefined);
});

afterAll(async () => {
  worker?.kill('SIGCONT');
  worker?.kill('SIGTERM');
  await worker?.done;
  await web?.stop();
  await primary?.end();
  await replica?.end();
  await cluster?.stop();
}, 60_000);

async function pendingEntry(): Promise<string> {
  const { rows } = await primary.query<{ now: Date }>('SELECT now()');
  const task = await insertTask(primary, {
    template,
    state: 'error',
    enteredAt: minutesBefore(rows[0]!.now, 30),
  });
  return insertDlqEntry(primary, { task, reason: 'staleness_timeout', at: minutesBefore(rows[0]!.now, 20) });
}

async function onReplica(uuid: string): Promise<string | null> {
  const { rows } = await replica.query(
    'SELECT resolution_status FROM tasker_tasks_dlq WHERE dlq_entry_uuid = $1',
    [uuid],
  );
  return rows[0]?.resolution_status ?? null;
}

async function page(
  path: string,
  cookie: string,
): Promise<{ status: number; body: string; setCookie: string[] }> {
  const res = await fetch(`${web.baseUrl}${path}`, { headers: { cookie }, redirect: 'manual' });
  return { status: res.status, body: await res.text(), setCookie: res.headers.getSetCookie() };
}

/** The status badge of an entry page. */
const statusOn = (body: string) => /id="entry-status">([^<]+)</.exec(body)?.[1];

const listed = async (cookie = '') => {
  const res = await fetch(`${web.baseUrl}/v1/dlq?limit=100`, {
    headers: { authorization: `Bearer ${token}`, ...(cookie ? { cookie } : {}) },
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as Array<{ dlq_entry_uuid: string }>).map((e) => e.dlq_entry_uuid);
};

function logLines(process: CliProcess, message: string): unknown[] {
  return process
    .stderrSoFar()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { message: string })
    .filter((l) => l.message === message);
}

it('reads come from the replica, writes go to the primary, and a resolved page reads its own write', async () => {
  const first = await pendingEntry();
  await waitFor('the entry replayed on the replica', async () => (await onReplica(first)) === 'pending');
  expect(await listed()).toContain(first);
  // status reads this system's tables from the replica, and says so with its lag.
  const status = await runCli(['status', '--json'], { DATABASE_URL: cluster.primary.url('tasker'), ...env });
  expect(status.code).toBe(0);
  const report = JSON.parse(status.stdout);
  expect(report.replica).toMatchObject({ configured: true, reads_from: 'replica', fallback_reason: null });
  expect(report.replica.lag_seconds).toEqual(expect.any(Number));
  expect(report.investigations.pending).toBeGreaterThanOrEqual(1);

  // Replay paused: what the primary gets now is not on the replica.
  await replica.query('SELECT pg_wal_replay_pause()');
  const second = await pendingEntry();
  expect(await listed()).not.toContain(second); // the API read the replica
  // The web process's sessions on the replica ran the reads.
  const { rows: sessions } = await replica.query(
    `SELECT query FROM pg_stat_activity WHERE application_name = 'tasker-lifecycle-web' AND datname = 'tasker'`,
  );
  expect(sessions.map((s) => s.query).join('\n')).toMatch(/tasker_tasks_dlq|dlq_entry_uuid/);

  // The console: signed in (the session is written on the primary), its pages read the replica.
  const signedIn = await consoleSignIn(web.baseUrl, token);
  const session = signedIn.cookie;
  expect((await page(`/dlq/${second}`, session)).status).toBe(404); // not replayed yet
  // The Jobs page says where pages read from, and the replica's lag.
  expect((await page('/jobs', session)).body).toMatch(/Pages read from the replica \(lag \d+\.\d s\)/);
  const entryPage = await page(`/dlq/${first}`, session);
  expect(entryPage.status).toBe(200);
  const csrf = /name="_csrf" value="([^"]+)"/.exec(entryPage.body)?.[1];
  const resolved = await fetch(`${web.baseUrl}/dlq/${first}/resolve`, {
    method: 'POST',
    redirect: 'manual',
    headers: { cookie: session, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      _csrf: csrf!,
      status: 'manually_resolved',
      notes: 'fixed by hand',
    }).toString(),
  });
  expect(resolved.status).toBe(303);
  const readPrimary = resolved.headers
    .getSetCookie()
    .map((c) => /^(tasker_read_primary=1)/.exec(c)?.[1])
    .find((c) => c);
  expect(readPrimary).toBeDefined();
  // The write is on the primary; the paused replica has not replayed it.
  const { rows: onPrimary } = await primary.query(
    'SELECT resolution_status FROM tasker_tasks_dlq WHERE dlq_entry_uuid = $1',
    [first],
  );
  expect(onPrimary[0].resolution_status).toBe('manually_resolved');
  expect(await onReplica(first)).toBe('pending');
  // The page the resolve redirects to, with the cookie it set: the caller's own write.
  const after = await page(`/dlq/${first}`, `${session}; ${readPrimary}`);
  expect(after.status).toBe(200);
  expect(statusOn(after.body)).toMatch(/manually.resolved/);
  // Another client (no cookie) still reads the paused replica: pending.
  const elsewhere = await page(`/dlq/${first}`, session);
  expect(statusOn(elsewhere.body)).toBe('pending');
  // The API's PATCH answers from the primary too.
  const patched = await fetch(`${web.baseUrl}/v1/dlq/entry/${second}`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ resolution_status: 'cancelled', resolution_notes: 'duplicate' }),
  });
  expect(patched.status).toBe(200);
  expect(((await patched.json()) as { entry: { resolution_status: string } }).entry.resolution_status).toBe(
    'cancelled',
  );

  await replica.query('SELECT pg_wal_replay_resume()');
  await waitFor('the resolve replayed', async () => (await onReplica(first)) === 'manually_resolved');
}, 90_000);

it('the lag gauge moves while replay is paused, and reads fall back past replica_max_lag_seconds', async () => {
  worker = startWorkerProcess(cluster.primary.url('tasker'), env);
  const port = await waitFor('the worker to log its metrics port', async () => {
    const line = worker!
      .stderrSoFar()
      .split('\n')
      .find((l) => l.includes('"worker started"'));
    return line ? (JSON.parse(line).http_port as number) : undefined;
  });
  const scrape = async () => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const value = (name: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${name} `));
      return line === undefined ? undefined : Number(line.split(' ').at(-1));
    };
    return {
      lag: value('tasker_database_replica_lag_seconds'),
      reads: value('tasker_database_replica_reads'),
    };
  };
  await waitFor('the lag gauge, reads on the replica', async () => {
    const m = await scrape();
    return m.lag !== undefined && m.lag < 5 && m.reads === 1;
  });
  await replica.query('SELECT pg_wal_replay_pause()');
  // The gauges' holder writes its readings every second: the primary's WAL moves on without us.
  const rising = await waitFor('the lag gauge above 2 s', async () => {
    const m = await scrape();
    return m.lag !== undefined && m.lag > 2 ? m.lag : undefined;
  });
  const later = await waitFor('the lag gauge rising', async () => {
    const m = await scrape();
    return m.lag !== undefined && m.lag > rising ? m : undefined;
  });
  expect(later.lag).toBeGreaterThan(rising);
  await waitFor('reads falling back past 5 s of lag', async () => (await scrape()).reads === 0);
  expect(logLines(worker, 'database: reads go to the primary instead of the replica')).toHaveLength(1);
  await replica.query('SELECT pg_wal_replay_resume()');
  await waitFor('reads on the replica again', async () => {
    const m = await scrape();
    return m.reads === 1 && m.lag !== undefined && m.lag < 5;
  });
  expect(logLines(worker, 'database: reads go to the replica again')).toHaveLength(1);
}, 90_000);

it('with the replica stopped, reads fall back to the primary with one warning, and status says so', async () => {
  const entry = await pendingEntry();
  await cluster.replica.stop();
  for (let i = 0; i < 5; i++) expect(await listed()).toContain(entry);
  expect(logLines(web.process, 'database: reads go to the primary instead of the replica')).toHaveLength(1);

  const status = await runCli(['status', '--json'], { DATABASE_URL: cluster.primary.url('tasker'), ...env });
  expect(status.code).toBe(0);
  const report = JSON.parse(status.stdout);
  expect(report.replica).toMatchObject({ configured: true, reads_from: 'primary', lag_seconds: null });
  expect(report.replica.fallback_reason).toMatch(/the replica cannot be read/);
  expect(report.investigations.pending).toBeGreaterThanOrEqual(1);
  expect(status.stderr).toMatch(/reads go to the primary instead of the replica/);
  const { cookie } = await consoleSignIn(web.baseUrl, token);
  expect((await page('/jobs', cookie)).body).toMatch(
    /Pages read from the primary: the replica cannot be read/,
  );

  await cluster.replica.start();
  await waitFor('the API reading the replica again', async () => {
    await listed();
    return logLines(web.process, 'database: reads go to the replica again').length === 1;
  });
}, 90_000);
