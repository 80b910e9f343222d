/**
 * `enqueue --wait` when the database goes away (issue 28, item 13): down at the start, it fails at
 * once with the connection message; lost while waiting, it says so at once, gives up after a short
 * grace and reports the time it really waited and that it was interrupted (the run goes on); Ctrl-C
 * ends the wait the same way. The database is reached through a TCP proxy the test cuts.
 */
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { LOST_DATABASE_GRACE_MS } from '../../src/cli/commands/enqueue.ts';
import { freePort } from '../../src/db/embedded.ts';
import { startCli } from '../helpers/cli-process.ts';
import { useTestDatabase } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';
import { bossJobs, FAST_WORKER_ENV, installFor } from '../helpers/workers.ts';

const DETECT = 'tasker.detect-stale-tasks';
const ENV = { ...FAST_WORKER_ENV, TASKER__staleness_detection__enabled: 'false' };

const db = useTestDatabase();

/** A TCP proxy to the test database; cut() closes it and every connection through it. */
async function proxy(): Promise<{ url: string; cut(): void }> {
  const target = new URL(db.url);
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const url = new URL(db.url);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    cut() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

let cuts: Array<() => void> = [];
beforeEach(async () => {
  await installFor(db.url, ENV);
  await db.pool.query(`DELETE FROM pgboss.job WHERE name LIKE 'tasker.%'`);
});
afterEach(() => {
  for (const cut of cuts) cut();
  cuts = [];
});

async function queuedRun(): Promise<string> {
  return waitFor(
    'the run to be queued',
    async () => (await bossJobs(db.pool, DETECT))[0]?.id as string | undefined,
  );
}

describe('enqueue --wait without its database', () => {
  it('down from the start: fails at once with the connection message', async () => {
    const port = await freePort();
    const started = Date.now();
    const run = await startCli(['enqueue', 'detect-stale', '--wait'], {
      ...ENV,
      DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/nowhere`,
    }).done;
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      new RegExp(
        `^error: cannot connect to 127\\.0\\.0\\.1:${port}/nowhere: nothing listens there \\(connection refused\\)`,
      ),
    );
    // "At once": not after the wait's 600 s nor retrying until then. The bound is what tells those
    // apart, not how fast a process starts: on a loaded CI machine the CLI alone took 16 s.
    expect(Date.now() - started).toBeLessThan(45_000);
  });

  it('lost while waiting: says so at once, then gives up as interrupted, with the time it really waited', async () => {
    const p = await proxy();
    cuts.push(p.cut);
    const started = Date.now();
    const waiting = startCli(['enqueue', 'detect-stale', '--wait'], { ...ENV, DATABASE_URL: p.url });
    const id = await queuedRun(); // no worker: it waits
    // Cut once it waits, not as soon as the run is queued: the command still reads the workers
    // after queueing, and a cut then is a failure to enqueue, not a lost wait (CI under load).
    await waitFor('the command to wait', async () =>
      waiting.stderrSoFar().includes('waiting for one') ? true : undefined,
    );
    p.cut();
    const cutAt = Date.now();
    const result = await waiting.done;
    const elapsed = (Date.now() - started) / 1000;
    expect(result.code).toBe(1);
    const lines = result.stderr.trim().split('\n');
    // The first failed look says why: the cut itself when a look was in flight at the cut (more
    // likely on a loaded machine), else the refused reconnection.
    expect(lines).toContainEqual(
      expect.stringMatching(
        /^cannot reach the database while waiting: (cannot connect to 127\.0\.0\.1:\d+\/\w+: nothing listens there .*|the connection to 127\.0\.0\.1:\d+\/\w+ was cut \(Connection terminated unexpectedly\): .*); trying again for 15 s$/,
      ),
    );
    const last = lines.at(-1)!;
    const match = new RegExp(
      `^error: interrupted after waiting (\\d+) s: the database cannot be reached \\(cannot connect to .*\\); run ${id} was created when last seen and goes on without this command`,
    ).exec(last);
    expect(match).not.toBeNull();
    const waited = Number(match![1]);
    // The real wait: from queueing to giving up, the grace after the cut included.
    expect(waited).toBeLessThanOrEqual(Math.ceil(elapsed));
    expect(waited).toBeGreaterThanOrEqual(Math.floor(LOST_DATABASE_GRACE_MS / 1000));
    expect(Date.now() - cutAt).toBeLessThan(LOST_DATABASE_GRACE_MS + 12_000);
    expect(result.stdout).not.toContain('completed');
    // The run itself is untouched: it waits for a worker.
    expect((await bossJobs(db.pool, DETECT)).map((j) => j.state)).toEqual(['created']);
  });

  it('Ctrl-C: interrupted, with the time waited, and the run goes on', async () => {
    const waiting = startCli(['enqueue', 'detect-stale', '--wait', '--json'], {
      ...ENV,
      DATABASE_URL: db.url,
    });
    const id = await queuedRun();
    waiting.kill('SIGINT');
    const result = await waiting.done;
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stderr)).toEqual({
      error: {
        code: 'FAILURE',
        message: expect.stringMatching(
          new RegExp(
            `^interrupted after waiting \\d+ s: stopped by a signal \\(Ctrl-C\\); run ${id} was created when last seen and goes on without this command`,
          ),
        ),
      },
    });
    expect((await bossJobs(db.pool, DETECT)).map((j) => j.state)).toEqual(['created']);
  });
});
