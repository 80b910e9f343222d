/**
 * `migrate` beside a busy engine (issue 21): a first install on an engine-first database of
 * BENCH_MIGRATE_TASKS tasks (default 1,000,000; BENCH_MIGRATE_FINISHED_PERCENT of them finished,
 * default 50; two transitions each), none of this system's objects yet, while the engine's writer
 * (test/helpers/engine-writer.ts: one transaction after another in its own connection, each moving
 * a task to another state through transition_task_state_atomic and touching its row, every tenth
 * creating a task) keeps writing.
 *
 * This build: `tasker-lifecycle migrate` as the release step runs it (a process of its own; the
 * indexes on the engine's tables CONCURRENTLY, every other change under migrate.lock_timeout_ms).
 * The old way, the baseline: the same three indexes built as the released migrations built them,
 * a plain CREATE INDEX inside a transaction each (0005, 0031, 0060), on the same database after
 * they were dropped again (its cache is warm by then, which only helps the baseline).
 *
 * Printed for each: how long it took; the writer's transactions meanwhile (writes/s) and its
 * longest and 99th-percentile transaction, and its longest wait on a lock (sampled every 20 ms from
 * pg_stat_activity, with whom it waited for); and the same for the writer alone before, for scale.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { readIndexFiles } from '../src/install/index-files.ts';
import { migrationsDir } from '../src/paths.ts';
import { runCli } from '../test/helpers/cli-process.ts';
import {
  ENGINE_ONLY,
  type LockWaitSampler,
  loadEngineTasks,
  longestLockWait,
  startEngineWriter,
  startLockWaitSampler,
  waitsDuring,
} from '../test/helpers/engine-writer.ts';
import { type BenchServer, timed } from './db.ts';

interface Window {
  ms: number;
  count: number;
  longestMs: number;
  p99Ms: number;
  start: number;
  end: number;
}

export default async function migrateBench(server: BenchServer): Promise<void> {
  const tasks = Number(process.env.BENCH_MIGRATE_TASKS ?? '1000000');
  const finishedPercent = Number(process.env.BENCH_MIGRATE_FINISHED_PERCENT ?? '50');
  const finished = Math.round((tasks * finishedPercent) / 100);
  console.log(`server: ${server.description}`);
  const db = await server.createDatabase({ migrated: false });
  try {
    await db.pool.query(ENGINE_ONLY);
    const load = await timed(() => loadEngineTasks(db.pool, tasks - finished, finished));
    console.log(
      `engine-first database: ${tasks.toLocaleString('en')} tasks (${finished.toLocaleString('en')} finished), ${(2 * tasks).toLocaleString('en')} transitions, loaded in ${(load.ms / 1000).toFixed(1)} s`,
    );
    const writer = await startEngineWriter(db.url, { applicationName: 'bench-engine-writer' });
    let sampler: LockWaitSampler | undefined;
    try {
      sampler = await startLockWaitSampler(db.url, 'bench-engine-writer');
      const window = async (work: () => Promise<void>): Promise<Window> => {
        const start = performance.now();
        await work();
        const end = performance.now();
        await sleep(200); // the writer's transaction in flight at the end
        return { ms: end - start, start, end, ...waitsDuring(writer.samples(), start, end) };
      };
      const quiet = await window(() => sleep(3000));

      // This build: the release step.
      let output = '';
      const current = await window(async () => {
        const run = await runCli(['migrate', '--json'], { DATABASE_URL: db.url });
        if (run.code !== 0) throw new Error(`migrate failed (exit ${run.code}): ${run.stderr}`);
        output = run.stdout;
      });
      const result = JSON.parse(output) as {
        indexes: { file: string; steps: string[] }[];
        applied: string[];
      };

      // The old way: the same indexes, each a plain CREATE INDEX in a transaction.
      const files = readIndexFiles(migrationsDir);
      const builds: string[] = [];
      await db.pool.query(`DROP INDEX ${files.map((f) => f.name).join(', ')}`);
      await sleep(1000);
      const old = await window(async () => {
        for (const f of files) {
          const client = await db.pool.connect();
          try {
            const built = await timed(async () => {
              await client.query('BEGIN');
              await client.query(`CREATE INDEX ${f.name} ON ${f.table} ${f.tail}`);
              await client.query('COMMIT');
            });
            builds.push(`${f.name} ${(built.ms / 1000).toFixed(2)} s`);
          } finally {
            client.release();
          }
        }
      });

      const samples = await sampler.stop();
      const line = (name: string, w: Window) => {
        const lockWait = longestLockWait(samples, w.start, w.end);
        return `  ${name.padEnd(58)} ${(w.ms / 1000).toFixed(1).padStart(6)} s   ${String(Math.round((w.count * 1000) / w.ms)).padStart(5)} writes/s   longest ${w.longestMs.toFixed(0).padStart(5)} ms   p99 ${w.p99Ms.toFixed(0).padStart(5)} ms   longest lock wait ${lockWait.ms.toFixed(0).padStart(5)} ms${lockWait.blocker ? ` (behind ${lockWait.blocker.slice(0, 60)})` : ''}`;
      };
      console.log('the engine writer during each (its transactions overlapping the window):');
      console.log(line('quiet, before', quiet));
      console.log(line('this build: tasker-lifecycle migrate (first install)', current));
      console.log(line('old way: 3 x CREATE INDEX in a transaction', old));
      console.log(
        `  migrate applied ${result.applied.length} migrations and built ${result.indexes.map((i) => i.file.replace(/^indexes\/|\.sql$/g, '')).join(', ')} concurrently`,
      );
      console.log(`  old way's builds: ${builds.join(', ')}`);
      console.log(
        `longest engine write during migrate: ${current.longestMs.toFixed(0)} ms (target < 1,000 ms: ${current.longestMs < 1000 ? 'met' : 'MISSED'}); the old way: ${old.longestMs.toFixed(0)} ms`,
      );
    } finally {
      await sampler?.stop();
      await writer.stop();
    }
  } finally {
    await db.drop();
  }
}
