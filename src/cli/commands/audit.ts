import { z } from 'zod';
import { listAudit } from '../../db/queries/audit.ts';
import { databaseNow } from '../../db/queries/server.ts';
import { personName } from '../../validation/fields.ts';
import { pointInTime, resolveTime, type TimeSpec, wholeNumber } from '../../validation/values.ts';
import type { Command } from '../command.ts';
import { printJson, printTable } from '../output.ts';

/** audit [--since TIME|SPAN] [--actor NAME] [--token-id ID]: the audit log, newest first. */
export const auditCommand: Command = {
  name: 'audit',
  summary: 'The audit log, newest first: who changed what (API, CLI, console), when, before and after.',
  args: {
    flags: {
      since: {
        type: 'string',
        placeholder: 'TIME',
        schema: pointInTime,
        description:
          'only changes at or after TIME: an ISO 8601 time, a date (UTC), or a span back from now such as 30m, 1h, 2d, 1w',
      },
      actor: {
        type: 'string',
        placeholder: 'NAME',
        schema: personName,
        description: 'only changes by this actor (a name)',
      },
      'token-id': {
        type: 'string',
        placeholder: 'ID',
        schema: z
          .string()
          .regex(/^[0-9a-f]{16}$/, { error: 'expected a token id: 16 hex digits, as `token list` shows' }),
        description: 'only changes by this token (a name given again after a revocation is another token)',
      },
      limit: {
        type: 'string',
        placeholder: 'N',
        schema: wholeNumber(1, 10_000),
        description: 'rows to show (default 100)',
      },
    },
  },
  async run({ flags }, { io, runtime }) {
    const pool = runtime.get().reads();
    const since = flags.since as TimeSpec | undefined;
    const rows = await listAudit(pool, {
      since: since ? resolveTime(since, await databaseNow(pool)) : undefined,
      actor: flags.actor as string | undefined,
      actorTokenId: flags['token-id'] as string | undefined,
      limit: (flags.limit as number | undefined) ?? 100,
    });
    if (flags.json) return printJson(io.stdout, rows);
    if (rows.length === 0) return void io.stdout.write('no audit rows match\n');
    printTable(io.stdout, rows, [
      { header: 'at', value: (r) => r.at.toISOString() },
      {
        header: 'actor',
        value: (r) =>
          `${r.actor} (${r.actor_kind}${r.actor_token_id ? `, token ${r.actor_token_id}` : r.actor_os_user ? `, OS user ${r.actor_os_user}` : ''})`,
      },
      { header: 'action', value: (r) => r.action },
      { header: 'target', value: (r) => `${r.target_kind} ${r.target_id}` },
      { header: 'change', value: (r) => describeChange(r.before, r.after) },
    ]);
  },
};

function describeChange(before: unknown, after: unknown): string {
  if (before === null || typeof before !== 'object' || after === null || typeof after !== 'object')
    return JSON.stringify(after ?? null);
  const b = before as Record<string, unknown>;
  const a = after as Record<string, unknown>;
  return Object.keys(a)
    .filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]))
    .map((k) => `${k}: ${JSON.stringify(b[k] ?? null)} -> ${JSON.stringify(a[k])}`)
    .join('; ');
}
