import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from '../../src/paths.ts';

/** The CLI as a real process (the same Node binary jest runs on), for multi-process tests. */
export const CLI_PATH = join(projectRoot, 'src', 'cli', 'main.ts');

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliProcess {
  pid: number;
  done: Promise<ProcessResult>;
  kill(signal?: NodeJS.Signals): void;
  /** What the process wrote to stderr (its logs) so far. */
  stderrSoFar(): string;
}

/**
 * The CLI of this build, or of another one extracted elsewhere (`root`: its checkout, e.g. the
 * previous release for test/e2e/upgrade.test.ts).
 */
export function startCli(
  args: readonly string[],
  env: Record<string, string>,
  root: string = projectRoot,
): CliProcess {
  const child = spawn(process.execPath, [join(root, 'src', 'cli', 'main.ts'), ...args], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', TASKER_ENV: 'test', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const done = new Promise<ProcessResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return {
    pid: child.pid!,
    done,
    kill: (signal = 'SIGTERM') => child.kill(signal),
    stderrSoFar: () => stderr,
  };
}

export function runCli(
  args: readonly string[],
  env: Record<string, string>,
  root: string = projectRoot,
): Promise<ProcessResult> {
  return startCli(args, env, root).done;
}
