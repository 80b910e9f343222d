import { createHash, randomBytes } from 'node:crypto';
import type { Db } from '../db/pool.ts';
import {
  deleteExpiredSessions,
  endSession as endSessionRow,
  findSession,
  insertSession,
  touchSession,
} from '../db/queries/console-sessions.ts';
import { authenticateToken, type Permission, type Principal } from './tokens.ts';

/**
 * Console sessions. Signing in with a token opens a session: a random secret (`tlc_` and 32 random
 * bytes in base64url) goes into the cookie, and only its SHA-256 is stored, bound to the token, with
 * its own expiry and idle timeout. Every request reads the session with its token, so a session
 * ends when it is signed out, expires, sits idle too long, or when its token is revoked or expires;
 * a copied cookie dies with it. Any number of web processes share the sessions through the
 * database. The secret is never logged; the token id (public) is.
 */

const SESSION_PATTERN = /^tlc_[A-Za-z0-9_-]{43}$/;
/** A busy session's last_seen_at moves at most this often (one write a minute, not one a request). */
export const SESSION_TOUCH_SECONDS = 60;
/** Sessions are deleted this long after they expire (they stay as a record until then). */
const KEEP_EXPIRED_MS = 7 * 86_400_000;

function hashOf(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

export interface SessionLimits {
  maxAgeMinutes: number;
  idleTimeoutMinutes: number;
}

export interface OpenedSession {
  /** The cookie's value: shown to the browser once, stored only as a hash. */
  secret: string;
  principal: Principal;
  expiresAt: Date;
}

/**
 * Signs in: the token's principal and a new session bound to it, or null when the token does not
 * authenticate (unknown, malformed, expired, revoked). Deletes a few sessions long expired.
 */
export async function openSession(
  db: Db,
  p: { token: string; now: Date; limits: SessionLimits; clientAddress: string | null },
): Promise<OpenedSession | null> {
  const principal = await authenticateToken(db, p.token, p.now);
  if (!principal) return null;
  const secret = `tlc_${randomBytes(32).toString('base64url')}`;
  const expiresAt = new Date(p.now.getTime() + p.limits.maxAgeMinutes * 60_000);
  await insertSession(db, {
    secretSha256: hashOf(secret),
    tokenId: principal.tokenId,
    createdAt: p.now,
    expiresAt,
    clientAddress: p.clientAddress,
  });
  await deleteExpiredSessions(db, new Date(p.now.getTime() - KEEP_EXPIRED_MS), 100);
  return { secret, principal, expiresAt };
}

/** Why a presented session does not stand for anyone (for the log of the refusal). */
export type SessionRefusal =
  | 'malformed'
  | 'unknown'
  | 'signed_out'
  | 'expired'
  | 'idle'
  | 'token_revoked'
  | 'token_expired';

export type SessionCheck =
  | { ok: true; principal: Principal }
  /** tokenId: the token the session was bound to, when the session is known. */
  | { ok: false; reason: SessionRefusal; tokenId: string | null };

/** The principal a session cookie stands for, or why it stands for no one. */
export async function checkSession(
  db: Db,
  secret: string,
  now: Date,
  limits: SessionLimits,
): Promise<SessionCheck> {
  if (!SESSION_PATTERN.test(secret)) return { ok: false, reason: 'malformed', tokenId: null };
  const hash = hashOf(secret);
  const s = await findSession(db, hash);
  if (!s) return { ok: false, reason: 'unknown', tokenId: null };
  const refuse = (reason: SessionRefusal): SessionCheck => ({ ok: false, reason, tokenId: s.token_id });
  if (s.token_revoked_at !== null) return refuse('token_revoked');
  if (s.ended_at !== null) return refuse(s.ended_reason === 'token_revoked' ? 'token_revoked' : 'signed_out');
  if (s.token_expires_at !== null && s.token_expires_at.getTime() <= now.getTime())
    return refuse('token_expired');
  if (s.expires_at.getTime() <= now.getTime()) return refuse('expired');
  if (s.last_seen_at.getTime() + limits.idleTimeoutMinutes * 60_000 <= now.getTime()) return refuse('idle');
  if (now.getTime() - s.last_seen_at.getTime() >= SESSION_TOUCH_SECONDS * 1000)
    await touchSession(db, hash, now, SESSION_TOUCH_SECONDS);
  return {
    ok: true,
    principal: { tokenName: s.token_name, tokenId: s.token_id, permissions: s.permissions as Permission[] },
  };
}

/** Signs out: ends the session (a copy of its cookie is refused from now on); false if it had ended. */
export async function endSession(db: Db, secret: string, now: Date): Promise<boolean> {
  if (!SESSION_PATTERN.test(secret)) return false;
  return endSessionRow(db, hashOf(secret), now, 'signed_out');
}
