import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Sessions without server state (any number of web processes share only the database): the
 * session cookie holds the token's secret (HttpOnly, SameSite=Strict, Path=/), and every request
 * authenticates it again, so revoking or expiring the token ends the session at once. The CSRF
 * value of a session is an HMAC of a fixed label keyed by that secret: every process can compute
 * and check it, a page from another origin cannot read or guess it.
 */

export const SESSION_COOKIE = 'tasker_session';
export const CSRF_FIELD = '_csrf';
/** Eight hours; the token's own expiry still applies within it. */
export const SESSION_MAX_AGE_SECONDS = 8 * 3600;

export function csrfFor(secret: string): string {
  return createHmac('sha256', secret).update('tasker-console-csrf:v1').digest('base64url');
}

export function csrfMatches(secret: string, submitted: unknown): boolean {
  if (typeof submitted !== 'string') return false;
  const expected = Buffer.from(csrfFor(secret));
  const given = Buffer.from(submitted);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export function sessionCookieOptions(secure: boolean) {
  return {
    path: '/',
    httpOnly: true,
    sameSite: 'strict' as const,
    secure,
    maxAge: SESSION_MAX_AGE_SECONDS,
  };
}
