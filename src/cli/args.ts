import { parseArgs as parseNodeArgs } from 'node:util';
import type { z } from 'zod';
import { closestName } from '../domain/names.ts';
import { UsageError } from '../errors.ts';

/**
 * Command-line parsing: node:util parseArgs (strict: unknown flags are errors) plus a zod schema per
 * value, so every bad argument is reported as "<flag> <value>: <what is allowed>" and exits 2. The
 * value schemas themselves (wholeNumber, oneOf, uuid, text) are shared with the API and live in
 * src/validation/values.ts; what is here is the command line's own.
 */

export type FlagSpec =
  | { type: 'boolean'; description: string }
  | { type: 'string'; description: string; schema: z.ZodType; placeholder: string; required?: boolean };

export interface PositionalSpec {
  name: string;
  schema: z.ZodType;
  /** May be left out (the command says what stands in for it); only the last positionals. */
  optional?: boolean;
}

export interface ArgsSpec {
  flags: Record<string, FlagSpec>;
  positionals?: PositionalSpec[];
}

export interface ParsedArgs {
  flags: Record<string, unknown>;
  positionals: unknown[];
}

export function parseArgs(argv: readonly string[], spec: ArgsSpec): ParsedArgs {
  const options = Object.fromEntries(
    Object.entries(spec.flags).map(([name, f]) => [name, { type: f.type }]),
  ) as Record<string, { type: 'boolean' | 'string' }>;
  let parsed: ReturnType<typeof parseNodeArgs>;
  try {
    parsed = parseNodeArgs({ args: [...argv], options, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UsageError(cleanNodeMessage((err as Error).message, Object.keys(spec.flags)));
  }

  const flags: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(spec.flags)) {
    const raw = parsed.values[name];
    if (f.type === 'boolean') {
      flags[name] = raw === true;
      continue;
    }
    if (raw === undefined) {
      if (f.required) throw new UsageError(`--${name} ${f.placeholder} is required: ${f.description}`);
      continue;
    }
    flags[name] = validate(`--${name}`, raw, f.schema);
  }

  const expected = spec.positionals ?? [];
  if (parsed.positionals.length > expected.length) {
    const extra = parsed.positionals
      .slice(expected.length)
      .map((p) => JSON.stringify(p))
      .join(' ');
    throw new UsageError(
      `unexpected argument ${extra}: expected ${expected.length === 0 ? 'no arguments' : expected.map((p) => `<${p.name}>`).join(' ')}`,
    );
  }
  const positionals = expected.map((p, i) => {
    const raw = parsed.positionals[i];
    if (raw === undefined) {
      if (p.optional) return undefined;
      throw new UsageError(`missing <${p.name}>`);
    }
    return validate(`<${p.name}>`, raw, p.schema);
  });
  return { flags, positionals };
}

function validate(label: string, raw: unknown, schema: z.ZodType): unknown {
  const result = schema.safeParse(raw);
  if (result.success) return result.data;
  const message = result.error.issues[0]?.message ?? 'not allowed';
  throw new UsageError(`${label} ${JSON.stringify(raw)}: ${message}`);
}

function cleanNodeMessage(message: string, known: string[]): string {
  // node says e.g. "Unknown option '--bach-size'. To specify a positional argument starting with a '-' ..."
  const first = message.split('. ')[0] ?? message;
  const unknown = /^Unknown option '--?([^']+)'/.exec(first)?.[1];
  const hint = unknown === undefined ? undefined : closestName(unknown, known);
  return `${first}${hint ? `; did you mean --${hint}?` : ''} (known options: ${known.map((k) => `--${k}`).join(', ')})`;
}
