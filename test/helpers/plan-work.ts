import type pg from 'pg';

/**
 * The work a statement's plans do, counted instead of timed (a loaded CI machine makes a timed
 * limit either flaky or loose): auto_explain with log_analyze and log_nested_statements reports
 * every plan the statement runs, the statements inside the functions it calls included, as notices
 * on the connection; the count is each plan node's actual rows times its loops, plus the rows a
 * filter or join filter threw away. A join that hashes a whole table, or a nested loop that rescans
 * one, shows up as rows handled in proportion to the table, not to the rows the statement needs.
 */
export interface PlanWork<R extends pg.QueryResultRow> {
  rows: R[];
  /** Rows every plan node handled, over all the statement's plans. */
  rowsHandled: number;
  /** How many plans auto_explain reported (the statement and each nested statement run). */
  plans: number;
}

interface PlanNode {
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Join Filter'?: number;
  'Rows Removed by Index Recheck'?: number;
  Plans?: PlanNode[];
}

function rowsHandled(node: PlanNode): number {
  const own =
    (node['Actual Rows'] ?? 0) * (node['Actual Loops'] ?? 1) +
    (node['Rows Removed by Filter'] ?? 0) +
    (node['Rows Removed by Join Filter'] ?? 0) +
    (node['Rows Removed by Index Recheck'] ?? 0);
  return own + (node.Plans ?? []).reduce((sum, child) => sum + rowsHandled(child), 0);
}

/**
 * Loads auto_explain on `client` (a connection of its own: the settings stay on it) so that every
 * statement it runs, those inside functions included, reports its plan as a JSON notice on the
 * connection, with these auto_explain settings besides (e.g. 'log_analyze = on').
 */
export async function explainAsNotices(client: pg.ClientBase, settings: string[]): Promise<void> {
  await client.query(`LOAD 'auto_explain'`);
  for (const setting of [
    'log_nested_statements = on',
    'log_format = json',
    'log_level = notice',
    ...settings,
  ]) {
    await client.query(`SET auto_explain.${setting}`);
  }
}

/**
 * Runs `sql` on `client` (a connection of its own: the auto_explain settings stay on it) and
 * counts its plans' work. Run it once before to count a warm call: a first call also plans.
 */
export async function planWork<R extends pg.QueryResultRow>(
  client: pg.Client,
  sql: string,
  params: unknown[],
): Promise<PlanWork<R>> {
  await explainAsNotices(client, ['log_min_duration = 0', 'log_analyze = on', 'log_timing = off']);
  const plans: PlanNode[] = [];
  const collect = (notice: { message?: string | undefined }) => {
    const text = notice.message ?? '';
    if (text.includes('plan:')) plans.push(JSON.parse(text.slice(text.indexOf('{'))).Plan as PlanNode);
  };
  client.on('notice', collect);
  try {
    const { rows } = await client.query<R>(sql, params);
    return { rows, rowsHandled: plans.reduce((n, p) => n + rowsHandled(p), 0), plans: plans.length };
  } finally {
    client.off('notice', collect);
    await client.query('SET auto_explain.log_min_duration = -1');
  }
}
