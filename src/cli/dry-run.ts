import { UsageError } from '../errors.ts';

/**
 * --dry-run / --no-dry-run over a configured dry_run key (staleness_detection.dry_run,
 * archive.dry_run): a flag given wins; without one the configuration decides. Both at once is a
 * usage error. The result says what decided, so the output can say which mode ran and why.
 */
export const DRY_RUN_FLAGS = {
  'dry-run': { type: 'boolean', description: 'report what would happen; change nothing' },
  'no-dry-run': {
    type: 'boolean',
    description: 'run for real even when the configuration says dry_run = true',
  },
} as const;

export interface DryRunChoice {
  dry_run: boolean;
  /** What decided: a flag, or the configuration key. */
  set_by: string;
}

export function chooseDryRun(
  flags: Record<string, unknown>,
  configured: boolean,
  configKey: string,
): DryRunChoice {
  if (flags['dry-run'] === true && flags['no-dry-run'] === true) {
    throw new UsageError('--dry-run and --no-dry-run contradict each other: give one of them');
  }
  if (flags['dry-run'] === true) return { dry_run: true, set_by: '--dry-run' };
  if (flags['no-dry-run'] === true) return { dry_run: false, set_by: '--no-dry-run' };
  return { dry_run: configured, set_by: `${configKey} = ${configured}` };
}

/** For a run handed to the workers: dry_run only when a flag says so (the worker's configuration decides otherwise). */
export function dryRunGiven(flags: Record<string, unknown>): { dry_run?: boolean } {
  if (flags['dry-run'] !== true && flags['no-dry-run'] !== true) return {};
  return { dry_run: chooseDryRun(flags, false, '').dry_run };
}

/** The "mode" line of a run's output: which mode ran, and what decided it. */
export function modeLine(choice: DryRunChoice): string {
  const mode = choice.dry_run ? 'dry run (nothing changed)' : 'live';
  const hint = choice.dry_run && choice.set_by !== '--dry-run' ? '; --no-dry-run runs it for real' : '';
  return `${mode}, set by ${choice.set_by}${hint}`;
}
