import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { Db } from '../db/pool.ts';
import { findTokenById } from '../db/queries/tokens.ts';

/**
 * API tokens: `tlk_<token_id>_<secret>`, where token_id is 16 hex digits (public: it finds the row)
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

export interface Principal {
  tokenName: string;
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
  return { tokenName: row.name, permissions: row.permissions as Permission[] };
}

export function can(principal: Principal, permission: Permission): boolean {
  return principal.permissions.includes('*') || principal.permissions.includes(permission);
}
