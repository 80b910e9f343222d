import { type BoundedList, isEnriched } from '../domain/dlq-enrichment.ts';
import { errorText } from '../domain/enrichment-words.ts';
import { formatMinutes } from './output.ts';

/**
 * The diagnosis as lines for a terminal: the summary first, then what blocks, what is out of
 * retries, the cycle and the oldest waiting step; then what was cut. No lines when not enriched.
 */
export function diagnosisLines(snapshot: Record<string, unknown>): string[] {
  if (!isEnriched(snapshot)) return [];
  const { enrichment: e, diagnosis: d, counts } = snapshot;
  const lines = [`summary: ${d.summary}`];
  lines.push(
    `enriched: ${e.enriched_at} (detail ${e.detail_level}${e.detail_level === e.requested_detail ? '' : `, asked for ${e.requested_detail}`})`,
  );
  if (counts) {
    const states = Object.entries(counts.steps_by_state)
      .map(([state, n]) => `${n} ${state}`)
      .join(', ');
    lines.push(
      `steps: ${counts.steps}${states ? ` (${states})` : ''}; edges: ${counts.edges}; transitions: ${counts.step_transitions} step, ${counts.task_transitions} task`,
    );
  }
  for (const b of d.blocking_steps?.items ?? []) {
    const attempts =
      b.max_attempts === null ? `${b.attempts} attempts` : `${b.attempts}/${b.max_attempts} attempts`;
    const parts = [`${b.state} ${formatAge(b.minutes_in_state)}`, attempts];
    if (b.on_cycle) parts.push('on the cycle');
    if (b.waits_on_total > 0) parts.push(`waits on ${names(b.waits_on, b.waits_on_total)}`);
    if (b.blocks_total > 0) parts.push(`blocks ${names(b.blocks, b.blocks_total)}`);
    if (b.downstream_unfinished > 0) parts.push(`${b.downstream_unfinished} unfinished downstream`);
    lines.push(
      `blocking: ${b.name} (${parts.join('; ')})${b.error == null ? '' : `: ${errorText(b.error)}`}`,
    );
  }
  moreLine(lines, 'blocking', d.blocking_steps);
  // A step both blocking and out of retries has its error printed once, on its blocking line.
  const shown = new Set(
    (d.blocking_steps?.items ?? []).filter((b) => b.error != null).map((b) => b.workflow_step_uuid),
  );
  for (const x of d.exhausted_retries?.items ?? []) {
    const why =
      x.why === 'not_retryable' ? 'failed, not retryable' : `${x.attempts}/${x.max_attempts} attempts used`;
    const error =
      x.error == null ? '' : shown.has(x.workflow_step_uuid) ? ' (error above)' : `: ${errorText(x.error)}`;
    lines.push(`out of retries: ${x.name} (${x.state}; ${why})${error}`);
  }
  moreLine(lines, 'out of retries', d.exhausted_retries);
  if (d.cycle?.detected) {
    lines.push(
      `cycle: ${names(
        d.cycle.steps.items.map((s) => s.name),
        d.cycle.steps.total,
      )}`,
    );
  }
  const o = d.oldest_waiting_step;
  if (o) lines.push(`oldest waiting step: ${o.name} (${o.state} ${formatAge(o.minutes_waiting)})`);
  if (e.truncated) {
    const cut = [...e.truncated_lists];
    if (e.truncated_payloads > 0) cut.push(`${e.truncated_payloads} payload(s)`);
    if (e.detail_level !== e.requested_detail) cut.push(`detail reduced to ${e.detail_level}`);
    lines.push(`truncated: ${cut.join(', ')}`);
  }
  return lines;
}

function names(shown: readonly string[], total: number): string {
  return total > shown.length ? `${shown.join(', ')} and ${total - shown.length} more` : shown.join(', ');
}

function moreLine(lines: string[], what: string, list: BoundedList<unknown> | undefined): void {
  if (list?.truncated) lines.push(`${what}: ${list.omitted} more not shown`);
}

function formatAge(minutes: number): string {
  return `for ${formatMinutes(minutes)}`;
}
