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

export function text(what: string, maxLength = 10_000): z.ZodType<string> {
  return z
    .string()
    .trim()
    .min(1, { error: `expected ${what}, not empty` })
    .max(maxLength, { error: `expected ${what} of at most ${maxLength} characters` });
}
