import { z } from 'zod';
import { findEntry, investigationQueue, listEntries, statsByReason } from '../../db/queries/dlq.ts';
import {
  findGroup,
  groupEntries,
  groupOfEntry,
  listGroups,
  ungroupedPending,
} from '../../db/queries/dlq-groups.ts';
import { databaseNow } from '../../db/queries/server.ts';
import { templateOfTask } from '../../db/queries/templates.ts';
import { TERMINAL_RESOLUTION_STATUSES } from '../../domain/dlq.ts';
import type { EnrichedDetails } from '../../domain/dlq-enrichment.ts';
import { GROUP_ENTRY_STATUSES, type GroupEntryStatus, templateLabel } from '../../domain/dlq-groups.ts';
import { enrichmentLine } from '../../domain/enrichment-words.ts';
import { whyStale } from '../../domain/why-stale.ts';
import { NotFoundError, UsageError } from '../../errors.ts';
import { bulkResolve, openInvestigation, resolveInvestigation } from '../../operations/investigations.ts';
import {
  dlqReason,
  finalResolutionStatus,
  groupEntryStatus,
  groupFingerprint,
  investigationNotes,
  namespaceName,
  personName,
  resolutionStatus,
  rowOffset,
  taskTemplateName,
} from '../../validation/fields.ts';
import { uuid, wholeNumber } from '../../validation/values.ts';
import type { Command } from '../command.ts';
import { diagnosisLines } from '../diagnosis.ts';
import { formatMinutes, printable, printableLines, printFields, printJson, printTable } from '../output.ts';
import { cliActor } from './token.ts';

/** The investigation commands: dlq list | show | resolve | add | stats | queue | groups | group. */

/** The fingerprint of a set of entries a bulk preview returns (64 hex digits). */
const entrySetFingerprint = z
  .string()
  .regex(/^[0-9a-f]{64}$/, { error: "expected the 'set' a preview printed (64 hex digits)" });

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
    const pool = runtime.get().reads();
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
    const pool = runtime.get().reads();
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
    // Its group: the cause it shares with other entries (issue 27).
    const group = await groupOfEntry(pool, entry.dlq_entry_uuid);
    io.stdout.write(
      group
        ? `group: ${group.fingerprint} ${printable(group.diagnosis)} (${group.pending} pending, ${group.resolved} resolved; \`dlq group ${group.fingerprint}\`)\n`
        : 'group: none yet (an entry joins the group of its cause when it is enriched)\n',
    );
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
  summary:
    'End a pending investigation with a final status, notes and who resolved it; or, with --group, every pending entry of a group (a preview unless --yes).',
  args: {
    flags: {
      group: {
        type: 'string',
        placeholder: 'FINGERPRINT',
        schema: groupFingerprint,
        description:
          'instead of one entry: every pending entry of this group (`dlq groups`), in one transaction',
      },
      yes: {
        type: 'boolean',
        description:
          'with --group: resolve them (without it, only say how many would be resolved, and which)',
      },
      'expected-fingerprint': {
        type: 'string',
        placeholder: 'SHA256',
        schema: entrySetFingerprint,
        description:
          "with --group --yes: resolve only if exactly the entries the preview showed are pending (its 'set' line), else nothing",
      },
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
    positionals: [{ name: 'entry_uuid', schema: uuid, optional: true }],
  },
  async run({ flags, positionals }, ctx) {
    const { io, runtime } = ctx;
    const group = flags.group as string | undefined;
    if (group !== undefined && positionals[0] !== undefined) {
      throw new UsageError(
        `give either <entry_uuid> or --group FINGERPRINT, not both (got ${positionals[0]} and ${group})`,
      );
    }
    if (group !== undefined) return resolveGroup(flags, group, ctx);
    if (positionals[0] === undefined) throw new UsageError('missing <entry_uuid> (or --group FINGERPRINT)');
    if (flags.yes || flags['expected-fingerprint'] !== undefined) {
      throw new UsageError('--yes and --expected-fingerprint go with --group FINGERPRINT');
    }
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
    const rows = await statsByReason(runtime.get().reads());
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
    const rows = await investigationQueue(runtime.get().reads(), (flags.limit as number | undefined) ?? 100);
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

/** `dlq resolve --group`: a preview of the group's pending entries, or, with --yes, all of them resolved. */
async function resolveGroup(
  flags: Record<string, unknown>,
  fingerprint: string,
  { io, runtime }: Parameters<Command['run']>[1],
): Promise<void> {
  const { pool } = runtime.get();
  const now = await databaseNow(pool);
  const group = await findGroup(pool, fingerprint, now);
  if (!group)
    throw new NotFoundError(`no group of investigations has fingerprint ${fingerprint} (see \`dlq groups\`)`);
  const actor = cliActor(flags, io);
  const result = await bulkResolve(pool, {
    filter: { group: fingerprint },
    status: flags.status as never,
    notes: flags.notes as string,
    dryRun: flags.yes !== true,
    previewLimit: 10,
    expectFingerprint: flags['expected-fingerprint'] as string | undefined,
    actor,
    now,
  });
  if (flags.json) return printJson(io.stdout, { group: fingerprint, diagnosis: group.diagnosis, ...result });
  const label = `${group.diagnosis} (${templateLabel({ namespace_name: group.template.namespace, task_name: group.template.name, template_version: group.template.version })}, ${group.dlq_reason})`;
  if (!result.dry_run) {
    io.stdout.write(
      `resolved ${result.resolved} pending ${result.resolved === 1 ? 'entry' : 'entries'} of group ${fingerprint} as ${String(flags.status)}: ${printable(label)}${result.audit_id === null ? '' : ` (audit row ${result.audit_id})`}\n`,
    );
    return;
  }
  if (result.matched === 0) {
    io.stdout.write(`no pending entry in group ${fingerprint}: ${printable(label)}; nothing to resolve\n`);
    return;
  }
  io.stdout.write(
    `would resolve ${result.matched} pending ${result.matched === 1 ? 'entry' : 'entries'} of group ${fingerprint} as ${String(flags.status)}: ${printable(label)}\n`,
  );
  io.stdout.write(`set: ${result.fingerprint}\n`);
  io.stdout.write(`first ${result.entries.length}, oldest first:\n`);
  for (const e of result.entries)
    io.stdout.write(`  ${e.dlq_entry_uuid}  task ${e.task_uuid}  since ${e.dlq_timestamp.toISOString()}\n`);
  io.stdout.write(
    `nothing was changed. To resolve exactly these, run it again with --yes --expected-fingerprint ${result.fingerprint}\n`,
  );
}

export const dlqGroupsCommand: Command = {
  name: 'dlq groups',
  summary:
    'Pending investigations grouped by cause (failure fingerprint), most pending first: counts, template, reason, shared diagnosis.',
  args: {
    flags: {
      reason: {
        type: 'string',
        placeholder: 'R',
        schema: dlqReason,
        description: 'only groups of this reason',
      },
      namespace: {
        type: 'string',
        placeholder: 'NAME',
        schema: namespaceName,
        description: "only groups of this template's namespace",
      },
      template: {
        type: 'string',
        placeholder: 'NAME',
        schema: taskTemplateName,
        description: 'only groups of this template',
      },
      'min-age-minutes': {
        type: 'string',
        placeholder: 'N',
        schema: wholeNumber(0, 525_600),
        description: 'only groups whose oldest pending entry has waited at least N minutes',
      },
      overdue: {
        type: 'boolean',
        description: 'only groups with a pending entry older than dlq.max_pending_age_hours',
      },
      'include-resolved': { type: 'boolean', description: 'also groups with no pending entry left' },
      limit: limitFlag(50),
      offset: {
        type: 'string',
        placeholder: 'N',
        schema: rowOffset,
        description: 'groups to skip (default 0)',
      },
    },
  },
  async run({ flags }, { io, runtime }) {
    const pool = runtime.get().reads();
    const now = await databaseNow(pool);
    const [page, ungrouped] = await Promise.all([
      listGroups(
        pool,
        {
          reason: flags.reason as never,
          namespace: flags.namespace as string | undefined,
          template: flags.template as string | undefined,
          minAgeMinutes: flags['min-age-minutes'] as number | undefined,
          overdueOnly: flags.overdue === true,
          includeResolved: flags['include-resolved'] === true,
        },
        {
          limit: (flags.limit as number | undefined) ?? 50,
          offset: (flags.offset as number | undefined) ?? 0,
        },
        now,
      ),
      ungroupedPending(pool, 10_000),
    ]);
    if (flags.json) return printJson(io.stdout, { ...page, ungrouped_pending: ungrouped });
    if (page.groups.length === 0) io.stdout.write('no group of investigations matches\n');
    else
      printTable(io.stdout, page.groups, [
        { header: 'pending', value: (g) => (g.overdue ? `${g.pending} (overdue)` : g.pending) },
        { header: 'resolved', value: (g) => g.resolved },
        { header: 'last_24h', value: (g) => spark(g.trend.map((p) => p.pending)) },
        { header: 'reason', value: (g) => g.dlq_reason },
        { header: 'state', value: (g) => g.original_state },
        {
          header: 'template',
          value: (g) =>
            templateLabel({
              namespace_name: g.template.namespace,
              task_name: g.template.name,
              template_version: g.template.version,
            }),
        },
        { header: 'fingerprint', value: (g) => g.fingerprint },
        { header: 'diagnosis', value: (g) => g.diagnosis },
      ]);
    io.stdout.write(
      `${page.total} ${page.total === 1 ? 'group' : 'groups'}, ${page.total_pending} pending ${page.total_pending === 1 ? 'entry' : 'entries'}${page.total > page.groups.length ? ` (${page.groups.length} shown; --offset for more)` : ''}\n`,
    );
    if (ungrouped.count > 0) {
      io.stdout.write(
        `${ungrouped.more ? 'more than ' : ''}${ungrouped.count} pending ${ungrouped.count === 1 && !ungrouped.more ? 'entry is' : 'entries are'} in no group yet (not enriched yet): see \`dlq queue\`\n`,
      );
    }
  },
};

export const dlqGroupCommand: Command = {
  name: 'dlq group',
  summary:
    'One group of investigations: what its entries share, its counts and last 24 hours, and its entries.',
  args: {
    flags: {
      status: {
        type: 'string',
        placeholder: 'S',
        schema: groupEntryStatus,
        description: `which entries: ${GROUP_ENTRY_STATUSES.join(', ')} (default pending)`,
      },
      limit: limitFlag(50),
      offset: {
        type: 'string',
        placeholder: 'N',
        schema: rowOffset,
        description: 'entries to skip (default 0)',
      },
    },
    positionals: [{ name: 'fingerprint', schema: groupFingerprint }],
  },
  async run({ flags, positionals }, { io, runtime }) {
    const pool = runtime.get().reads();
    const now = await databaseNow(pool);
    const fingerprint = positionals[0] as string;
    const group = await findGroup(pool, fingerprint, now);
    if (!group)
      throw new NotFoundError(
        `no group of investigations has fingerprint ${fingerprint} (see \`dlq groups\`)`,
      );
    const status = (flags.status as GroupEntryStatus | undefined) ?? 'pending';
    const entries = await groupEntries(
      pool,
      group,
      {
        status,
        limit: (flags.limit as number | undefined) ?? 50,
        offset: (flags.offset as number | undefined) ?? 0,
      },
      now,
    );
    if (flags.json) return printJson(io.stdout, { group, entries: { status, ...entries } });
    printFields(io.stdout, {
      fingerprint: group.fingerprint,
      diagnosis: group.diagnosis,
      template: templateLabel({
        namespace_name: group.template.namespace,
        task_name: group.template.name,
        template_version: group.template.version,
      }),
      reason: group.dlq_reason,
      original_state: group.original_state,
      pending: group.overdue ? `${group.pending} (overdue)` : group.pending,
      resolved: group.resolved,
      first_seen: group.first_seen_at,
      last_seen: group.last_seen_at,
      new_since: group.new_at,
      oldest_pending: group.oldest_pending_at,
      sample: group.sample_dlq_entry_uuid,
      rules: group.current_rules
        ? `v${group.rule_version}`
        : `v${group.rule_version} (older: its pending entries move to the current groups)`,
      last_24h: `${spark(group.trend.map((p) => p.pending))}  ${trendLine(group.trend)}`,
    });
    if (group.blocking && group.blocking.length > 0) {
      io.stdout.write(
        `blocking:\n${indent(group.blocking.map((b) => printable(`${b.step}: ${b.error ?? '(no error recorded)'}`)).join('\n'))}\n`,
      );
    }
    io.stdout.write(
      `${entries.total} ${status} ${entries.total === 1 ? 'entry' : 'entries'}${status === 'pending' ? ', longest waiting first' : ', newest first'}:\n`,
    );
    if (entries.entries.length > 0)
      printTable(io.stdout, entries.entries, [
        { header: 'dlq_entry_uuid', value: (e) => e.dlq_entry_uuid },
        { header: 'task_uuid', value: (e) => e.task_uuid },
        { header: 'status', value: (e) => e.resolution_status },
        {
          header: 'in_dlq',
          value: (e) => `${formatMinutes(e.minutes_in_dlq)}${e.overdue ? ' (overdue)' : ''}`,
        },
        { header: 'since', value: (e) => e.dlq_timestamp },
      ]);
    if (group.pending > 0 && status === 'pending')
      io.stdout.write(
        `resolve them all: tasker-lifecycle dlq resolve --group ${group.fingerprint} --status S --notes TEXT (a preview; then --yes)\n`,
      );
  },
};

/** Eight levels of a block, for a trend in a terminal: "▁▁▂▃▅▇". */
function spark(values: readonly number[]): string {
  const peak = Math.max(1, ...values);
  return values.map((v) => '▁▂▃▄▅▆▇█'[Math.min(7, Math.floor((v / peak) * 7.999))]).join('');
}

function trendLine(points: ReadonlyArray<{ pending: number; opened: number; resolved: number }>): string {
  const opened = points.reduce((n, p) => n + p.opened, 0);
  const resolved = points.reduce((n, p) => n + p.resolved, 0);
  return `pending ${points[0]?.pending ?? 0} -> ${points.at(-1)?.pending ?? 0}; ${opened} opened, ${resolved} resolved`;
}

function indent(s: string): string {
  return s
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}
