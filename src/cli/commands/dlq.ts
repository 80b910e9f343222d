import { findEntry, investigationQueue, listEntries, statsByReason } from '../../db/queries/dlq.ts';
import { databaseNow } from '../../db/queries/server.ts';
import { templateOfTask } from '../../db/queries/templates.ts';
import { TERMINAL_RESOLUTION_STATUSES } from '../../domain/dlq.ts';
import type { EnrichedDetails } from '../../domain/dlq-enrichment.ts';
import { enrichmentLine } from '../../domain/enrichment-words.ts';
import { whyStale } from '../../domain/why-stale.ts';
import { NotFoundError, UsageError } from '../../errors.ts';
import { openInvestigation, resolveInvestigation } from '../../operations/investigations.ts';
import {
  dlqReason,
  finalResolutionStatus,
  investigationNotes,
  personName,
  resolutionStatus,
  rowOffset,
} from '../../validation/fields.ts';
import { uuid, wholeNumber } from '../../validation/values.ts';
import type { Command } from '../command.ts';
import { diagnosisLines } from '../diagnosis.ts';
import { formatMinutes, printable, printableLines, printFields, printJson, printTable } from '../output.ts';
import { cliActor } from './token.ts';

/** The investigation commands: dlq list | show | resolve | add | stats | queue. */

const limitFlag = (def: number) =>
  ({
    type: 'string',
    placeholder: 'N',
    schema: wholeNumber(1, 1000),
    description: `rows to show (default ${def})`,
  }) as const;

export const dlqListCommand: Command = {
  name: 'dlq list',
  summary: 'List investigations, newest first.',
  args: {
    flags: {
      status: {
        type: 'string',
        placeholder: 'S',
        schema: resolutionStatus,
        description: 'only this status',
      },
      reason: {
        type: 'string',
        placeholder: 'R',
        schema: dlqReason,
        description: 'only this reason',
      },
      overdue: { type: 'boolean', description: 'only pending entries older than dlq.max_pending_age_hours' },
      limit: limitFlag(50),
      offset: {
        type: 'string',
        placeholder: 'N',
        schema: rowOffset,
        description: 'rows to skip (default 0)',
      },
    },
  },
  async run({ flags }, { io, runtime }) {
    const { pool } = runtime.get();
    const rows = await listEntries(pool, {
      status: flags.status as never,
      reason: flags.reason as never,
      overdueOnly: flags.overdue === true,
      limit: (flags.limit as number | undefined) ?? 50,
      offset: (flags.offset as number | undefined) ?? 0,
      now: await databaseNow(pool),
    });
    if (flags.json) return printJson(io.stdout, rows);
    if (rows.length === 0) return void io.stdout.write('no DLQ entries match\n');
    printTable(io.stdout, rows, [
      { header: 'dlq_entry_uuid', value: (r) => r.dlq_entry_uuid },
      { header: 'task_uuid', value: (r) => r.task_uuid },
      { header: 'reason', value: (r) => r.dlq_reason },
      {
        header: 'status',
        value: (r) => (r.overdue ? `${r.resolution_status} (overdue)` : r.resolution_status),
      },
      { header: 'original_state', value: (r) => r.original_state },
      { header: 'in_dlq', value: (r) => formatMinutes(r.minutes_in_dlq) },
      {
        header: 'template',
        value: (r) => `${r.task_snapshot.namespace ?? '?'}/${r.task_snapshot.task_name ?? '?'}`,
      },
    ]);
  },
};

export const dlqShowCommand: Command = {
  name: 'dlq show',
  summary:
    'Show one investigation, by entry uuid or by task uuid (its most recent entry): why it was opened and the diagnosis first.',
  args: {
    flags: {
      snapshot: {
        type: 'boolean',
        description: 'also print the whole task snapshot (steps, history, graph: long); --json always has it',
      },
    },
    positionals: [{ name: 'entry_or_task_uuid', schema: uuid }],
  },
  async run({ flags, positionals }, { io, runtime }) {
    const { pool } = runtime.get();
    const id = positionals[0] as string;
    const entry = await findEntry(pool, id);
    if (!entry) throw new NotFoundError(`no DLQ entry and no task with entries has uuid ${id}`);
    if (flags.json) return printJson(io.stdout, entry);
    const { task_snapshot, metadata, ...fields } = entry;
    // What happened first: the entry, why it was opened (with the setting that applied), the
    // diagnosis, what is wrong with the template's settings. The snapshot only when asked.
    const template = await templateOfTask(pool, entry.task_uuid);
    const snapshotTemplate = task_snapshot.template as EnrichedDetails['template'] | undefined;
    const lifecycle = template
      ? (template.lifecycle ?? undefined)
      : snapshotTemplate
        ? ((snapshotTemplate.configuration ?? {}) as Record<string, unknown>).lifecycle
        : undefined;
    printFields(io.stdout, {
      template: `${String(task_snapshot.namespace ?? '?')}/${String(task_snapshot.task_name ?? '?')}`,
      ...fields,
    });
    const why = whyStale({
      reason: entry.dlq_reason,
      originalState: entry.original_state,
      metadata,
      lifecycle,
    });
    if (why) io.stdout.write(`why: ${printable(why)}\n`);
    // Where enrichment stands (awaiting, enriched, failing with its next attempt, given up).
    io.stdout.write(`enrichment: ${printable(enrichmentLine(task_snapshot))}\n`);
    const diagnosis = diagnosisLines(task_snapshot).map(printable);
    if (diagnosis.length > 0) io.stdout.write(`diagnosis:\n${indent(diagnosis.join('\n'))}\n`);
    const problems = template ? template.problems : [];
    if (problems.length > 0) {
      io.stdout.write(
        `template problems (detection ignores these settings and uses the global defaults):\n${indent(problems.map(printable).join('\n'))}\n`,
      );
    }
    io.stdout.write(`metadata: ${printable(JSON.stringify(metadata))}\n`);
    if (flags.snapshot) {
      io.stdout.write(`task_snapshot:\n${indent(printableLines(JSON.stringify(task_snapshot, null, 2)))}\n`);
    } else {
      const lines = JSON.stringify(task_snapshot, null, 2).split('\n').length;
      io.stdout.write(
        `task_snapshot: ${lines} lines, not shown (--snapshot prints it; --json gives everything)\n`,
      );
    }
  },
};

export const dlqResolveCommand: Command = {
  name: 'dlq resolve',
  summary: 'End a pending investigation with a final status, notes and who resolved it.',
  args: {
    flags: {
      status: {
        type: 'string',
        placeholder: 'S',
        required: true,
        schema: finalResolutionStatus,
        description: `final status: ${TERMINAL_RESOLUTION_STATUSES.join(', ')}`,
      },
      notes: {
        type: 'string',
        placeholder: 'TEXT',
        required: true,
        schema: investigationNotes,
        description: 'what was found and done',
      },
      by: {
        type: 'string',
        placeholder: 'NAME',
        schema: personName,
        description: 'who resolved it (default: $USER)',
      },
    },
    positionals: [{ name: 'entry_uuid', schema: uuid }],
  },
  async run({ flags, positionals }, { io, runtime }) {
    const { pool } = runtime.get();
    const actor = cliActor(flags, io);
    const entry = await resolveInvestigation(pool, {
      uuid: positionals[0] as string,
      status: flags.status as never,
      notes: flags.notes as string,
      actor,
      now: await databaseNow(pool),
    });
    if (flags.json) return printJson(io.stdout, entry);
    io.stdout.write(
      `resolved ${entry.dlq_entry_uuid} as ${entry.resolution_status} after ${formatMinutes(entry.minutes_in_dlq)} in the DLQ\n`,
    );
  },
};

export const dlqAddCommand: Command = {
  name: 'dlq add',
  summary: 'Open a manual_dlq investigation for a task (the task itself is not changed).',
  args: {
    flags: {
      notes: {
        type: 'string',
        placeholder: 'TEXT',
        required: true,
        schema: investigationNotes,
        description: 'why it needs looking at',
      },
      by: {
        type: 'string',
        placeholder: 'NAME',
        schema: personName,
        description: 'who opened it (default: $USER)',
      },
    },
    positionals: [{ name: 'task_uuid', schema: uuid }],
  },
  async run({ flags, positionals }, { io, runtime }) {
    const { pool, config } = runtime.get();
    if (!config.dlq.enabled)
      throw new UsageError('the DLQ is disabled (dlq.enabled = false): no investigations can be opened');
    if (!config.dlq.reasons.manual_dlq) {
      throw new UsageError('manual investigations are disabled (dlq.reasons.manual_dlq = false)');
    }
    const entry = await openInvestigation(pool, {
      taskUuid: positionals[0] as string,
      notes: flags.notes as string,
      actor: cliActor(flags, io),
      now: await databaseNow(pool),
    });
    if (flags.json) return printJson(io.stdout, entry);
    io.stdout.write(
      `opened ${entry.dlq_entry_uuid} (manual_dlq) for task ${entry.task_uuid} in ${entry.original_state}\n`,
    );
  },
};

export const dlqStatsCommand: Command = {
  name: 'dlq stats',
  summary: 'Investigations by reason: totals, per status, age (v_dlq_dashboard).',
  args: { flags: {} },
  async run({ flags }, { io, runtime }) {
    const rows = await statsByReason(runtime.get().pool);
    if (flags.json) return printJson(io.stdout, rows);
    if (rows.length === 0) return void io.stdout.write('no DLQ entries yet\n');
    printTable(io.stdout, rows, [
      { header: 'reason', value: (r) => r.dlq_reason },
      { header: 'total', value: (r) => r.total_entries },
      { header: 'pending', value: (r) => r.pending },
      { header: 'resolved', value: (r) => r.manually_resolved },
      { header: 'failed', value: (r) => r.permanent_failures },
      { header: 'cancelled', value: (r) => r.cancelled },
      {
        header: 'avg_time_in_dlq',
        value: (r) => formatMinutes(Math.round(r.avg_resolution_time_minutes ?? 0)),
      },
      { header: 'newest', value: (r) => r.newest_entry },
    ]);
  },
};

export const dlqQueueCommand: Command = {
  name: 'dlq queue',
  summary: 'Pending investigations, most urgent first (v_dlq_investigation_queue).',
  args: { flags: { limit: limitFlag(100) } },
  async run({ flags }, { io, runtime }) {
    const rows = await investigationQueue(runtime.get().pool, (flags.limit as number | undefined) ?? 100);
    if (flags.json) return printJson(io.stdout, rows);
    if (rows.length === 0) return void io.stdout.write('no pending investigations\n');
    printTable(io.stdout, rows, [
      { header: 'score', value: (r) => r.priority_score },
      { header: 'dlq_entry_uuid', value: (r) => r.dlq_entry_uuid },
      { header: 'reason', value: (r) => r.dlq_reason },
      { header: 'template', value: (r) => `${r.namespace_name ?? '?'}/${r.task_name ?? '?'}` },
      { header: 'original_state', value: (r) => r.original_state },
      {
        header: 'in_dlq',
        value: (r) => `${formatMinutes(r.minutes_in_dlq)}${r.overdue ? ' (overdue)' : ''}`,
      },
      { header: 'task_uuid', value: (r) => r.task_uuid },
    ]);
  },
};

function indent(s: string): string {
  return s
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}
