/**
 * How long a run is out of action when its worker is paused, with the shipped settings
 * (worker.heartbeat_seconds 15, recovery every 5 s, polling every 2 s): worker A runs a long
 * archival run; A is paused (SIGSTOP); worker B is started; the figure is the time from the pause
 * until B holds the run (its attempt active). Expected: the heartbeat threshold (15 s, less up to
 * one heartbeat interval, 3⅓ s, already passed), plus up to a recovery interval and a poll.
 *
 *   npm run bench -- takeover        (ROUNDS=5 for more rounds)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../src/paths.ts';
import { insertFinishedGraphs } from '../test/helpers/archive-factories.ts';
import { insertTemplate } from '../test/helpers/factories.ts';
import type { BenchServer } from './db.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 3);

export default async function takeover(server: BenchServer): Promise<void> {
  const db = await server.createDatabase();
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/tmp',
    DATABASE_URL: db.url,
    TASKER__metrics__port: '0',
    TASKER__logging__format: '"json"',
    TASKER__logging__level: '"warn"',
    TASKER__staleness_detection__enabled: 'false',
    TASKER__archive__enabled: 'false',
    TASKER__archive__pause_between_batches_ms: '500',
  };
  const cli = (args: string[]) =>
    spawn(process.execPath, ['src/cli/main.ts', ...args], { cwd: projectRoot, env, stdio: 'ignore' });
  const exited = (p: ChildProcess) => new Promise((resolve) => p.on('close', resolve));
  try {
    await exited(cli(['migrate']));
    const template = await insertTemplate(db.pool);
    const { rows } = await db.pool.query<{ now: Date }>('SELECT now()');
    await insertFinishedGraphs(db.pool, {
      named_task_uuid: template.named_task_uuid,
      state: 'complete',
      finishedAt: new Date(rows[0]!.now.getTime() - 10 * 86_400_000),
      count: 2000,
      spacingSeconds: 1,
      steps: 2,
    });
    const figures: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      await db.pool.query(`DELETE FROM pgboss.job WHERE name LIKE 'tasker.%'`);
      const a = cli(['worker']);
      await sleep(4000);
      await exited(cli(['enqueue', 'archive', '--retention-days', '1', '--batch-size', '2']));
      let id: string | undefined;
      while (!id) {
        const active = await db.pool.query(
          `SELECT id FROM pgboss.job WHERE name = 'tasker.archive-finished-tasks' AND state = 'active'`,
        );
        id = active.rows[0]?.id;
        await sleep(200);
      }
      await sleep(3000);
      a.kill('SIGSTOP');
      const paused = Date.now();
      const b = cli(['worker']);
      for (;;) {
        const job = await db.pool.query('SELECT state, retry_count FROM pgboss.job WHERE id = $1', [id]);
        if (job.rows[0].state === 'active' && job.rows[0].retry_count === 1) break;
        await sleep(100);
      }
      figures.push(Date.now() - paused);
      a.kill('SIGCONT');
      a.kill('SIGTERM');
      b.kill('SIGTERM');
      await Promise.all([exited(a), exited(b)]);
    }
    const sorted = [...figures].sort((x, y) => x - y);
    console.log(`${server.description}`);
    console.log(`takeover after SIGSTOP, shipped settings, ${ROUNDS} rounds: ${figures.join(', ')} ms`);
    console.log(`median ${sorted[Math.floor(sorted.length / 2)]} ms, longest ${sorted.at(-1)} ms`);
  } finally {
    await db.drop();
  }
}
