import { type EnrichmentState, enrichmentState } from './dlq-enrichment.ts';

/**
 * Where an entry's enrichment stands, in the words every surface uses: `dlq show` prints the line,
 * the console shows the label as a badge with the detail in the queue's rows, and the line on the
 * entry page. Read from the snapshot alone (enrichmentState): awaiting (never tried), enriched (and after
 * how many failed attempts), failing (attempts so far, when the next is due, the last error), or
 * given up (failed for good, with the last error). The surface says how a time is written.
 */

export interface EnrichmentWords {
  state: EnrichmentState['state'];
  /** A few words for a badge: "awaiting enrichment", "enriched", "enrichment failing", "enrichment given up". */
  label: string;
  /** What the label leaves out, short enough for a list's row (attempts, next attempt; no error); may be empty. */
  detail: string;
  /** The whole line, with the last error: what `dlq show` prints after "enrichment: ". */
  line: string;
}

/** An ISO time as stored in the snapshot, written as the surface writes times. */
export type TimeWords = (iso: string) => string;

const asStored: TimeWords = (iso) => iso;

export function enrichmentWords(
  snapshot: Record<string, unknown>,
  time: TimeWords = asStored,
): EnrichmentWords {
  const s = enrichmentState(snapshot);
  const when = (value: unknown) => (typeof value === 'string' ? time(value) : String(value));
  if (s.state === 'awaiting') {
    return {
      state: s.state,
      label: 'awaiting enrichment',
      detail: '',
      line: 'not enriched yet: the request of its detection batch or the next sweep enriches it',
    };
  }
  if (s.state === 'enriched') {
    const after = s.record.failed_attempts ? ` after ${s.record.failed_attempts} failed attempt(s)` : '';
    return {
      state: s.state,
      label: 'enriched',
      detail: after.trim(),
      line: `enriched ${when(s.record.enriched_at)}${after}`,
    };
  }
  const r = s.record;
  const attempts = `${r.failed_attempts ?? 1}${r.max_attempts ? ` of ${r.max_attempts}` : ''} attempt(s) failed`;
  const error = `last error${r.error?.code ? ` (${r.error.code})` : ''}: ${errorText(r.error?.message ?? r.error)}`;
  if (s.state === 'retrying') {
    const next = `next attempt at ${when(r.next_attempt_at)}`;
    return {
      state: s.state,
      label: 'enrichment failing',
      detail: `${attempts}; ${next}`,
      line: `failing: ${attempts}, last at ${when(r.failed_at)}; ${next}; ${error}`,
    };
  }
  return {
    state: s.state,
    label: 'enrichment given up',
    detail: `${attempts}; not tried again`,
    line: `failed for good: ${attempts}, last at ${when(r.failed_at)}; not tried again (only the detection snapshot is there); ${error}`,
  };
}

/** The line `dlq show` prints after "enrichment: " (times as stored). */
export function enrichmentLine(snapshot: Record<string, unknown>): string {
  return enrichmentWords(snapshot).line;
}

/** An error (a string, an object with a message, anything else as JSON) as one line of at most 200 characters. */
export function errorText(error: unknown): string {
  const text =
    typeof error === 'string'
      ? error
      : typeof error === 'object' &&
          error !== null &&
          typeof (error as { message?: unknown }).message === 'string'
        ? (error as { message: string }).message
        : JSON.stringify(error);
  const line = (text ?? '').replace(/\s+/g, ' ').trim();
  return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}
