/**
 * Errors the CLI and the worker turn into exit codes. A UsageError is bad input from the person or
 * the file in front of us (exit 2); anything else is a failure (exit 1).
 */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A uuid or name given on the command line names nothing (bad input: exit 2). */
export class NotFoundError extends UsageError {
  override name = 'NotFoundError';
}

/** One or more configuration problems, each naming the dotted key, the value and what is allowed. */
export class ConfigError extends UsageError {
  override name = 'ConfigError';
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.problems = problems;
  }
}

/**
 * The database's engine tables (tasker-core's, which this system does not own) lack something this
 * system needs, or the archive tables cannot follow them: `migrate` refuses, changing nothing, and
 * names each problem. Exit 2, as bad input: the fix is in the database in front of us, not here.
 */
export class EngineSchemaError extends UsageError {
  override name = 'EngineSchemaError';
  readonly problems: readonly string[];

  constructor(intro: string, problems: readonly string[]) {
    super(`${intro}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.problems = problems;
  }
}

/**
 * Archival or a restore refused to move anything: the archive tables differ from the live tables
 * (SQLSTATE TL003: `tasker-lifecycle migrate` brings them up to date), an archive column cannot take
 * the live values (TL001: change it by hand), a restore would drop a value (TL002), or a foreign key
 * archival relies on is missing or not enforced (TL004). The message names each column or key and
 * what to run. Exit 2, as bad input: the fix is in the database in front of us, not here.
 */
export class ArchiveRefusedError extends UsageError {
  override name = 'ArchiveRefusedError';
  /** The SQLSTATE the database refused with. */
  readonly sqlstate: string;

  constructor(message: string, sqlstate: string, cause?: unknown) {
    super(message, { cause });
    this.sqlstate = sqlstate;
  }
}

/** The database lacks what this build needs: `migrate` has not run with it (exit 1). */
export class NotMigratedError extends Error {
  override name = 'NotMigratedError';
}

/**
 * A batch found, as its last statement before COMMIT, that its run is no longer its attempt's (the
 * run was requeued after this worker was taken for lost, or settled): the batch is rolled back and
 * the run stops, committing nothing more.
 */
export class ClaimLostError extends Error {
  override name = 'ClaimLostError';
}

/** Wraps anything thrown into an Error, keeping the original as cause. */
export function asError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(String(thrown), { cause: thrown });
}
