/**
 * Output for people (aligned tables, key: value blocks) and for programs (--json). Dates print as
 * ISO 8601 in UTC everywhere.
 */

export interface Out {
  write(text: string): unknown;
}

export function printJson(out: Out, value: unknown): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}

export interface Column<T> {
  header: string;
  value: (row: T) => unknown;
}

export function printTable<T>(out: Out, rows: readonly T[], columns: readonly Column<T>[]): void {
  const cells = rows.map((row) => columns.map((c) => formatCell(c.value(row))));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  out.write(`${line(columns.map((c) => c.header))}\n`);
  for (const row of cells) out.write(`${line(row)}\n`);
}

export function printFields(out: Out, fields: Record<string, unknown>): void {
  const width = Math.max(...Object.keys(fields).map((k) => k.length));
  for (const [key, value] of Object.entries(fields)) {
    out.write(`${`${key}:`.padEnd(width + 2)}${formatCell(value)}\n`);
  }
}

export function formatCell(value: unknown): string {
  if (value === null || value === undefined) return '-';
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'object') return printable(JSON.stringify(value));
  return printable(String(value));
}

/**
 * Text from outside (notes, names, errors the engine stored) made safe for a terminal: control
 * characters, DEL, C1 controls and the invisible direction overrides and line separators are shown
 * as escapes (\n, \x1b, \u202e) instead of acting on the screen, so a newline in --notes cannot
 * fake a second field and an escape sequence cannot recolour or rewrite what is shown. --json
 * output is left exact.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    const named = NAMED_ESCAPES[c];
    if (named) return named;
    const code = c.codePointAt(0)!;
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, '0')}`
      : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** Each line of a multi-line text of ours (indented JSON, diagnosis lines) made printable. */
export function printableLines(text: string): string {
  return text.split('\n').map(printable).join('\n');
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters being escaped
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const NAMED_ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** 95 -> "1h35m", 3000 -> "2d2h". */
export function formatMinutes(minutes: number | null | undefined): string {
  if (minutes === null || minutes === undefined) return '-';
  if (minutes < 60) return `${minutes}m`;
  if (minutes < 1440) return `${Math.floor(minutes / 60)}h${minutes % 60 ? `${minutes % 60}m` : ''}`;
  const hours = Math.floor((minutes % 1440) / 60);
  return `${Math.floor(minutes / 1440)}d${hours ? `${hours}h` : ''}`;
}
