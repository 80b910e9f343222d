import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type pg from 'pg';
import { z } from 'zod';
import { type Db, withTransaction } from '../db/pool.ts';
import { type Actor, insertAudit } from '../db/queries/audit.ts';
import { endSessionsOfToken } from '../db/queries/console-sessions.ts';
import {
  findTokenById,
  insertToken,
  revokeToken as revokeTokenRow,
  type TokenRow,
} from '../db/queries/tokens.ts';
import { NotFoundError } from '../errors.ts';
import { ConflictError } from './errors.ts';

/**
 * API tokens, in one place for every surface: the CLI's `token` commands create and revoke them
 * (each change in one transaction with its audit row), the API and the console authenticate them.
 * A token is `tlk_<token_id>_<secret>`, where token_id is 16 hex digits (public: it finds the row)
 * and secret 32 random bytes in base64url. Only the SHA-256 of the whole token is stored; it is
 * compared in constant time. Secrets are never logged (the server's request log has no headers).
 */

export const PERMISSIONS = [
  'dlq:read',
  'dlq:update',
  'dlq:stats',
  'jobs:read',
  'jobs:run',
  'archive:read',
  'archive:restore',
  'audit:read',
  '*',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

export const PermissionSchema = z.enum(PERMISSIONS, { error: `expected one of ${PERMISSIONS.join(', ')}` });

/** Who a request is: a token, by its name and its id (public, never reused), with its permissions. */
export interface Principal {
  tokenName: string;
  tokenId: string;
  permissions: Permission[];
}

const TOKEN_PATTERN = /^tlk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** A new token: its id (stored), the secret to hand out once, and the hash to store. */
export function generateToken(): { tokenId: string; secret: string; secretSha256: Buffer } {
  const tokenId = randomBytes(8).toString('hex');
  const secret = `tlk_${tokenId}_${randomBytes(32).toString('base64url')}`;
  return { tokenId, secret, secretSha256: hashSecret(secret) };
}

/**
 * The token id a secret names, when it has a token's shape (for the log of a refused request: the
 * id is public, the rest of the secret is never logged); null otherwise.
 */
export function tokenIdOf(secret: string): string | null {
  return TOKEN_PATTERN.exec(secret)?.[1] ?? null;
}

/**
 * The principal a bearer secret stands for, or null when the secret is malformed, unknown,
 * expired (expires_at <= now) or revoked. The hash is compared in constant time.
 */
export async function authenticateToken(db: Db, secret: string, now: Date): Promise<Principal | null> {
  const match = TOKEN_PATTERN.exec(secret);
  if (!match) return null;
  const row = await findTokenById(db, match[1]!);
  // Compare anyway when unknown, against a fixed hash, so unknown and wrong take the same time.
  const stored = row?.secret_sha256 ?? Buffer.alloc(32);
  const equal = timingSafeEqual(stored, hashSecret(secret));
  if (!row || !equal) return null;
  if (row.revoked_at !== null) return null;
  if (row.expires_at !== null && row.expires_at.getTime() <= now.getTime()) return null;
  return { tokenName: row.name, tokenId: row.token_id, permissions: row.permissions as Permission[] };
}

/** Who an API change is recorded as: the token, by name and id. */
export function tokenActorOf(principal: Principal, kind: 'token' | 'console'): Actor {
  return { kind, name: principal.tokenName, tokenId: principal.tokenId };
}

export function can(principal: Principal, permission: Permission): boolean {
  return principal.permissions.includes('*') || principal.permissions.includes(permission);
}

// --- creating and revoking (the CLI's `token`, audited) ------------------------------------------

export interface CreateTokenParams {
  name: string;
  permissions: Permission[];
  expiresInDays?: number | undefined;
  actor: Actor;
  now: Date;
}

export interface CreatedToken {
  name: string;
  /** The secret: shown once, never stored. */
  token: string;
  permissions: Permission[];
  expires_at: Date | null;
}

/** Creates a token (ConflictError when a live token has the name). The audit row has no secret. */
export async function createToken(pool: pg.Pool, p: CreateTokenParams): Promise<CreatedToken> {
  const { tokenId, secret, secretSha256 } = generateToken();
  const expiresAt =
    p.expiresInDays === undefined ? null : new Date(p.now.getTime() + p.expiresInDays * 86_400_000);
  const permissions = [...new Set(p.permissions)];
  return withTransaction(pool, async (client) => {
    const row = await insertToken(client, {
      tokenId,
      name: p.name,
      secretSha256,
      permissions,
      createdAt: p.now,
      createdBy: p.actor.name,
      expiresAt,
    });
    if (!row) {
      throw new ConflictError(
        `a token named ${p.name} already exists; revoke it first or choose another name`,
        {
          name: p.name,
        },
      );
    }
    await insertAudit(client, {
      at: p.now,
      actor: p.actor,
      action: 'token.create',
      targetKind: 'token',
      targetId: p.name,
      before: null,
      after: { name: p.name, token_id: tokenId, permissions, expires_at: expiresAt },
    });
    return { name: p.name, token: secret, permissions, expires_at: expiresAt };
  });
}

/**
 * Revokes the live token of a name (NotFoundError when there is none) and ends every console
 * session opened with it, in one transaction with its audit row (which says how many).
 */
export async function revokeToken(
  pool: pg.Pool,
  p: { name: string; actor: Actor; now: Date },
): Promise<TokenRow & { sessions_ended: number }> {
  return withTransaction(pool, async (client) => {
    const row = await revokeTokenRow(client, p.name, p.now, p.actor.name);
    if (!row) throw new NotFoundError(`no live token named ${p.name}`);
    const sessionsEnded = await endSessionsOfToken(client, row.token_id, p.now, 'token_revoked');
    await insertAudit(client, {
      at: p.now,
      actor: p.actor,
      action: 'token.revoke',
      targetKind: 'token',
      targetId: p.name,
      before: { revoked_at: null },
      after: { revoked_at: p.now, token_id: row.token_id, sessions_ended: sessionsEnded },
    });
    return { ...row, sessions_ended: sessionsEnded };
  });
}
