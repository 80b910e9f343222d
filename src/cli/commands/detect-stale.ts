import detectStaleTasks, {
  type DetectStaleTasksOptions,
  type DetectStaleTasksResult,
} from '../../../jobs/detect-stale-tasks.ts';
import type { Config } from '../../config/schema.ts';
import { databaseNow } from '../../db/queries/server.ts';
import { wholeNumber } from '../../validation/values.ts';
import type { ArgsSpec } from '../args.ts';
import type { Command } from '../command.ts';
import { chooseDryRun, DRY_RUN_FLAGS, type DryRunChoice, dryRunGiven, modeLine } from '../dry-run.ts';
import { runInline } from '../inline-run.ts';
import { type Out, printable, printFields, printJson, printTable } from '../output.ts';

const DRY_RUN_KEY = 'staleness_detection.dry_run';

/** Flags shared by `detect-stale` (inline) and `enqueue detect-stale` (through the workers). */
export const detectFlags = {
  ...DRY_RUN_FLAGS,
  'batch-size': {
    type: 'string',
    placeholder: 'N',
    schema: wholeNumber(1, 10000),
    description: 'tasks per transaction (default: staleness_detection.batch_size)',
  },
  'max-batches': {
    type: 'string',
    placeholder: 'N',
    schema: wholeNumber(1, 1000),
    description: 'batches in this pass (default: staleness_detection.max_batches_per_run)',
  },
} satisfies ArgsSpec['flags'];

export function detectOptionsFromFlags(
  config: Readonly<Config>,
  flags: Record<string, unknown>,
): DetectStaleTasksOptions {
  const configured = detectStaleTasks.optionsFromConfig(config);
  return detectStaleTasks.optionsSchema.parse({
    ...configured,
    dry_run: chooseDryRun(flags, configured.dry_run, DRY_RUN_KEY).dry_run,
    batch_size: (flags['batch-size'] as number | undefined) ?? configured.batch_size,
    max_batches: (flags['max-batches'] as number | undefined) ?? configured.max_batches,
  });
}

/**
 * Only the options the operator gave, for `enqueue detect-stale`: the worker that runs it fills in
 * the rest from its own configuration (not this process's).
 */
export function detectOptionsGiven(flags: Record<string, unknown>): Partial<DetectStaleTasksOptions> {
  return {
    ...dryRunGiven(flags),
    ...(flags['batch-size'] === undefined ? {} : { batch_size: flags['batch-size'] as number }),
    ...(flags['max-batches'] === undefined ? {} : { max_batches: flags['max-batches'] as number }),
  };
}

export const detectStaleCommand: Command = {
  name: 'detect-stale',
  summary: 'Run one staleness detection pass now, in this process.',
  args: { flags: detectFlags },
  async run({ flags }, { io, runtime, signal }) {
    const rt = runtime.get();
    const options = detectOptionsFromFlags(rt.config, flags);
    const mode = chooseDryRun(flags, rt.config.staleness_detection.dry_run, DRY_RUN_KEY);
    const now = await databaseNow(rt.pool);
    const result = (await runInline(rt, detectStaleTasks, options, {
      now,
      signal,
    })) as DetectStaleTasksResult;
    if (flags.json) return printJson(io.stdout, { ...result, dry_run_set_by: mode.set_by });
    printDetection(io.stdout, result, mode);
  },
};

function printDetection(out: Out, r: DetectStaleTasksResult, mode: DryRunChoice): void {
  if (r.tasks.length > 0) {
    printTable(out, r.tasks, [
      { header: 'task_uuid', value: (t) => t.task_uuid },
      { header: 'template', value: (t) => `${t.namespace_name}/${t.task_name}` },
      { header: 'state', value: (t) => t.current_state },
      { header: 'in_state_min', value: (t) => t.time_in_state_minutes },
      { header: 'threshold_min', value: (t) => t.staleness_threshold_minutes },
      { header: 'stale_by', value: (t) => t.stale_by },
      { header: 'reason', value: (t) => t.dlq_reason },
      { header: 'action', value: (t) => t.action_taken },
    ]);
    out.write('\n');
  }
  printFields(out, {
    mode: modeLine({ ...mode, dry_run: r.dry_run }),
    batches: r.batches,
    tasks_detected: r.tasks_detected,
    transitioned_to_error: r.transitioned_to_error,
    dlq_entries_created: r.dlq_entries_created,
    failures: r.failures,
    ...(r.aborted ? { aborted: 'stopped between batches' } : {}),
  });
  for (const t of r.invalid_templates) {
    out.write(
      `warning: template ${printable(`${t.namespace_name}/${t.task_name}`)} has malformed lifecycle settings (defaults used): ${printable(t.problems.join('; '))}\n`,
    );
  }
}
