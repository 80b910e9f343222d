import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { JOBS } from '../../jobs/index.ts';
import {
  bossJobState,
  type DeadLetteredJob,
  listDeadLettered,
  queueDepths,
} from '../db/queries/boss-jobs.ts';
import { runsOfBossJob } from '../db/queries/job-run-lookup.ts';
import { type RunRow, recentRuns } from '../db/queries/job-runs.ts';
import { NotFoundError } from '../errors.ts';
import { type RunChain, runChain } from '../operations/runs.ts';
import { deadLetterQueue } from '../worker/worker.ts';

/** Read-only views of the jobs for the API and the console: states, and one run followed. */

export interface JobState {
  job: string;
  description: string;
  /** The cron the workers filed (pgboss.schedule, UTC), or null: not scheduled. */
  schedule: string | null;
  last_runs: RunRow[];
  /** Jobs in its queue now: waiting (created or retry), active, failed for good. */
  queue: { queued: number; active: number; failed: number };
  dead_letter_queue: string;
  dead_lettered: number;
  /** The newest dead-lettered runs still waiting to be retried, with their error. */
  dead_lettered_runs: DeadLetteredJob[];
}

export async function jobStates(
  deps: { pool: pg.Pool; boss: PgBoss },
  runsPerJob = 5,
  deadPerJob = 20,
): Promise<JobState[]> {
  const names = JOBS.flatMap((j) => [j.name, deadLetterQueue(j)]);
  const depths = await queueDepths(deps.pool, names);
  const schedules = new Map((await deps.boss.getSchedules()).map((s) => [s.name, s.cron]));
  const states: JobState[] = [];
  for (const job of JOBS) {
    const { queued, active, failed } = depths.get(job.name)!;
    const dlq = deadLetterQueue(job);
    const dead = await listDeadLettered(deps.pool, dlq, deadPerJob);
    states.push({
      job: job.name,
      description: job.description,
      schedule: schedules.get(job.name) ?? null,
      last_runs: await recentRuns(deps.pool, job.name, runsPerJob),
      queue: { queued, active, failed },
      dead_letter_queue: dlq,
      dead_lettered: depths.get(dlq)!.queued,
      dead_lettered_runs: dead,
    });
  }
  return states;
}

export interface FollowedRun {
  job: string;
  job_id: string;
  /** pg-boss's state: created, retry, active, completed, cancelled, failed; null once pg-boss deleted it. */
  state: string | null;
  output: Record<string, unknown> | null;
  /** The run stopped early and handed the rest of its work to this run (follow it next). */
  handed_on_to: string | null;
  /** The run was merged into this waiting run (follow it next). */
  merged_into: string | null;
  /** Its history rows (tasker_job_runs): one per attempt, with counts. */
  runs: RunRow[];
  /** The whole run: every pg-boss job that carried its work on, its status and the link in flight; null once pg-boss deleted the job. */
  chain: {
    status: RunChain['status'];
    first_job_id: string;
    head_job_id: string;
    links: Array<{ id: string; state: string; created_on: Date; completed_on: Date | null }>;
    earlier_not_shown: boolean;
  } | null;
}

/** One queued run: its pg-boss state and output, its history, its chain. NotFoundError if none of it exists. */
export async function followRun(
  deps: { pool: pg.Pool; boss: PgBoss },
  job: string,
  id: string,
): Promise<FollowedRun> {
  const boss = await bossJobState(deps.pool, job, id);
  const runs = await runsOfBossJob(deps.pool, id);
  if (!boss && runs.length === 0) throw new NotFoundError(`no run ${id} of ${job}`);
  const output = boss?.output ?? null;
  const pick = (k: string) => (typeof output?.[k] === 'string' ? (output[k] as string) : null);
  const chain = boss ? await runChain(deps.boss, job, id, deps.pool) : null;
  return {
    job,
    job_id: id,
    state: boss?.state ?? null,
    output,
    handed_on_to: boss?.state === 'completed' ? pick('handed_on_to') : null,
    merged_into: boss?.state === 'cancelled' ? pick('merged_into') : null,
    runs,
    chain: chain && {
      status: chain.status,
      first_job_id: chain.links[0]!.id,
      head_job_id: chain.head.id,
      links: chain.links.map((l) => ({
        id: l.id,
        state: l.state,
        created_on: l.created_on,
        completed_on: l.completed_on,
      })),
      earlier_not_shown: chain.earlier_not_shown,
    },
  };
}
