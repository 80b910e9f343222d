/** Every job the worker runs, in the order their queues are created. */
import type { AnyJob } from '../src/worker/worker.ts';
import archiveFinishedTasks from './archive-finished-tasks.ts';
import detectStaleTasks from './detect-stale-tasks.ts';
import enrichDlqSnapshots from './enrich-dlq-snapshots.ts';

export const JOBS: readonly AnyJob[] = [detectStaleTasks, enrichDlqSnapshots, archiveFinishedTasks];

export function findJob(name: string): AnyJob | undefined {
  return JOBS.find((j) => j.name === name);
}
