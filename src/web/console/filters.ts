import { z } from 'zod';

/**
 * Filters typed into the console's forms arrive as query strings. A bad one never ends on a page of
 * its own: the page is shown again with its form, the values as typed, and the message the CLI gives
 * for the same value (`reason "foo": expected one of staleness_timeout, …`), naming the field.
 */

/** An optional form value: an empty field is no filter. */
export function optionalField<T extends z.ZodType>(schema: T) {
  return z.preprocess((v) => (v === '' ? undefined : v), schema.optional());
}

export type FilterParse<T> =
  | { ok: true; data: T; raw: Record<string, string> }
  | { ok: false; problems: string[]; raw: Record<string, string>; invalid: ReadonlySet<string> };

/** The query's values as text (a repeated key keeps its last value), to show in the form again. */
export function rawQuery(query: unknown): Record<string, string> {
  const raw: Record<string, string> = {};
  for (const [k, v] of Object.entries((query ?? {}) as Record<string, unknown>)) {
    const value = Array.isArray(v) ? v.at(-1) : v;
    if (typeof value === 'string') raw[k] = value;
  }
  return raw;
}

/**
 * Parses a form's query with a strict schema. Problems read `name "value": message`, as the CLI
 * reads `--name "value": message` (the form marks the field); an unknown key reads
 * `name: not a filter of this page (filters: …)`.
 */
export function parseFilters<T>(
  schema: z.ZodType<T>,
  query: unknown,
  fields: readonly string[],
): FilterParse<T> {
  const raw = rawQuery(query);
  const result = schema.safeParse(raw);
  if (result.success) return { ok: true, data: result.data, raw };
  const invalid = new Set(result.error.issues.map((i) => String(i.path[0] ?? '')));
  const problems = result.error.issues.map((i) => {
    const keys = 'keys' in i ? (i as { keys: string[] }).keys : undefined;
    if (keys) return `${keys.join(', ')}: not a filter of this page (filters: ${fields.join(', ')})`;
    const key = String(i.path[0] ?? '');
    return `${key} ${JSON.stringify(raw[key] ?? '')}: ${i.message}`;
  });
  return { ok: false, problems, raw, invalid };
}
