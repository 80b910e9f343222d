import detectStaleTasks, {
  type DetectStaleTasksOptions,
  type DetectStaleTasksResult,
  detectionOptionsFromConfig,
} from '../../jobs/detect-stale-tasks.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import { applyConfiguredSettings } from '../../src/db/queries/staleness.ts';
import { silentLogger } from '../../src/telemetry/logger.ts';
import type { TestDatabase } from './db.ts';
import { NOW } from './factories.ts';

/**
 * Configuration as a deployment would load it: base.toml, no environment file overrides beyond
 * what `env` sets (TASKER__section__key=value), upstream's defaults otherwise.
 */
export function configWith(env: Record<string, string> = {}): Readonly<Config> {
  return loadConfig({ env: { TASKER_ENV: 'development', ...env } }).config;
}

/** Upstream's default thresholds (60/30/30 minutes, 24 h) and every action on. */
export function defaultOptions(overrides: Partial<DetectStaleTasksOptions> = {}): DetectStaleTasksOptions {
  const base = detectionOptionsFromConfig(
    configWith({
      TASKER__staleness_detection__thresholds__waiting_for_dependencies_minutes: '60',
      TASKER__staleness_detection__thresholds__waiting_for_retry_minutes: '30',
      TASKER__staleness_detection__thresholds__steps_in_process_minutes: '30',
      TASKER__staleness_detection__thresholds__task_max_lifetime_hours: '24',
      TASKER__staleness_detection__batch_size: '100',
    }),
  );
  return { ...base, ...overrides };
}

/** Writes tasker_lifecycle_settings from a configuration, as `migrate` and worker start do. */
export async function applySettings(db: TestDatabase, config: Readonly<Config>): Promise<void> {
  await applyConfiguredSettings(db.pool, config, 'test');
}

/** Runs the detection job once, judged at `now` (default NOW). */
export async function detect(
  db: TestDatabase,
  options: DetectStaleTasksOptions = defaultOptions(),
  now: Date = NOW,
): Promise<DetectStaleTasksResult> {
  return detectStaleTasks.run(
    { pool: db.pool, now, logger: silentLogger(), signal: new AbortController().signal },
    detectStaleTasks.optionsSchema.parse(options),
  );
}
