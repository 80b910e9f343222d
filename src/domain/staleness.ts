import type { DlqReason } from './dlq.ts';

/**
 * What detection did to one task: upstream's five action_taken values (StalenessAction), parsed
 * strictly (an unknown string counts as a failure, as upstream).
 */
export const STALENESS_ACTIONS_TAKEN = [
  'would_transition_to_dlq_and_error',
  'transitioned_to_dlq_and_error',
  'moved_to_dlq_only',
  'transitioned_to_error_only',
  'transition_failed',
] as const;
export type StalenessActionTaken = (typeof STALENESS_ACTIONS_TAKEN)[number];

export function parseActionTaken(value: string): StalenessActionTaken {
  return (STALENESS_ACTIONS_TAKEN as readonly string[]).includes(value)
    ? (value as StalenessActionTaken)
    : 'transition_failed';
}

/**
 * Partial or failed outcomes: worth a warning. moved_to_dlq_only and transitioned_to_error_only
 * count only when they were not what the configuration asked for (planned_action says that).
 */
export function isFailure(action: StalenessActionTaken, planned?: PlannedAction): boolean {
  if (action === 'transition_failed') return true;
  if (action === 'moved_to_dlq_only') return planned !== undefined && planned !== 'dlq_only';
  if (action === 'transitioned_to_error_only') return planned !== undefined && planned !== 'error_only';
  return false;
}

export function dlqCreated(action: StalenessActionTaken): boolean {
  return action === 'transitioned_to_dlq_and_error' || action === 'moved_to_dlq_only';
}

export function transitionSucceeded(action: StalenessActionTaken): boolean {
  return action === 'transitioned_to_dlq_and_error' || action === 'transitioned_to_error_only';
}

/** What the configuration and the template asked detection to do with a task. */
export type PlannedAction = 'dlq_and_error' | 'error_only' | 'dlq_only';

/** Why a task counts as stale. */
export type StaleBy = 'state_threshold' | 'task_lifetime';

/** One task row of detect_stale_tasks_page (or of detect_stale_tasks_batch, its wrapper). */
export interface StaleTaskResult {
  task_uuid: string;
  namespace_name: string;
  task_name: string;
  current_state: string;
  time_in_state_minutes: number;
  staleness_threshold_minutes: number;
  action_taken: StalenessActionTaken;
  moved_to_dlq: boolean;
  transition_success: boolean;
  stale_by: StaleBy;
  task_age_minutes: number;
  planned_action: PlannedAction;
  dlq_entry_uuid: string | null;
  dlq_reason: DlqReason | null;
  named_task_uuid: string;
  template_problems: string[];
}
