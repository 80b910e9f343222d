#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { closestName } from '../domain/names.ts';
import { asError, UsageError } from '../errors.ts';
import { redactCredentials } from '../redact.ts';
import { type FlagSpec, parseArgs } from './args.ts';
import type { Command } from './command.ts';
import { archiveCommand, restoreCommand } from './commands/archive.ts';
import { archiveDropCommand, archiveExportCommand } from './commands/archive-months.ts';
import { auditCommand } from './commands/audit.ts';
import { cancelCommand } from './commands/cancel.ts';
import { detectStaleCommand } from './commands/detect-stale.ts';
import {
  dlqAddCommand,
  dlqGroupCommand,
  dlqGroupsCommand,
  dlqListCommand,
  dlqQueueCommand,
  dlqResolveCommand,
  dlqShowCommand,
  dlqStatsCommand,
} from './commands/dlq.ts';
import { enqueueArchiveCommand, enqueueDetectStaleCommand } from './commands/enqueue.ts';
import { migrateCommand } from './commands/migrate.ts';
import { startCommand } from './commands/start.ts';
import { statusCommand } from './commands/status.ts';
import { tokenCreateCommand, tokenListCommand, tokenRevokeCommand } from './commands/token.ts';
import { webCommand } from './commands/web.ts';
import { workerCommand } from './commands/worker.ts';
import { describeFailure } from './failures.ts';
import { printableLines, printJson } from './output.ts';
import { type CliIo, RuntimeHolder } from './runtime.ts';

/**
 * tasker-lifecycle <command> [options]. Exit codes: 0 success, 2 bad input (the message names the
 * bad value), 1 any other failure. Every command takes --json.
 */

export const COMMANDS: readonly Command[] = [
  startCommand,
  migrateCommand,
  workerCommand,
  statusCommand,
  detectStaleCommand,
  enqueueDetectStaleCommand,
  dlqListCommand,
  dlqShowCommand,
  dlqResolveCommand,
  dlqAddCommand,
  dlqStatsCommand,
  dlqQueueCommand,
  dlqGroupsCommand,
  dlqGroupCommand,
  archiveCommand,
  archiveExportCommand,
  archiveDropCommand,
  enqueueArchiveCommand,
  cancelCommand,
  restoreCommand,
  webCommand,
  tokenCreateCommand,
  tokenListCommand,
  tokenRevokeCommand,
  auditCommand,
];

const JSON_FLAG: FlagSpec = { type: 'boolean', description: 'machine-readable output' };
const DEBUG_FLAG: FlagSpec = { type: 'boolean', description: 'on failure, also print the stack trace' };

/** The stack, then each cause's. */
function stackOf(err: Error): string {
  const parts = [err.stack ?? String(err)];
  for (let cause = err.cause; cause instanceof Error; cause = cause.cause)
    parts.push(`caused by: ${cause.stack}`);
  return parts.join('\n');
}

export async function runCli(
  argv: readonly string[],
  io: CliIo,
  signal = new AbortController().signal,
): Promise<number> {
  const wantsJson = argv.includes('--json');
  const wantsDebug = argv.includes('--debug');
  const runtime = new RuntimeHolder(io);
  try {
    if (argv.length === 0 || argv[0] === 'help' || argv[0] === '--help' || argv[0] === '-h') {
      io.stdout.write(usage());
      return argv.length === 0 ? 2 : 0;
    }
    const { command, rest } = findCommand(argv);
    runtime.nameConnectionsFor(command.name);
    if (rest.includes('--help') || rest.includes('-h')) {
      io.stdout.write(commandUsage(command));
      return 0;
    }
    const args = parseArgs(rest, {
      ...command.args,
      flags: { ...command.args.flags, json: JSON_FLAG, debug: DEBUG_FLAG },
    });
    await command.run(args, { io, runtime, signal });
    return 0;
  } catch (thrown) {
    const err = asError(thrown);
    const usage = err instanceof UsageError;
    const message = usage ? err.message : describeFailure(err, runtime.target());
    if (wantsJson) printJson(io.stderr, { error: { code: usage ? err.name : 'FAILURE', message } });
    // Like every other human output, escaped: a message may quote stored text (who resolved an
    // entry, as an earlier build stored it), whose escape sequences must not act on the terminal.
    else io.stderr.write(`error: ${printableLines(message)}\n`);
    if (wantsDebug || runtime.debugLogging()) io.stderr.write(`${redactCredentials(stackOf(err))}\n`);
    return usage ? 2 : 1;
  } finally {
    await runtime.close();
  }
}

function findCommand(argv: readonly string[]): { command: Command; rest: string[] } {
  const two = COMMANDS.find((c) => c.name === `${argv[0]} ${argv[1]}`);
  if (two) return { command: two, rest: argv.slice(2) };
  const one = COMMANDS.find((c) => c.name === argv[0]);
  if (one) return { command: one, rest: argv.slice(1) };
  const group = COMMANDS.filter((c) => c.name.startsWith(`${argv[0]} `));
  if (group.length > 0) {
    const subs = group.map((c) => c.name.split(' ')[1]!);
    const sub = argv[1] === undefined ? 'nothing' : JSON.stringify(argv[1]);
    const hint = argv[1] === undefined ? undefined : closestName(argv[1], subs);
    throw new UsageError(
      `${argv[0]}: expected a subcommand (${subs.join(', ')}), got ${sub}${hint ? `; did you mean \`${argv[0]} ${hint}\`?` : ''}`,
    );
  }
  const names = [...new Set(COMMANDS.map((c) => c.name.split(' ')[0]!))];
  // "dlq-list", "enqueue-archive", "lsit": the nearest command, of one word or two.
  const typed = argv[0] ?? '';
  const hint =
    closestName(typed, names) ??
    closestName(
      typed.replace('-', ' '),
      COMMANDS.map((c) => c.name),
    );
  throw new UsageError(
    `unknown command ${JSON.stringify(typed)}${hint ? `; did you mean \`${hint}\`?` : ''} (commands: ${names.join(', ')})`,
  );
}

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'usage: tasker-lifecycle <command> [options]   (every command takes --json; <command> --help for its options)',
    '',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Exit codes: 0 success, 2 bad input, 1 other failure. --debug prints the stack trace of a failure.',
    '',
  ].join('\n');
}

function commandUsage(c: Command): string {
  const positionals = (c.args.positionals ?? [])
    .map((p) => (p.optional ? ` [<${p.name}>]` : ` <${p.name}>`))
    .join('');
  const flags = Object.entries({ ...c.args.flags, json: JSON_FLAG, debug: DEBUG_FLAG }).map(([name, f]) => {
    const arg = f.type === 'string' ? ` ${f.placeholder}` : '';
    const required = f.type === 'string' && f.required ? ' (required)' : '';
    return `  --${name}${arg}`.padEnd(26) + `${f.description}${required}`;
  });
  return [`usage: tasker-lifecycle ${c.name}${positionals} [options]`, '', c.summary, '', ...flags, ''].join(
    '\n',
  );
}

export async function main(): Promise<void> {
  // Output piped into a program that stops reading (| head) is not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
  const controller = new AbortController();
  let firstSignalAt = 0;
  // The first SIGINT/SIGTERM asks for a graceful stop. A terminal's Ctrl-C under `npm run` arrives
  // twice (from the terminal, and forwarded by npm), so a repeat within a second is the same
  // request; a later one means "stop now".
  const stop = (signal: NodeJS.Signals) => {
    const now = Date.now();
    if (!controller.signal.aborted) {
      firstSignalAt = now;
      controller.abort();
    } else if (now - firstSignalAt > 1000) {
      process.stderr.write(`${signal} again: stopping now, without waiting for running work\n`);
      process.exit(130);
    }
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const code = await runCli(
    process.argv.slice(2),
    {
      stdout: process.stdout,
      stderr: process.stderr,
      env: process.env,
      isTTY: process.stdout.isTTY === true,
    },
    controller.signal,
  );
  process.exitCode = code;
  // Everything is closed by now. A connection pg left open after a failed handshake (a server that
  // asked for a password the URL lacks) would keep the process alive until the server's
  // authentication_timeout (60 s): do not wait for it.
  setTimeout(() => process.exit(code), 2000).unref();
}

// Run when executed (node src/cli/main.ts, the bin link, dist/src/cli/main.js), not when imported.
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  await main();
}
