/**
 * What no request may carry, whatever its route and schema: a NUL character in any text (a path
 * segment, a query value, a form field, a JSON string or key: PostgreSQL cannot store NUL in text
 * or jsonb, so it would fail as a database error, a 500), and JSON nested deeper than
 * MAX_INPUT_DEPTH (a value nested 5,000 levels deep in metadata made PostgreSQL run out of stack).
 * server.ts checks every request's params, query and body with it before validation and answers
 * 400 naming the field; nothing is changed.
 */

export const MAX_INPUT_DEPTH = 32;

/** The first problem in a request's part (`body`, `querystring`, `params`), or undefined. */
export function inputProblem(value: unknown, part: string): string | undefined {
  // Iterative, not recursive: a body of 1 MB can nest half a million levels.
  const stack: Array<{ value: unknown; path: string; depth: number }> = [{ value, path: '', depth: 0 }];
  while (stack.length > 0) {
    const { value: v, path, depth } = stack.pop()!;
    const where = path === '' ? part : path;
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return `${where}: expected text without NUL characters (\\u0000)`;
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (depth >= MAX_INPUT_DEPTH)
      return `${where}: nested more than ${MAX_INPUT_DEPTH} levels deep; expected at most ${MAX_INPUT_DEPTH}`;
    for (const [key, child] of Object.entries(v)) {
      const childPath = path === '' ? key : `${path}.${key}`;
      if (key.includes('\u0000'))
        return `${path === '' ? part : path}: expected keys without NUL characters (\\u0000)`;
      stack.push({ value: child, path: childPath, depth: depth + 1 });
    }
  }
  return undefined;
}
