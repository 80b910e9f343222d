import type { ArgsSpec } from './args.ts';
import type { CliIo, RuntimeHolder } from './runtime.ts';

export interface CommandContext {
  io: CliIo;
  runtime: RuntimeHolder;
  /** Aborted on SIGINT/SIGTERM. */
  signal: AbortSignal;
}

export interface Command {
  /** e.g. "detect-stale" or "dlq list". */
  name: string;
  summary: string;
  args: ArgsSpec;
  run(args: { flags: Record<string, unknown>; positionals: unknown[] }, ctx: CommandContext): Promise<void>;
}
