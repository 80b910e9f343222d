import type { ArchiveHold } from '../../db/queries/archive-holds.ts';
import { otherInvestigationsOfTask } from '../../db/queries/dlq-console.ts';
import { groupOfEntry } from '../../db/queries/dlq-groups.ts';
import type { TaskTemplate } from '../../db/queries/templates.ts';
import { type DlqEntry, resolverText, TERMINAL_RESOLUTION_STATUSES } from '../../domain/dlq.ts';
import type { EnrichedDetails, FullEnrichedSnapshot } from '../../domain/dlq-enrichment.ts';
import { enrichmentState, isEnriched } from '../../domain/dlq-enrichment.ts';
import { enrichmentWords } from '../../domain/enrichment-words.ts';
import { whyStale } from '../../domain/why-stale.ts';
import { graphSvg, layoutGraph } from './graph.ts';
import { formatMinutes, formatTime, html, jsonPreview, type SafeHtml } from './html.ts';
import { csrfInput, type PageContext } from './layout.ts';

/**
 * One investigation: what happened first (why it was opened, in one line with the setting that
 * applied; the summary and diagnosis), then the resolve form or who resolved it, the graph, the
 * timeline, the steps (failed first, then in dependency order), the template's lifecycle settings
 * and their problems, and the task's other investigations. The diagnosis and history come from the
 * entry's snapshot, as enrichment wrote it; the template's settings from the engine when the task
 * is live.
 */

/** What the operator typed into the resolve form and did not get saved (a refusal, an ended session). */
export interface ResolveDraft {
  status: string;
  notes: string;
}

export interface EntryPageExtras {
  draft?: ResolveDraft | undefined;
  /** The task's template as the engine has it now (undefined: not live). */
  template?: TaskTemplate | undefined;
  /** Problems of the snapshot's lifecycle settings, when the task is not live. */
  snapshotProblems?: string[] | undefined;
  /** The task is held out of archival (restored by an operator). */
  hold?: ArchiveHold | undefined;
}

export type Snapshot = Record<string, unknown> & Partial<FullEnrichedSnapshot>;

function errorText(error: unknown): string {
  if (error === null || error === undefined) return '';
  if (typeof error === 'string') return error;
  if (typeof error === 'object' && typeof (error as { message?: unknown }).message === 'string')
    return (error as { message: string }).message;
  return JSON.stringify(error);
}

/** A value from the snapshot: a TruncatedPayload says so, a long value is cut here and says so. */
function payload(value: unknown): SafeHtml {
  if (value === null || value === undefined) return html`<span class="muted">—</span>`;
  if (typeof value === 'object' && (value as { truncated?: unknown }).truncated === true) {
    const t = value as { original_bytes?: number; preview?: string };
    return html`<span class="badge warn">truncated in snapshot</span> <span class="muted">${t.original_bytes ?? '?'} bytes originally; first characters:</span><pre>${t.preview ?? ''}</pre>`;
  }
  const { text, cut } = jsonPreview(value, 400);
  return html`<pre>${text}</pre>${cut > 0 ? html`<span class="badge warn">${cut} more characters not shown</span>` : ''}`;
}

function cutNote(list: { truncated: boolean; omitted: number } | undefined, what: string): SafeHtml {
  return list?.truncated
    ? html`<p class="notice"><strong>${list.omitted} more ${what} not in the snapshot</strong> (enrichment cut the list at its limit).</p>`
    : html``;
}

/** Why there is no diagnosis yet, by where enrichment stands (its line is at the top of the page). */
const NOT_ENRICHED: Record<'awaiting' | 'retrying' | 'given_up', string> = {
  awaiting:
    'This entry has not been enriched yet: the enrichment job adds the steps, history, graph and diagnosis shortly after detection.',
  retrying:
    'Not enriched: its enrichment is failing and will be tried again (when, and the last error, are at the top of the page). The steps, history, graph and diagnosis appear when an attempt succeeds.',
  given_up:
    "Not enriched: enrichment failed for good (the last error is at the top of the page) and is not tried again, so only the detection snapshot is there. Look at the task in the engine's tables.",
};

/**
 * Where enrichment stands, in dlq show's words: a notice near the top while the entry is not
 * enriched (awaiting, failing with its next attempt, given up; each with the last error), a line
 * among the entry's facts once it is (and after how many failed attempts).
 */
function enrichmentNotice(s: Snapshot): SafeHtml {
  const w = enrichmentWords(s, formatTime);
  if (w.state === 'enriched') return html``;
  const kind = { awaiting: '', retrying: ' warn', given_up: ' error' }[w.state];
  return html`<p class="notice${kind}" id="enrichment-state" data-enrichment="${w.state}"><strong>Enrichment:</strong> ${w.line}</p>`;
}

export function diagnosisSection(s: Snapshot): SafeHtml {
  if (!isEnriched(s)) {
    const { state } = enrichmentState(s);
    return html`<section class="card" aria-labelledby="diag-h"><h2 id="diag-h">Diagnosis</h2>
<p>${NOT_ENRICHED[state === 'enriched' ? 'awaiting' : state]}</p></section>`;
  }
  const d = s.diagnosis;
  const e = s.enrichment;
  // A step both blocking and out of retries shows its error once, under Blocking.
  const shownAbove = new Set(
    (d.blocking_steps?.items ?? []).filter((b) => b.error != null).map((b) => b.workflow_step_uuid),
  );
  return html`<section class="card" aria-labelledby="diag-h"><h2 id="diag-h">Diagnosis</h2>
<p class="summary-line" id="diagnosis-summary">${d.summary}</p>
${
  d.blocking_steps && d.blocking_steps.items.length > 0
    ? html`<h3>Blocking</h3><ul>${d.blocking_steps.items.map(
        (b) => html`<li><strong>${b.name}</strong>: ${b.state} for ${formatMinutes(b.minutes_in_state)};
 ${b.max_attempts === null ? `${b.attempts} attempts` : `${b.attempts}/${b.max_attempts} attempts`}${b.on_cycle ? '; on the cycle' : ''}${b.waits_on_total > 0 ? `; waits on ${b.waits_on.join(', ')}${b.waits_on_total > b.waits_on.length ? ` and ${b.waits_on_total - b.waits_on.length} more` : ''}` : ''}${b.blocks_total > 0 ? `; blocks ${b.blocks.join(', ')}${b.blocks_total > b.blocks.length ? ` and ${b.blocks_total - b.blocks.length} more` : ''}` : ''}${b.downstream_unfinished > 0 ? `; ${b.downstream_unfinished} unfinished downstream` : ''}${b.error == null ? '' : html`<br><span class="muted">error:</span> ${errorText(b.error)}`}</li>`,
      )}</ul>${cutNote(d.blocking_steps, 'blocking steps')}`
    : ''
}
${
  d.exhausted_retries && d.exhausted_retries.items.length > 0
    ? html`<h3>Out of retries</h3><ul>${d.exhausted_retries.items.map(
        (x) =>
          html`<li><strong>${x.name}</strong> (${x.state}; ${x.why === 'not_retryable' ? 'failed, not retryable' : `${x.attempts}/${x.max_attempts} attempts used`})${
            x.error == null
              ? ''
              : shownAbove.has(x.workflow_step_uuid)
                ? html` <span class="muted">(its error is under Blocking)</span>`
                : html`: ${errorText(x.error)}`
          }</li>`,
      )}</ul>${cutNote(d.exhausted_retries, 'exhausted steps')}`
    : ''
}
${d.cycle?.detected ? html`<h3>Dependency cycle</h3><p>${d.cycle.steps.items.map((c) => c.name).join(' → ')}${d.cycle.steps.truncated ? ` and ${d.cycle.steps.omitted} more` : ''}</p>` : ''}
${d.oldest_waiting_step ? html`<p><strong>Oldest waiting step:</strong> ${d.oldest_waiting_step.name} (${d.oldest_waiting_step.state} for ${formatMinutes(d.oldest_waiting_step.minutes_waiting)})</p>` : ''}
<p class="muted">Enriched ${formatTime(e.enriched_at)} at detail ${e.detail_level}${e.detail_level === e.requested_detail ? '' : ` (asked for ${e.requested_detail})`}.
${e.truncated ? html`<span class="badge warn">snapshot cut</span> ${[...e.truncated_lists, e.truncated_payloads > 0 ? `${e.truncated_payloads} payload(s)` : ''].filter(Boolean).join(', ')}` : ''}</p>
</section>`;
}

function resolveForm(ctx: PageContext, entry: DlqEntry, draft: ResolveDraft | undefined): SafeHtml {
  return html`<form method="post" action="/dlq/${entry.dlq_entry_uuid}/resolve">${csrfInput(ctx.csrf)}
<p><label for="r-status">Status</label><select id="r-status" name="status" required>
${TERMINAL_RESOLUTION_STATUSES.map((st) => html`<option value="${st}"${draft?.status === st ? html` selected` : ''}>${st}</option>`)}</select></p>
<p><label for="r-notes">Notes</label><textarea id="r-notes" name="notes" required maxlength="10000" placeholder="What was wrong and what you did">${draft?.notes ?? ''}</textarea></p>
<p><button type="submit">Resolve</button></p></form>`;
}

function resolveSection(ctx: PageContext, entry: DlqEntry, draft: ResolveDraft | undefined): SafeHtml {
  if (entry.resolution_status !== 'pending') {
    const by = resolverText(entry);
    const at = formatTime(entry.resolution_timestamp);
    return html`<section class="card" aria-labelledby="res-h" id="resolution"><h2 id="res-h">Resolution</h2>
${
  draft
    ? html`<p class="notice error" role="alert" id="not-saved">Not saved: already ${entry.resolution_status} by ${by} at ${at}. Your notes are kept below.</p>`
    : ''
}
<dl class="kv"><dt>Status</dt><dd>${entry.resolution_status}</dd><dt>Resolved by</dt><dd id="resolved-by">${entry.resolved_by ?? 'unknown'}${entry.resolved_by_token_id ? html` <span class="muted" id="resolved-by-token">(token ${entry.resolved_by_token_id})</span>` : ''}</dd>
${entry.resolved_on_behalf_of ? html`<dt>On behalf of</dt><dd id="resolved-on-behalf-of">${entry.resolved_on_behalf_of} <span class="muted">(as the resolver said; not checked)</span></dd>` : ''}
<dt>When</dt><dd id="resolved-at">${at}</dd><dt>Notes</dt><dd>${entry.resolution_notes ?? '—'}</dd></dl>
${
  draft
    ? html`<h3>Your draft (not saved)</h3>
<p><label for="r-status">Status</label><select id="r-status" name="status" disabled>${TERMINAL_RESOLUTION_STATUSES.map((st) => html`<option value="${st}"${draft.status === st ? html` selected` : ''}>${st}</option>`)}</select></p>
<p><label for="r-notes">Notes</label><textarea id="r-notes" name="notes" readonly>${draft.notes}</textarea></p>
<p class="muted">Copy what is worth keeping into your notes elsewhere; the entry keeps the resolution above.</p>`
    : ''
}</section>`;
  }
  if (!ctx.deps.can(ctx.principal, 'dlq:update')) {
    return html`<section class="card" aria-labelledby="res-h"><h2 id="res-h">Resolution</h2>
<p>Pending. Your token (${ctx.principal.tokenName}) may read investigations but not resolve them (it lacks dlq:update).</p></section>`;
  }
  return html`<section class="card" aria-labelledby="res-h"><h2 id="res-h">Resolve</h2>
${draft ? html`<p class="notice" role="status" id="draft-kept">Not saved yet: your notes are back in the form. Check them and press Resolve.</p>` : ''}
${resolveForm(ctx, entry, draft)}</section>`;
}

function timelineSection(s: Snapshot): SafeHtml {
  const task = (s.task_transitions as EnrichedDetails['task_transitions'] | undefined) ?? undefined;
  const steps = (s.step_transitions as EnrichedDetails['step_transitions'] | undefined) ?? undefined;
  if (!task && !steps) return html``;
  const events = [
    ...(task?.items ?? []).map((t) => ({
      at: t.created_at,
      kind: 'task',
      what: `task ${t.from_state ?? '∅'} → ${t.to_state}`,
    })),
    ...(steps?.items ?? []).map((t) => ({
      at: t.created_at,
      kind: 'step',
      what: `${t.step}: ${t.from_state ?? '∅'} → ${t.to_state}`,
    })),
  ].sort((a, b) => a.at.localeCompare(b.at) || a.kind.localeCompare(b.kind));
  return html`<section class="card" aria-labelledby="tl-h"><h2 id="tl-h">Timeline</h2>
${cutNote(task, 'task transitions')}${cutNote(steps, 'step transitions')}
<ol class="timeline" id="timeline">${events.map(
    (ev) =>
      html`<li><time datetime="${ev.at}">${formatTime(ev.at)}</time><span class="badge ${ev.kind === 'task' ? 'warn' : 'muted'}">${ev.kind}</span><span>${ev.what}</span></li>`,
  )}</ol></section>`;
}

type SnapshotStep = EnrichedDetails['steps']['items'][number];

/** Failed steps first, then in dependency order (depth in the graph), then by name. */
export function orderSteps(
  steps: readonly SnapshotStep[],
  edges: readonly { from_step_uuid: string; to_step_uuid: string }[],
): SnapshotStep[] {
  const { depth } = layoutGraph(
    steps.map((st) => st.workflow_step_uuid),
    edges,
  );
  const failed = (st: SnapshotStep) => (st.state === 'error' ? 0 : 1);
  return [...steps].sort(
    (a, b) =>
      failed(a) - failed(b) ||
      (depth.get(a.workflow_step_uuid) ?? 0) - (depth.get(b.workflow_step_uuid) ?? 0) ||
      a.name.localeCompare(b.name),
  );
}

/** The result without the error member already shown beside it. */
function resultBesideError(st: SnapshotStep): unknown {
  const r = st.result;
  if (st.error == null || typeof r !== 'object' || r === null || Array.isArray(r) || !('error' in r))
    return r;
  const { error: _shown, ...rest } = r as Record<string, unknown>;
  return Object.keys(rest).length === 0 ? null : rest;
}

function stepsSection(s: Snapshot): SafeHtml {
  const steps = s.steps as EnrichedDetails['steps'] | undefined;
  if (!steps) return html``;
  const edges = (s.edges as EnrichedDetails['edges'] | undefined)?.items ?? [];
  return html`<section class="card" aria-labelledby="steps-h"><h2 id="steps-h">Steps</h2>
<p class="muted">Failed steps first, then in dependency order.</p>
${cutNote(steps, 'steps')}
<div class="table-wrap"><table class="responsive" id="steps"><thead><tr><th scope="col">Step</th><th scope="col">State</th><th scope="col">Attempts</th><th scope="col">Last attempt</th><th scope="col">Last error</th><th scope="col">Result</th></tr></thead>
<tbody>${orderSteps(steps.items, edges).map(
    (
      st,
    ) => html`<tr data-step="${st.name}"><td data-label="Step">${st.name}</td><td data-label="State">${st.state}<br><span class="muted">since ${formatTime(st.state_since)}</span></td>
<td data-label="Attempts">${st.attempts ?? 0}${st.max_attempts === null ? '' : `/${st.max_attempts}`}${st.retryable ? '' : html` <span class="badge bad">not retryable</span>`}</td>
<td data-label="Last attempt">${formatTime(st.last_attempted_at)}</td>
<td data-label="Last error">${st.error == null ? html`<span class="muted">—</span>` : payload(st.error)}</td>
<td data-label="Result">${st.error != null && resultBesideError(st) === null ? html`<span class="muted">only the error</span>` : payload(resultBesideError(st))}</td></tr>`,
  )}</tbody></table></div></section>`;
}

function templateSection(s: Snapshot, live: TaskTemplate | undefined, snapshotProblems: string[]): SafeHtml {
  const t = s.template as EnrichedDetails['template'] | undefined;
  if (t === undefined && live === undefined) return html``;
  if (t === null && live === undefined)
    return html`<section class="card"><h2>Template</h2><p class="muted">The task's template was not found.</p></section>`;
  const name = live
    ? `${live.namespace}/${live.name} version ${live.version}`
    : `${t!.namespace}/${t!.name} version ${t!.version}`;
  const lifecycle = live ? live.lifecycle : ((t?.configuration ?? {}) as Record<string, unknown>).lifecycle;
  const problems = live ? live.problems : snapshotProblems;
  const entries =
    typeof lifecycle === 'object' && lifecycle !== null && !Array.isArray(lifecycle)
      ? Object.entries(lifecycle as Record<string, unknown>)
      : [];
  return html`<section class="card" aria-labelledby="tpl-h"><h2 id="tpl-h">Template lifecycle settings</h2>
<p>${name} <span class="muted">(${live ? 'as the engine has it now' : 'as the snapshot recorded it'})</span></p>
${
  problems.length > 0
    ? html`<div class="notice error" role="alert" id="template-problems"><p><strong>Malformed settings: detection ignores them and uses the global defaults.</strong></p><ul>${problems.map((p) => html`<li>${p}</li>`)}</ul></div>`
    : ''
}
${
  entries.length > 0
    ? html`<dl class="kv">${entries.map(([k, v]) => html`<dt>${k}</dt><dd>${typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v)}</dd>`)}</dl>`
    : html`<p class="muted">No lifecycle overrides: the global thresholds apply.</p>`
}</section>`;
}

export async function entryPage(
  ctx: PageContext,
  entry: DlqEntry,
  extras: EntryPageExtras = {},
): Promise<SafeHtml> {
  const s = entry.task_snapshot as Snapshot;
  const now = ctx.deps.now();
  const [earlier, group] = await Promise.all([
    otherInvestigationsOfTask(ctx.deps.db, entry.task_uuid, entry.dlq_entry_uuid, 20),
    groupOfEntry(ctx.deps.db, entry.dlq_entry_uuid),
  ]);
  const minutes = Math.floor(
    ((entry.resolution_timestamp ?? now).getTime() - entry.dlq_timestamp.getTime()) / 60_000,
  );
  const enriched = isEnriched(s);
  const full = enriched && Array.isArray((s.steps as { items?: unknown } | undefined)?.items);
  const snapshotTemplate = s.template as EnrichedDetails['template'] | undefined;
  const why = whyStale({
    reason: entry.dlq_reason,
    originalState: entry.original_state,
    metadata: entry.metadata,
    lifecycle: extras.template
      ? (extras.template.lifecycle ?? undefined)
      : snapshotTemplate
        ? ((snapshotTemplate.configuration ?? {}) as Record<string, unknown>).lifecycle
        : undefined,
  });
  return html`<p><a href="/">← Queue</a></p>
<h1>${String(s.namespace ?? '?')}/${String(s.task_name ?? '?')} <span class="badge ${entry.resolution_status === 'pending' ? 'warn' : 'ok'}" id="entry-status">${entry.resolution_status}</span></h1>
${why ? html`<p class="why" id="why-stale">${why}</p>` : ''}
${enrichmentNotice(s)}
${extras.hold ? html`<p class="notice" id="archive-hold">The task is held out of archival until ${formatTime(extras.hold.held_until)} (${extras.hold.reason}).</p>` : ''}
<dl class="kv card"><dt>Reason</dt><dd>${entry.dlq_reason}</dd><dt>State when detected</dt><dd>${entry.original_state}</dd>
<dt>In the DLQ</dt><dd>${formatTime(entry.dlq_timestamp)} (${formatMinutes(Math.max(0, minutes))}${entry.resolution_status === 'pending' ? '' : ' until resolved'})</dd>
<dt>Task</dt><dd>${entry.task_uuid}</dd><dt>Entry</dt><dd>${entry.dlq_entry_uuid}</dd>
${enriched ? html`<dt>Enrichment</dt><dd id="enrichment-state" data-enrichment="enriched">${enrichmentWords(s, formatTime).line}</dd>` : ''}
<dt>Group</dt><dd id="entry-group">${group ? html`<a href="/groups/${group.fingerprint}">${group.diagnosis}</a> <span class="muted">(${group.pending} pending, ${group.resolved} resolved)</span>` : html`<span class="muted">none yet: an entry joins the group of its cause when it is enriched</span>`}</dd></dl>
<div class="grid2">${diagnosisSection(s)}${resolveSection(ctx, entry, extras.draft)}</div>
${
  full
    ? html`<section class="card" aria-labelledby="graph-h"><h2 id="graph-h">Dependency graph</h2>${graphSvg({
        steps: s.steps as EnrichedDetails['steps'],
        edges: s.edges as EnrichedDetails['edges'],
        blocking: s.diagnosis?.blocking_steps?.items ?? [],
        cycle: s.diagnosis?.cycle?.steps.items ?? [],
      })}</section>`
    : enriched
      ? html`<p class="notice">The snapshot holds counts and the diagnosis only (detail ${s.enrichment?.detail_level}), so there is no graph or timeline to draw.</p>`
      : ''
}
${timelineSection(s)}
${stepsSection(s)}
${templateSection(s, extras.template, extras.snapshotProblems ?? [])}
<section class="card" aria-labelledby="earlier-h"><h2 id="earlier-h">Other investigations of this task</h2>
${
  earlier.length === 0
    ? html`<p class="muted">None.</p>`
    : html`<ul>${earlier.map(
        (e) =>
          html`<li><a href="/dlq/${e.dlq_entry_uuid}">${formatTime(e.dlq_timestamp)}</a>: ${e.dlq_reason}, ${e.resolution_status}${e.resolved_by ? ` by ${resolverText(e)}` : ''}${e.resolution_notes ? ` — ${e.resolution_notes}` : ''}</li>`,
      )}</ul>`
}</section>`;
}
