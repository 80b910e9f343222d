/**
 * The shape of an enriched DLQ snapshot (built by dlq_enriched_snapshot in
 * migrations/functions/dlq_enriched_snapshot.sql), and how people read its diagnosis. The detection-time keys
 * (task_uuid, namespace, task_name, current_state, ...) stay as they were; enrichment adds the keys
 * below. Every list is a BoundedList, so a cut is always visible.
 */

/** full: everything; compact: counts and diagnosis; minimal: compact with the diagnosis lists emptied. */
export type EnrichmentDetail = 'full' | 'compact' | 'minimal' | 'none';

/** The "version" dlq_enriched_snapshot writes (migrations/functions/dlq_enriched_snapshot.sql); a new shape gets a new number. */
export const ENRICHMENT_VERSION = 1;

export interface BoundedList<T> {
  total: number;
  items: T[];
  truncated: boolean;
  omitted: number;
}

/** What replaces a JSON value bigger than max_payload_bytes. */
export interface TruncatedPayload {
  truncated: true;
  original_bytes: number;
  /** The first characters of the value's JSON text. */
  preview: string;
}

export interface EnrichmentRecord {
  version: number;
  enriched_at: string;
  /** Attempts that failed before this one succeeded (absent when the first attempt did). */
  failed_attempts?: number;
  task_found: boolean;
  requested_detail: 'full' | 'compact';
  detail_level: EnrichmentDetail;
  /** Something was cut: a list, a payload, or the detail level. */
  truncated: boolean;
  /** Dotted paths of the lists that were cut, e.g. "step_transitions". */
  truncated_lists: string[];
  /** JSON values replaced by a TruncatedPayload marker. */
  truncated_payloads: number;
  limits: {
    max_list_items: number;
    max_history_rows: number;
    max_payload_bytes: number;
    max_snapshot_bytes: number;
  };
}

export interface BlockingStep {
  workflow_step_uuid: string;
  name: string;
  state: string;
  since: string;
  minutes_in_state: number;
  attempts: number;
  max_attempts: number | null;
  retryable: boolean;
  on_cycle: boolean;
  /** Unfinished direct predecessors (at most 10 names; waits_on_total counts them all). */
  waits_on: string[];
  waits_on_total: number;
  /** Unfinished direct successors (at most 10 names; blocks_total counts them all). */
  blocks: string[];
  blocks_total: number;
  /** Unfinished steps reachable from this one. */
  downstream_unfinished: number;
  error: unknown;
}

export interface ExhaustedStep {
  workflow_step_uuid: string;
  name: string;
  state: string;
  why: 'attempts_exhausted' | 'not_retryable';
  attempts: number;
  max_attempts: number | null;
  retryable: boolean;
  last_attempted_at: string | null;
  error: unknown;
}

export interface Diagnosis {
  blocking_steps: BoundedList<BlockingStep>;
  exhausted_retries: BoundedList<ExhaustedStep>;
  cycle: {
    detected: boolean;
    steps: BoundedList<{ workflow_step_uuid: string; name: string; state: string }>;
  };
  oldest_waiting_step: {
    workflow_step_uuid: string;
    name: string;
    state: string;
    since: string;
    minutes_waiting: number;
  } | null;
  summary: string;
}

export interface EnrichedSnapshotPart {
  enrichment: EnrichmentRecord;
  task?: {
    state: string | null;
    state_since: string | null;
    minutes_in_state: number | null;
    complete: boolean;
    completed_at: string | null;
  };
  counts?: {
    steps: number;
    unfinished_steps: number;
    steps_by_state: Record<string, number>;
    edges: number;
    step_transitions: number;
    task_transitions: number;
  };
  diagnosis: Partial<Diagnosis> & { summary: string };
}

/**
 * What task_snapshot.enrichment holds while an entry's enrichment is failing (written by
 * markEnrichmentFailed in src/db/queries/dlq-enrichment.ts): no enriched_at.
 */
export interface EnrichmentFailureRecord {
  version: number;
  failed: true;
  failed_at: string;
  error: { code: string | null; message: string };
  /** Attempts that have failed; records of builds before migration 0140 lack it (one). */
  failed_attempts?: number;
  max_attempts?: number;
  /** When the sweep tries again; null when given up. */
  next_attempt_at?: string | null;
  gave_up?: boolean;
}

/** Where an entry's enrichment stands, from its snapshot alone. */
export type EnrichmentState =
  | { state: 'awaiting' }
  | { state: 'enriched'; record: EnrichmentRecord }
  | { state: 'retrying' | 'given_up'; record: EnrichmentFailureRecord };

export function enrichmentState(snapshot: Record<string, unknown>): EnrichmentState {
  const e = snapshot.enrichment;
  if (typeof e !== 'object' || e === null) return { state: 'awaiting' };
  if ('enriched_at' in e) return { state: 'enriched', record: e as EnrichmentRecord };
  const record = e as EnrichmentFailureRecord;
  return { state: record.gave_up === false ? 'retrying' : 'given_up', record };
}

export function isEnriched(
  snapshot: Record<string, unknown>,
): snapshot is Record<string, unknown> & EnrichedSnapshotPart {
  const e = snapshot.enrichment;
  return typeof e === 'object' && e !== null && 'enriched_at' in e;
}

/** The lists of detail "full". */
export interface EnrichedDetails {
  /** Unfinished steps first, then in creation order. */
  steps: BoundedList<{
    workflow_step_uuid: string;
    name: string;
    state: string;
    state_since: string;
    attempts: number | null;
    max_attempts: number | null;
    retryable: boolean;
    in_process: boolean;
    processed: boolean;
    processed_at: string | null;
    last_attempted_at: string | null;
    backoff_request_seconds: number | null;
    created_at: string;
    /** The step's results (or a TruncatedPayload). */
    result: unknown;
    /** results.error, when present (or a TruncatedPayload). */
    error: unknown;
  }>;
  edges: BoundedList<{
    from_step_uuid: string;
    from: string;
    to_step_uuid: string;
    to: string | null;
    name: string;
  }>;
  /** Newest first. */
  step_transitions: BoundedList<{
    workflow_step_uuid: string;
    step: string;
    from_state: string | null;
    to_state: string;
    sort_key: number;
    most_recent: boolean;
    created_at: string;
    metadata: unknown;
  }>;
  /** Newest first. */
  task_transitions: BoundedList<{
    from_state: string | null;
    to_state: string;
    sort_key: number;
    most_recent: boolean;
    created_at: string;
    processor_uuid: string | null;
    metadata: unknown;
    transition_metadata: unknown;
  }>;
  template: {
    named_task_uuid: string;
    namespace: string;
    name: string;
    version: string;
    configuration: unknown;
  } | null;
}

/** An enriched snapshot at detail "full": the detection keys, the record, counts, diagnosis and lists. */
export type FullEnrichedSnapshot = Record<string, unknown> &
  EnrichedSnapshotPart &
  EnrichedDetails & { diagnosis: Diagnosis };
