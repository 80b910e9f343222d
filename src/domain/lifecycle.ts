import { z } from 'zod';

/**
 * A task template's lifecycle settings (configuration->'lifecycle'), upstream's LifecycleConfig.
 * Every key is optional; absent keys fall back to the configured defaults.
 *
 * The detector reads these values in SQL (lifecycle_minutes, task_staleness_policy) and reports
 * malformed ones with lifecycle_config_problems; this schema applies the same rules on the
 * TypeScript side (a test holds the two to the same verdicts).
 */

const minutes = z.int().min(1).max(2_147_483_647).nullish();

export const STALENESS_ACTIONS = ['dlq', 'error', 'none'] as const;
export type TemplateStalenessAction = (typeof STALENESS_ACTIONS)[number];

export const LifecycleConfigSchema = z.strictObject({
  /** Longest the task may live, from creation, in any non-terminal state. */
  max_duration_minutes: minutes,
  max_waiting_for_dependencies_minutes: minutes,
  max_waiting_for_retry_minutes: minutes,
  max_steps_in_process_minutes: minutes,
  /** dlq: investigation and error (default); error: error only; none: detection leaves it alone. */
  staleness_action: z.enum(STALENESS_ACTIONS).default('dlq'),
  /** false: do not move this template's stale tasks to error. */
  auto_fail_on_timeout: z.boolean().nullish(),
  /** false: do not open investigations for this template's stale tasks. */
  auto_dlq_on_timeout: z.boolean().nullish(),
});
export type LifecycleConfig = z.infer<typeof LifecycleConfigSchema>;

const MINUTE_KEYS = new Set([
  'max_duration_minutes',
  'max_waiting_for_dependencies_minutes',
  'max_waiting_for_retry_minutes',
  'max_steps_in_process_minutes',
]);

/**
 * What is wrong with a lifecycle value, one sentence per key, sorted by key; [] when it is fine.
 * Same wording as the SQL function lifecycle_config_problems.
 */
export function lifecycleProblems(lifecycle: unknown): string[] {
  if (lifecycle === undefined || lifecycle === null) return [];
  if (typeof lifecycle !== 'object' || Array.isArray(lifecycle)) {
    return [`lifecycle must be an object, got ${JSON.stringify(lifecycle)}`];
  }
  const result = LifecycleConfigSchema.safeParse(lifecycle);
  if (result.success) return [];
  const problems = new Map<string, string>();
  for (const issue of result.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) problems.set(key, `unknown key ${key}`);
      continue;
    }
    const key = String(issue.path[0]);
    const got = JSON.stringify((lifecycle as Record<string, unknown>)[key]);
    if (MINUTE_KEYS.has(key))
      problems.set(key, `${key} must be a positive whole number of minutes, got ${got}`);
    else if (key === 'staleness_action') {
      problems.set(key, `staleness_action must be one of "dlq", "error", "none", got ${got}`);
    } else problems.set(key, `${key} must be true or false, got ${got}`);
  }
  return [...problems.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, message]) => message);
}
