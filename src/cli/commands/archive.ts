import { z } from 'zod';
import archiveFinishedTasks, {
  type ArchiveFinishedTasksOptions,
  type ArchiveFinishedTasksResult,
  type ArchiveProgress,
  runArchival,
} from '../../../jobs/archive-finished-tasks.ts';
import type { Config } from '../../config/schema.ts';
import { restoreFromExport } from '../../db/archive-export.ts';
import type { Db } from '../../db/pool.ts';
import { countArchiveCandidates } from '../../db/queries/archive.ts';
import { databaseNow } from '../../db/queries/server.ts';
import { checkTemplateFilter, templateFilterProblem } from '../../db/queries/templates.ts';
import { UsageError } from '../../errors.ts';
import { MAX_HOLD_DAYS, restoreArchivedTask } from '../../operations/archive.ts';
import { namespaceName, taskTemplateName } from '../../validation/fields.ts';
import { uuid, wholeNumber } from '../../validation/values.ts';
import type { FlagSpec } from '../args.ts';
import type { Command } from '../command.ts';
import { chooseDryRun, DRY_RUN_FLAGS, type DryRunChoice, dryRunGiven, modeLine } from '../dry-run.ts';
import { runInline } from '../inline-run.ts';
import { type Out, printFields, printJson } from '../output.ts';
import { BY_FLAG, cliActor } from './token.ts';

/**
 * archive (one archival run, inline) and restore (one archived task graph back). ARCHIVE_FLAGS and
 * archiveOptionsFromFlags are the archive command's flags and their meaning, exported so that
 * `enqueue archive` takes exactly the same flags.
 */

const finishedBefore = z.string().transform((v, ctx) => {
  const iso = /^\d{4}-\d{2}-\d{2}$/.test(v) ? `${v}T00:00:00Z` : v;
  const valid = z.iso.datetime({ offset: true }).safeParse(iso).success && !Number.isNaN(Date.parse(iso));
  if (!valid) {
    ctx.addIssue({
      code: 'custom',
      message:
        'expected an ISO 8601 time with a zone, such as 2026-05-01T00:00:00Z, or a date such as 2026-05-01 (UTC)',
    });
    return z.NEVER;
  }
  return new Date(iso).toISOString();
});

export const ARCHIVE_FLAGS = {
  ...DRY_RUN_FLAGS,
  'retention-days': {
    type: 'string',
    placeholder: 'N',
    schema: wholeNumber(1, 3650),
    description: 'days in the final state before a task is archived (default: archive.retention_days)',
  },
  'batch-size': {
    type: 'string',
    placeholder: 'N',
    schema: wholeNumber(1, 10000),
    description: 'task graphs per transaction, to start with (default: archive.archive_batch_size)',
  },
  'max-batches': {
    type: 'string',
    placeholder: 'N',
    schema: wholeNumber(1, 100000),
    description: 'batches in this run (default: archive.max_batches_per_run)',
  },
  'batch-target-ms': {
    type: 'string',
    placeholder: 'MS',
    schema: wholeNumber(10, 600000),
    description:
      "how long each batch should take: batches are sized from the last one's pace (default: archive.batch_target_ms)",
  },
  'duty-cycle-percent': {
    type: 'string',
    placeholder: 'N',
    schema: wholeNumber(1, 100),
    description:
      "share of the run's wall time spent in batches; the rest is pauses that let the live workload through (default: archive.duty_cycle_percent)",
  },
  namespace: {
    type: 'string',
    placeholder: 'NAME',
    schema: namespaceName,
    description: 'only tasks of templates in this namespace',
  },
  template: {
    type: 'string',
    placeholder: 'NAME',
    schema: taskTemplateName,
    description: 'only tasks of templates with this name (any version)',
  },
  'finished-before': {
    type: 'string',
    placeholder: 'TIME',
    schema: finishedBefore,
    description: 'only tasks that entered their final state before TIME as well (ISO 8601, or a date in UTC)',
  },
} as const satisfies Record<string, FlagSpec>;

/** The archival options a run with these flags uses: the configuration, overridden by each flag given. */
export function archiveOptionsFromFlags(
  config: Readonly<Config>,
  flags: Record<string, unknown>,
): ArchiveFinishedTasksOptions {
  const configured = archiveFinishedTasks.optionsFromConfig(config);
  const result = archiveFinishedTasks.optionsSchema.safeParse({
    ...configured,
    ...archiveOptionsGiven(flags),
    dry_run: chooseDryRun(flags, configured.dry_run, 'archive.dry_run').dry_run,
  });
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new UsageError(
      `archival options ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'not allowed'}`,
    );
  }
  return result.data;
}

/** A --namespace / --template that names no template is bad input (exit 2), never a run that fails. */
export async function refuseUnmatchedTemplateFilter(
  db: Db,
  options: Pick<ArchiveFinishedTasksOptions, 'namespace' | 'task_name'>,
): Promise<void> {
  const filter = { namespace: options.namespace, taskName: options.task_name };
  if (filter.namespace == null && filter.taskName == null) return;
  const problem = templateFilterProblem(filter, await checkTemplateFilter(db, filter));
  if (problem !== undefined) throw new UsageError(problem);
}

/**
 * Only the options the operator gave, for `enqueue archive`: the worker that runs it fills in the
 * rest from its own configuration (not this process's).
 */
export function archiveOptionsGiven(flags: Record<string, unknown>): Partial<ArchiveFinishedTasksOptions> {
  const given: Record<string, unknown> = {
    ...dryRunGiven(flags),
    retention_days: flags['retention-days'],
    batch_size: flags['batch-size'],
    max_batches: flags['max-batches'],
    batch_target_ms: flags['batch-target-ms'],
    duty_cycle_percent: flags['duty-cycle-percent'],
    namespace: flags.namespace,
    task_name: flags.template,
    finished_before: flags['finished-before'],
  };
  return Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
}

export const archiveCommand: Command = {
  name: 'archive',
  summary: 'Run one archival pass now, in this process: finished task graphs to the archive tables.',
  args: { flags: ARCHIVE_FLAGS },
  async run({ flags }, { io, runtime, signal }) {
    const rt = runtime.get();
    const options = archiveOptionsFromFlags(rt.config, flags);
    const mode = chooseDryRun(flags, rt.config.archive.dry_run, 'archive.dry_run');
    await refuseUnmatchedTemplateFilter(rt.pool, options);
    const now = await databaseNow(rt.pool);
    let bar: ProgressBar | undefined;
    if (io.isTTY && flags.json !== true) {
      const estimate = await countArchiveCandidates(
        rt.pool,
        {
          now,
          retentionDays: options.retention_days,
          policies: options.policies,
          namespace: options.namespace,
          taskName: options.task_name,
          finishedBefore: options.finished_before === null ? null : new Date(options.finished_before),
        },
        Math.min(options.batch_size * options.max_batches, 1_000_000),
      );
      bar = new ProgressBar(io.stdout, estimate, options.dry_run);
    }
    const result = await runInline(rt, archiveFinishedTasks, options, { now, signal }, (ctx) =>
      runArchival(ctx, options, (p) => bar?.update(p)),
    );
    bar?.finish();
    if (flags.json) return printJson(io.stdout, { ...result, dry_run_set_by: mode.set_by });
    printArchival(io.stdout, result, mode);
  },
};

export const restoreCommand: Command = {
  name: 'restore',
  summary:
    'Move one archived task graph back to the live tables, exactly as it was; --hold-days keeps it out of archival meanwhile.',
  args: {
    flags: {
      'hold-days': {
        type: 'string',
        placeholder: 'N',
        schema: wholeNumber(1, MAX_HOLD_DAYS),
        description:
          'hold it out of archival for N days (else a task past archive.retention_days is archived again by the next run)',
      },
      from: {
        type: 'string',
        placeholder: 'DIR',
        schema: z.string().min(1, { error: 'expected a directory' }),
        description: 'restore from a month exported there by `archive export` (after the month was dropped)',
      },
      by: BY_FLAG,
    },
    positionals: [{ name: 'task_uuid', schema: uuid }],
  },
  async run({ flags, positionals }, { io, runtime }) {
    const { pool, config } = runtime.get();
    const taskUuid = positionals[0] as string;
    if (flags.from !== undefined) {
      if (flags['hold-days'] !== undefined) throw new UsageError('--hold-days and --from: give one of them');
      const fromExport = await restoreFromExport(pool, { directory: flags.from as string, taskUuid });
      if (flags.json) return printJson(io.stdout, { task_uuid: taskUuid, ...fromExport });
      io.stdout.write(`restored task ${taskUuid} from ${flags.from as string}\n`);
      return printFields(io.stdout, fromExport);
    }
    // Audited like a restore through the API: the row commits with the move (and the hold).
    const restored = await restoreArchivedTask(pool, {
      taskUuid,
      holdDays: flags['hold-days'] as number | undefined,
      retentionDays: config.archive.retention_days,
      actor: cliActor(flags, io),
      now: await databaseNow(pool),
    });
    if (flags.json) return printJson(io.stdout, restored);
    const { task_uuid, archival, past_retention, held_until, state, state_entered_at, ...rows } = restored;
    io.stdout.write(
      `restored task ${task_uuid} (${state ?? 'no state'} since ${state_entered_at?.toISOString() ?? '-'})\n`,
    );
    printFields(io.stdout, { ...rows, archival });
    if (past_retention && held_until === null) {
      io.stderr.write(`warning: ${archival}; restore with --hold-days N to keep it live for N days\n`);
    }
  },
};

function printArchival(out: Out, r: ArchiveFinishedTasksResult, mode: DryRunChoice): void {
  const would = r.dry_run ? ' (would be archived)' : '';
  printFields(out, {
    mode: modeLine({ ...mode, dry_run: r.dry_run }),
    cutoff: `${r.cutoff} (tasks that entered their final state before this)`,
    stopped_by: r.stopped_by,
    batches: r.batches,
    tasks_archived: `${r.tasks_archived}${would}`,
    steps_archived: r.steps_archived,
    transitions_archived: r.transitions_archived,
    edges_archived: r.edges_archived,
    step_transitions_archived: r.step_transitions_archived,
    dlq_entries_archived: r.dlq_entries_archived,
    rows_archived: r.rows_archived,
    tasks_skipped: r.tasks_skipped,
    timeouts: r.timeouts,
    final_batch_size: r.final_batch_size,
    longest_batch_ms: r.longest_batch_ms,
    duration_ms: r.duration_ms,
  });
}

/** One line, redrawn in place: how far the run is against the (approximate) number of candidates. */
export class ProgressBar {
  readonly #out: Out;
  readonly #estimate: number;
  readonly #dryRun: boolean;
  readonly #started = performance.now();
  #drawn = false;

  constructor(out: Out, estimate: number, dryRun: boolean) {
    this.#out = out;
    this.#estimate = estimate;
    this.#dryRun = dryRun;
  }

  update(p: ArchiveProgress): void {
    if (p.kind !== 'batch') return;
    this.#out.write(`\r\x1b[2K${this.render(p.totals.tasks_archived, p.batch, p.batch_size)}`);
    this.#drawn = true;
  }

  render(done: number, batch: number, batchSize: number): string {
    const total = Math.max(this.#estimate, done);
    const fraction = total === 0 ? 1 : done / total;
    const width = 30;
    const filled = Math.round(fraction * width);
    const seconds = (performance.now() - this.#started) / 1000;
    const rate = seconds > 0 ? Math.round(done / seconds) : 0;
    const verb = this.#dryRun ? 'dry run' : 'archiving';
    return `${verb} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${Math.round(fraction * 100)}% ${done}/~${total} tasks, batch ${batch} (${batchSize} per batch), ${rate} tasks/s`;
  }

  finish(): void {
    if (this.#drawn) this.#out.write('\n');
  }
}
