import { runCli } from '../../src/cli/main.ts';

/** Runs the CLI in this process with captured output (fast; for exit codes across a real process see cli-process.ts). */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON (for --json runs); tests assert on its shape, so it is left untyped. */
  // biome-ignore lint/suspicious/noExplicitAny: assertions below check the shape
  json(): any;
}

export async function cli(args: string[], env: Record<string, string | undefined>): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: { TASKER_ENV: 'test', ...env },
    isTTY: false,
  });
  return { code, stdout, stderr, json: () => JSON.parse(stdout) };
}
