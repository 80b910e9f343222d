/**
 * Staleness detection: moves tasks stuck too long in a state to `error` and opens a DLQ
 * investigation for each, in batches.
 *
 * Reads: candidates from two bounded range scans, in-flight tasks past the smallest state threshold
 * (idx_task_transitions_in_flight) and unfinished tasks past their template's lifetime
 * (idx_tasks_unfinished_by_template); their current transition (idx_task_transitions_uuid_most_recent),
 * template lifecycle config, pending DLQ entries (idx_dlq_unique_pending_task); for the tasks acted on, their
 * steps, step transitions and edges (to pick the reason).
 * Writes: an `error` transition and/or a pending tasker_tasks_dlq row per stale task, both in one
 * statement per batch; NOTIFY events. Never tasker_lifecycle_settings: `migrate` writes that from
 * the configuration (src/install/settings.ts), so a dry run or an ad-hoc run with
 * its own thresholds changes nothing the views and the 6-argument function read.
 *
 * Options (from [staleness_detection] and [dlq]): thresholds in minutes (lifetime in hours),
 * batch_size (tasks per transaction), max_batches (per run), batch_statement_timeout_ms (SET LOCAL
 * statement_timeout of each batch), dry_run, the action switches, the enabled reasons and the
 * event channel.
 *
 * One pass: call detect_stale_tasks_page page by page, each after the cursor the previous page
 * returned, until a page returns no cursor (the pass is through), max_batches is reached, or the
 * run is aborted (checked between batches). A page examines at most 2 x batch_size index entries,
 * first of in-flight tasks by state entry (idx_task_transitions_in_flight), then of unfinished
 * tasks by template and creation time (idx_tasks_unfinished_by_template), so a page costs what it
 * returns however many tasks are stale. Every page of a pass judges staleness against one time
 * (ctx.now, or the resumed pass's); a run that stops early hands the cursor and that time on
 * (the `resume` option), so a pass longer than a run still ends and reads no page twice. Rows written are stamped with the statement's clock, never earlier than the transition
 * they follow. A dry run pages exactly like a real run (so it reports the same tasks, batch for
 * batch), locks nothing and changes nothing. A batch that exceeds its statement timeout is rolled
 * back and fails the run, naming the batch (earlier batches stay committed).
 *
 * Safe with N workers: each batch locks the rows it takes (FOR UPDATE SKIP LOCKED), re-checks that
 * each task is still in the state it was found in, and writes the transition (compare-and-swap on
 * the locked current row) and the entry (unique pending index) in one statement. Concurrent runs
 * take disjoint tasks; each stale task gets exactly one error transition and one pending entry.
 */
import { z } from 'zod';
import type { Config } from '../src/config/schema.ts';
import {
  type DetectBatchParams,
  type DetectBatchResult,
  type DetectCursor,
  detectStaleTasksBatch,
  settingsFromConfig,
} from '../src/db/queries/staleness.ts';
import { DLQ_REASONS, type DlqReason } from '../src/domain/dlq.ts';
import { isFailure, type StalenessActionTaken, type StaleTaskResult } from '../src/domain/staleness.ts';
import { cronEverySeconds } from '../src/worker/cron.ts';
import { defineJob } from '../src/worker/job.ts';
import enrichDlqSnapshots, { enrichmentRequestsFor } from './enrich-dlq-snapshots.ts';

export const DetectStaleTasksOptions = z.strictObject({
  dry_run: z.boolean(),
  batch_size: z.int().min(1).max(10000),
  max_batches: z.int().min(1).max(1000),
  batch_statement_timeout_ms: z.int().min(100).max(600000),
  waiting_for_dependencies_minutes: z.int().min(1).max(1440),
  waiting_for_retry_minutes: z.int().min(1).max(1440),
  steps_in_process_minutes: z.int().min(1).max(1440),
  task_max_lifetime_hours: z.int().min(1).max(168),
  auto_transition_to_error: z.boolean(),
  /** Whether detection may open investigations at all (actions, dlq.enabled, auto_dlq_on_staleness). */
  auto_move_to_dlq: z.boolean(),
  enabled_reasons: z.array(z.enum(DLQ_REASONS)),
  /** NOTIFY channel, or null for no events. */
  event_channel: z.string().min(1).max(63).nullable(),
  /**
   * Go on with a pass an earlier run of it stopped: the page cursor it reached and the time the
   * pass judges staleness at. Set by the worker when it hands the rest of a run on; null: a new pass.
   */
  resume: z
    .strictObject({ cursor: z.record(z.string(), z.unknown()), judged_at: z.iso.datetime({ offset: true }) })
    .nullable()
    .default(null),
});
export type DetectStaleTasksOptions = z.infer<typeof DetectStaleTasksOptions>;

export interface InvalidTemplate {
  named_task_uuid: string;
  namespace_name: string;
  task_name: string;
  problems: string[];
}

export interface DetectStaleTasksResult {
  dry_run: boolean;
  batches: number;
  /** Stale tasks found (and acted on, unless dry run). */
  tasks_detected: number;
  transitioned_to_error: number;
  dlq_entries_created: number;
  /** Tasks whose outcome was not what was planned (see isFailure). */
  failures: number;
  by_action: Partial<Record<StalenessActionTaken, number>>;
  by_reason: Partial<Record<DlqReason, number>>;
  by_state: Record<string, number>;
  /** Templates of the tasks seen whose lifecycle config has malformed values (defaults were used). */
  invalid_templates: InvalidTemplate[];
  /**
   * The same, by name ("namespace/name": its problems): kept whole in the run's recorded result
   * (pg-boss output, history), where lists are reduced to their length.
   */
  template_problems: Record<string, string[]>;
  /** Stopped because the run was aborted between batches. */
  aborted: boolean;
  /** The pass was not through when the run stopped (aborted, or max_batches reached). */
  more: boolean;
  /** Where the pass stands when more: what a next run takes as its `resume` option. */
  resume: { cursor: Record<string, unknown>; judged_at: string } | null;
  tasks: StaleTaskResult[];
}

export function detectionOptionsFromConfig(config: Readonly<Config>): DetectStaleTasksOptions {
  const sd = config.staleness_detection;
  // The same derivation as the settings row, so a scheduled run and the views agree.
  const {
    archive_policies: _policies,
    max_pending_age_hours: _age,
    ...settings
  } = settingsFromConfig(config);
  return {
    dry_run: sd.dry_run,
    batch_size: sd.batch_size,
    max_batches: sd.max_batches_per_run,
    batch_statement_timeout_ms: sd.batch_statement_timeout_ms,
    ...settings,
    resume: null,
  };
}

export default defineJob<DetectStaleTasksOptions, DetectStaleTasksResult>({
  name: 'tasker.detect-stale-tasks',
  description: 'Move tasks stuck too long in a state to error and open a DLQ investigation for each.',
  optionsSchema: DetectStaleTasksOptions,
  optionsFromConfig: detectionOptionsFromConfig,
  schedule: (config) =>
    config.staleness_detection.enabled
      ? cronEverySeconds(config.staleness_detection.detection_interval_seconds)
      : null,
  // Added after the previous release (7ef2c80), whose workers refuse options they do not know.
  optionsSentAsExtras: ['resume'],
  workDone: (result) => (result.dry_run ? 0 : result.tasks_detected),
  longestBatchMs: (options) => options.batch_statement_timeout_ms,
  // Stopped between batches, or at max_batches before the pass was through.
  // The next run goes on with the same pass (its cursor and reference time): a pass longer than a
  // run still ends, and no page is read twice.
  stoppedEarly: (result, options) =>
    result.aborted
      ? { reason: 'aborted', handOn: !result.dry_run, resume: { resume: result.resume } }
      : !result.dry_run && result.more && result.batches >= options.max_batches
        ? { reason: 'max_batches', handOn: true, resume: { resume: result.resume } }
        : null,
  // The investigations each batch opened are enriched right away, by one request carrying that
  // batch's entry ids (not one per entry: a storm's million entries would be a million pg-boss
  // jobs); the enrichment sweep catches any lost request.
  followUps: (result) =>
    enrichmentRequestsFor(result.tasks.map((t) => t.dlq_entry_uuid)).map((r) => ({
      job: enrichDlqSnapshots.name,
      options: r.data,
      key: r.singletonKey,
    })),

  async run(ctx, options) {
    const settings: DetectBatchParams['settings'] = {
      waiting_for_dependencies_minutes: options.waiting_for_dependencies_minutes,
      waiting_for_retry_minutes: options.waiting_for_retry_minutes,
      steps_in_process_minutes: options.steps_in_process_minutes,
      task_max_lifetime_hours: options.task_max_lifetime_hours,
      auto_transition_to_error: options.auto_transition_to_error,
      auto_move_to_dlq: options.auto_move_to_dlq,
      enabled_reasons: options.enabled_reasons,
      event_channel: options.event_channel,
    };

    const tasks: StaleTaskResult[] = [];
    let batches = 0;
    let aborted = false;
    // A resumed pass goes on from its cursor and keeps judging against the time it started with.
    let after: DetectCursor | null = options.resume?.cursor ?? null;
    const now = options.resume ? new Date(options.resume.judged_at) : ctx.now;
    let more = true;
    for (;;) {
      if (ctx.signal.aborted) {
        aborted = true;
        break;
      }
      let page: DetectBatchResult;
      try {
        page = await detectStaleTasksBatch(ctx.pool, {
          now,
          dryRun: options.dry_run,
          batchSize: options.batch_size,
          settings,
          after,
          statementTimeoutMs: options.batch_statement_timeout_ms,
          ...(ctx.commitFence ? { beforeCommit: ctx.commitFence } : {}),
        });
      } catch (err) {
        const where = after ? `after ${JSON.stringify(after)}` : 'first';
        const timedOut = (err as { code?: string }).code === '57014';
        throw new Error(
          timedOut
            ? `detection batch ${batches + 1} (${where}, size ${options.batch_size}) ran longer than batch_statement_timeout_ms (${options.batch_statement_timeout_ms} ms) and was rolled back; ${tasks.length} task(s) were handled by earlier batches`
            : `detection batch ${batches + 1} (${where}, size ${options.batch_size}) failed: ${(err as Error).message}`,
          { cause: err },
        );
      }
      batches += 1;
      tasks.push(...page.tasks);
      ctx.progress?.(
        summarize(page.tasks, { dry_run: options.dry_run, batches: 1, aborted: false, more: false }),
      );
      after = page.next;
      more = page.next !== null;
      if (!more || batches >= options.max_batches) break;
    }
    const result = summarize(tasks, {
      dry_run: options.dry_run,
      batches,
      aborted,
      more,
      resume: more && after !== null ? { cursor: after, judged_at: now.toISOString() } : null,
    });
    // Detection carries on with the defaults, but someone has to fix the template: say which, once a run.
    for (const t of result.invalid_templates) {
      ctx.logger.warn(
        `template ${t.namespace_name}/${t.task_name} has malformed lifecycle settings; detection used the global defaults for them: ${t.problems.join('; ')}`,
        { job: 'tasker.detect-stale-tasks', named_task_uuid: t.named_task_uuid, problems: t.problems },
      );
    }
    return result;
  },
});

function summarize(
  tasks: StaleTaskResult[],
  run: Pick<DetectStaleTasksResult, 'dry_run' | 'batches' | 'aborted' | 'more'> &
    Partial<Pick<DetectStaleTasksResult, 'resume'>>,
): DetectStaleTasksResult {
  const by_action: DetectStaleTasksResult['by_action'] = {};
  const by_reason: DetectStaleTasksResult['by_reason'] = {};
  const by_state: Record<string, number> = {};
  const invalid = new Map<string, InvalidTemplate>();
  let failures = 0;
  for (const t of tasks) {
    by_action[t.action_taken] = (by_action[t.action_taken] ?? 0) + 1;
    if (t.dlq_reason) by_reason[t.dlq_reason] = (by_reason[t.dlq_reason] ?? 0) + 1;
    by_state[t.current_state] = (by_state[t.current_state] ?? 0) + 1;
    if (!run.dry_run && isFailure(t.action_taken, t.planned_action)) failures += 1;
    if (t.template_problems.length > 0 && !invalid.has(t.named_task_uuid)) {
      invalid.set(t.named_task_uuid, {
        named_task_uuid: t.named_task_uuid,
        namespace_name: t.namespace_name,
        task_name: t.task_name,
        problems: t.template_problems,
      });
    }
  }
  return {
    ...run,
    resume: run.resume ?? null,
    tasks_detected: tasks.length,
    transitioned_to_error: tasks.filter((t) => t.transition_success).length,
    dlq_entries_created: tasks.filter((t) => t.moved_to_dlq).length,
    failures,
    by_action,
    by_reason,
    by_state,
    invalid_templates: [...invalid.values()],
    template_problems: Object.fromEntries(
      [...invalid.values()].map((t) => [`${t.namespace_name}/${t.task_name}`, t.problems]),
    ),
    tasks,
  };
}
