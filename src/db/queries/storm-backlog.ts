import type { Db } from '../pool.ts';
import { type EnrichmentBacklog, enrichmentBacklog } from './dlq-enrichment.ts';
import { recentWork } from './job-runs.ts';
import { STALE_WAITING_CAP, type StaleTasksWaiting, staleTasksWaiting } from './staleness-backlog.ts';

/**
 * What a stale storm leaves waiting, and how fast the jobs drain it, read together so that `status`
 * and the console's Staleness page show the same figures. No SQL of its own: each figure is one of
 * the bounded, index-only reads the gauges use (staleTasksWaiting: at most STALE_WAITING_CAP index
 * entries; enrichmentBacklog: index ranges only; recentWork: the runs of the window, by
 * idx_job_runs_job_started).
 */

/** The window over which the drain is measured. */
export const DRAIN_WINDOW_MINUTES = 5;

/** The jobs that drain a storm's two backlogs, and the count of their runs that says how much. */
const DETECTION = { job: 'tasker.detect-stale-tasks', count: 'tasks_detected' } as const;
const ENRICHMENT = { job: 'tasker.enrich-dlq-snapshots', count: 'enriched' } as const;

export interface StormBacklog {
  /** Stale tasks waiting for detection, by the configured default thresholds (up to STALE_WAITING_CAP). */
  stale: StaleTasksWaiting;
  enrichment: EnrichmentBacklog;
}

/** What a job's runs of the window did: runs started in it, their work, and that work per second. */
export interface Drain {
  runs: number;
  work: number;
  /** work over the whole window, per second, to one decimal. */
  per_second: number;
}

export interface StormDrain {
  window_minutes: number;
  /** Tasks detection moved to error. */
  detected: Drain;
  /** Entries enrichment filled in. */
  enriched: Drain;
}

export async function stormBacklog(db: Db, now: Date): Promise<StormBacklog> {
  const [stale, enrichment] = await Promise.all([
    staleTasksWaiting(db, now, STALE_WAITING_CAP),
    enrichmentBacklog(db, now),
  ]);
  return { stale, enrichment };
}

/** The drain over the DRAIN_WINDOW_MINUTES before `now`. */
export async function stormDrain(db: Db, now: Date): Promise<StormDrain> {
  const since = new Date(now.getTime() - DRAIN_WINDOW_MINUTES * 60_000);
  const drained = async (j: { job: string; count: string }): Promise<Drain> => {
    const { runs, work } = await recentWork(db, j.job, since, j.count);
    return { runs, work, per_second: Math.round((work / (DRAIN_WINDOW_MINUTES * 60)) * 10) / 10 };
  };
  const [detected, enriched] = await Promise.all([drained(DETECTION), drained(ENRICHMENT)]);
  return { window_minutes: DRAIN_WINDOW_MINUTES, detected, enriched };
}
