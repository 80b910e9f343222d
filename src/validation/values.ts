import { z } from 'zod';

/**
 * Value schemas: a string in (a command-line flag, a query parameter, a path segment, a JSON field),
 * a typed value out, and on refusal a message that says what is allowed. The CLI (src/cli/args.ts
 * puts "<flag> <value>: " in front) and the API (src/web/schemas.ts, "<field>: ") use the same ones,
 * so a value one accepts the other accepts, with the same words when it does not. They live here,
 * below both surfaces, so that neither imports the other.
 */

export function wholeNumber(min: number, max: number): z.ZodType<number> {
  const error = `expected a whole number from ${min} to ${max}`;
  return z
    .string()
    .regex(/^\d+$/, { error })
    .transform(Number)
    .pipe(z.int().min(min, { error }).max(max, { error }));
}

export function oneOf<const T extends readonly [string, ...string[]]>(values: T): z.ZodType<T[number]> {
  return z.enum(values, { error: `expected one of ${values.join(', ')}` });
}

export const uuid = z
  .string()
  .regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, {
    error: 'expected a UUID such as 0199c2a4-5e1f-7b3a-9d2e-4f6a8b0c1d2e',
  })
  .transform((s) => s.toLowerCase());

// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters refused
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters refused
const CONTROL_BUT_LINE_BREAKS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;

/**
 * Text an operator types. One line (names, filters): no control characters at all, so a name can
 * neither fake a second line nor hold a terminal's escape sequence. Several lines (notes): tabs
 * and line breaks, no other control character (NUL, escape, ...). PostgreSQL cannot store NUL in
 * text, so refusing it here makes it a 400 naming the field, not a database error.
 */
export function text(
  what: string,
  maxLength = 10_000,
  options: { multiline?: boolean } = {},
): z.ZodType<string> {
  const refused = options.multiline ? CONTROL_BUT_LINE_BREAKS : CONTROL_CHARACTERS;
  return z
    .string()
    .trim()
    .min(1, { error: `expected ${what}, not empty` })
    .max(maxLength, { error: `expected ${what} of at most ${maxLength} characters` })
    .refine((v) => !refused.test(v), {
      error: options.multiline
        ? `expected ${what} without control characters (tabs and line breaks are fine)`
        : `expected ${what} on one line, without control characters`,
    });
}

/** A point in time as typed: an instant, or a span back from "now" (resolved with the caller's clock). */
export type TimeSpec = { kind: 'at'; at: Date } | { kind: 'ago'; ms: number };

const DURATION_UNITS_MS: Record<string, number> = {
  s: 1000,
  m: 60_000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

/**
 * A time filter (`audit --since`, the console's audit filter): an ISO 8601 time with a zone, a date
 * (midnight UTC), or a span back from now such as 30m, 1h, 2d, 1w.
 */
export const pointInTime: z.ZodType<TimeSpec, string> = z
  .string()
  .trim()
  .transform((s, ctx): TimeSpec => {
    const span = /^(\d{1,6})\s*(s|m|min|h|d|w)$/i.exec(s);
    if (span) return { kind: 'ago', ms: Number(span[1]) * DURATION_UNITS_MS[span[2]!.toLowerCase()]! };
    const iso = /^\d{4}-\d{2}-\d{2}$/.test(s) ? `${s}T00:00:00Z` : s;
    if (z.iso.datetime({ offset: true }).safeParse(iso).success && !Number.isNaN(Date.parse(iso))) {
      return { kind: 'at', at: new Date(iso) };
    }
    ctx.addIssue({
      code: 'custom',
      message:
        'expected a time with a zone such as 2026-05-01T00:00:00Z, a date such as 2026-05-01 (UTC), or a span back from now such as 30m, 1h, 2d, 1w',
    });
    return z.NEVER;
  });

/** The instant a TimeSpec stands for, against the caller's clock. */
export function resolveTime(spec: TimeSpec, now: Date): Date {
  return spec.kind === 'at' ? spec.at : new Date(now.getTime() - spec.ms);
}
