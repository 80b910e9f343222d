import type { DlqReason } from './dlq.ts';

/**
 * Why detection found a task stale, in one line, with the setting that applied: the template's
 * lifecycle key when it set a valid one, else the global default (and, when the template's value
 * was malformed, what was wrong with it). Read from the entry's metadata (stale_by,
 * time_in_state_minutes, threshold_minutes, written by detection) and the template's lifecycle
 * object, so the console's entry page and `dlq show` say the same thing.
 */

/** Per state: the template's lifecycle key and the configuration key of the global default. */
export const STATE_THRESHOLD_SETTINGS: Readonly<Record<string, { template: string; config: string }>> = {
  waiting_for_dependencies: {
    template: 'max_waiting_for_dependencies_minutes',
    config: 'staleness_detection.thresholds.waiting_for_dependencies_minutes',
  },
  waiting_for_retry: {
    template: 'max_waiting_for_retry_minutes',
    config: 'staleness_detection.thresholds.waiting_for_retry_minutes',
  },
  steps_in_process: {
    template: 'max_steps_in_process_minutes',
    config: 'staleness_detection.thresholds.steps_in_process_minutes',
  },
};

export const LIFETIME_SETTINGS = {
  template: 'max_duration_minutes',
  config: 'staleness_detection.thresholds.task_max_lifetime_hours',
} as const;

/** States without a setting of their own: 1440 minutes (upstream's calculate_staleness_threshold). */
export const FIXED_STATE_THRESHOLD_MINUTES = 1440;

/** A lifecycle minutes value as detection reads it (lifecycle_minutes): a whole number 1..2^31-1. */
export function validMinutes(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 2_147_483_647
    ? value
    : undefined;
}

/** "7 min", "2 h 5 min", "3 d 4 h". */
export function minutesText(minutes: number): string {
  if (minutes < 60) return `${minutes} min`;
  if (minutes < 1440) return `${Math.floor(minutes / 60)} h${minutes % 60 ? ` ${minutes % 60} min` : ''}`;
  const hours = Math.floor((minutes % 1440) / 60);
  return `${Math.floor(minutes / 1440)} d${hours ? ` ${hours} h` : ''}`;
}

export interface WhyStaleInput {
  reason: DlqReason;
  originalState: string;
  metadata: Record<string, unknown> | null;
  /** The template's configuration->'lifecycle' (as the snapshot or the engine has it); undefined: unknown. */
  lifecycle: unknown;
}

/** The setting that gave a threshold: the template's key, or the default (saying why). */
function settingText(
  keys: { template: string; config: string },
  lifecycle: unknown,
  threshold: number,
  defaultText: string,
): string {
  const object =
    typeof lifecycle === 'object' && lifecycle !== null && !Array.isArray(lifecycle)
      ? (lifecycle as Record<string, unknown>)
      : undefined;
  const raw = object?.[keys.template];
  const valid = validMinutes(raw);
  if (valid !== undefined) {
    return valid === threshold
      ? `the template's ${keys.template} = ${valid}`
      : `the template's ${keys.template}, which is ${valid} now (it changed since detection)`;
  }
  if (lifecycle !== undefined && typeof lifecycle !== 'object') {
    return `${defaultText}, because the template's lifecycle setting is ${JSON.stringify(lifecycle)}, not an object`;
  }
  if (raw !== undefined && raw !== null) {
    return `${defaultText}, because the template's ${keys.template} is ${JSON.stringify(raw)}, not a whole number of minutes`;
  }
  return lifecycle === undefined ? defaultText : `${defaultText}; the template sets no ${keys.template}`;
}

/** One line saying why the entry was opened; null when the metadata does not say (older entries). */
export function whyStale(input: WhyStaleInput): string | null {
  const m = input.metadata ?? {};
  if (input.reason === 'manual_dlq' || m.detection_method === 'manual') {
    const by = typeof m.opened_by === 'string' ? ` by ${m.opened_by}` : '';
    return `Opened by hand${by}, not by detection.`;
  }
  const inState = typeof m.time_in_state_minutes === 'number' ? m.time_in_state_minutes : undefined;
  const threshold = typeof m.threshold_minutes === 'number' ? m.threshold_minutes : undefined;
  if (inState === undefined || threshold === undefined) return null;
  if (m.stale_by === 'task_lifetime') {
    const setting = settingText(
      LIFETIME_SETTINGS,
      input.lifecycle,
      threshold,
      `the global default (${LIFETIME_SETTINGS.config} = ${threshold / 60})`,
    );
    return `Stale: the task outlived its lifetime of ${minutesText(threshold)} (it was ${minutesText(inState)} in ${input.originalState} when detected) — ${setting}.`;
  }
  const keys = STATE_THRESHOLD_SETTINGS[input.originalState];
  const setting = keys
    ? settingText(keys, input.lifecycle, threshold, `the global default (${keys.config} = ${threshold})`)
    : `the fixed ${FIXED_STATE_THRESHOLD_MINUTES} min for a state without a setting of its own`;
  return `Stale: ${minutesText(inState)} in ${input.originalState}, past its threshold of ${minutesText(threshold)} — ${setting}.`;
}
