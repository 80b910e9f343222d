import { userInfo } from 'node:os';
import { z } from 'zod';
import type { Actor } from '../../db/queries/audit.ts';
import { databaseNow } from '../../db/queries/server.ts';
import { listTokens } from '../../db/queries/tokens.ts';
import { createToken, PERMISSIONS, type Permission, revokeToken } from '../../operations/tokens.ts';
import { personName } from '../../validation/fields.ts';
import { wholeNumber } from '../../validation/values.ts';
import type { Command } from '../command.ts';
import { printJson, printTable } from '../output.ts';
import type { CliIo } from '../runtime.ts';

/** token create | list | revoke: the API's bearer tokens (stored hashed; the secret is shown once). */

const TOKEN_NAME = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
  error: 'expected 1 to 64 letters, digits, dots, hyphens or underscores, starting with a letter or digit',
});

const permissionList = z
  .string()
  .transform((s) => s.split(',').map((p) => p.trim()))
  .pipe(
    z
      .array(z.enum(PERMISSIONS, { error: `expected a comma-separated list of ${PERMISSIONS.join(', ')}` }))
      .min(1, { error: 'expected at least one permission' }),
  );

export const BY_FLAG = {
  type: 'string',
  placeholder: 'NAME',
  schema: personName,
  description: 'who does it, for the audit log (default: $USER)',
} as const;

/**
 * Who a CLI change is recorded as: the --by name (default: $USER), and beside it the operating-system
 * user the process runs as, which --by and $USER do not change.
 */
export function cliActor(flags: Record<string, unknown>, io: CliIo): Actor {
  const osUser = processUser() ?? io.env.USER;
  return {
    kind: 'cli',
    name: (flags.by as string | undefined) ?? io.env.USER ?? osUser ?? 'unknown',
    osUser,
  };
}

function processUser(): string | undefined {
  try {
    return userInfo().username;
  } catch {
    return undefined; // a uid without a passwd entry (some containers)
  }
}

export const tokenCreateCommand: Command = {
  name: 'token create',
  summary: 'Create an API token with permissions; prints its secret once (it is stored hashed).',
  args: {
    flags: {
      name: {
        type: 'string',
        placeholder: 'NAME',
        required: true,
        schema: TOKEN_NAME,
        description: 'its name (the audit log shows it)',
      },
      permissions: {
        type: 'string',
        placeholder: 'P1,P2',
        required: true,
        schema: permissionList,
        description: `comma-separated: ${PERMISSIONS.join(', ')}`,
      },
      'expires-in-days': {
        type: 'string',
        placeholder: 'N',
        schema: wholeNumber(1, 3650),
        description: 'it stops working after N days (default: never)',
      },
      by: BY_FLAG,
    },
  },
  async run({ flags }, { io, runtime }) {
    const { pool } = runtime.get();
    const created = await createToken(pool, {
      name: flags.name as string,
      permissions: flags.permissions as Permission[],
      expiresInDays: flags['expires-in-days'] as number | undefined,
      actor: cliActor(flags, io),
      now: await databaseNow(pool),
    });
    if (flags.json) return printJson(io.stdout, created);
    io.stdout.write(
      `created token ${created.name} (${created.permissions.join(', ')}; ${created.expires_at ? `expires ${created.expires_at.toISOString()}` : 'no expiry'})\n` +
        `secret (shown once, store it now): ${created.token}\n`,
    );
  },
};

export const tokenListCommand: Command = {
  name: 'token list',
  summary: 'List API tokens (never their secrets), newest first.',
  args: { flags: {} },
  async run({ flags }, { io, runtime }) {
    const { pool } = runtime.get();
    const now = await databaseNow(pool);
    const rows = (await listTokens(pool, 1000)).map((t) => ({
      ...t,
      status:
        t.revoked_at !== null
          ? 'revoked'
          : t.expires_at !== null && t.expires_at <= now
            ? 'expired'
            : 'active',
    }));
    if (flags.json) return printJson(io.stdout, rows);
    if (rows.length === 0) return void io.stdout.write('no tokens\n');
    printTable(io.stdout, rows, [
      { header: 'name', value: (r) => r.name },
      { header: 'token_id', value: (r) => r.token_id },
      { header: 'status', value: (r) => r.status },
      { header: 'permissions', value: (r) => r.permissions.join(',') },
      { header: 'created', value: (r) => `${r.created_at.toISOString()} by ${r.created_by}` },
      { header: 'expires', value: (r) => r.expires_at?.toISOString() ?? 'never' },
      {
        header: 'revoked',
        value: (r) => (r.revoked_at ? `${r.revoked_at.toISOString()} by ${r.revoked_by}` : ''),
      },
    ]);
  },
};

export const tokenRevokeCommand: Command = {
  name: 'token revoke',
  summary: 'Revoke an API token by name: requests with it get 401 at once, on every web process.',
  args: { flags: { by: BY_FLAG }, positionals: [{ name: 'name', schema: TOKEN_NAME }] },
  async run({ flags, positionals }, { io, runtime }) {
    const { pool } = runtime.get();
    const row = await revokeToken(pool, {
      name: positionals[0] as string,
      actor: cliActor(flags, io),
      now: await databaseNow(pool),
    });
    if (flags.json) return printJson(io.stdout, row);
    io.stdout.write(
      `revoked token ${row.name} (${row.token_id}); ${row.sessions_ended} console session(s) ended with it\n`,
    );
  },
};
