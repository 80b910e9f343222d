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

/**
 * A one-time notice carried across a redirect (POST, then 303 to the page that shows the outcome):
 * a short cookie, sealed with an HMAC keyed by the session's secret so that only this session's
 * pages show it, read and cleared by the next full page. Nothing is kept on the server.
 */
export const FLASH_COOKIE = 'tasker_flash';
const FLASH_MAX_CHARS = 1500;

export interface Flash {
  ok: boolean;
  text: string;
}

function flashMac(secret: string, body: string): string {
  return createHmac('sha256', secret).update(`tasker-console-flash:v1:${body}`).digest('base64url');
}

export function sealFlash(secret: string, flash: Flash): string {
  const text =
    flash.text.length > FLASH_MAX_CHARS ? `${flash.text.slice(0, FLASH_MAX_CHARS - 1)}…` : flash.text;
  const body = Buffer.from(JSON.stringify({ ok: flash.ok, text }), 'utf8').toString('base64url');
  return `${body}.${flashMac(secret, body)}`;
}

export function openFlash(secret: string, sealed: unknown): Flash | undefined {
  if (typeof sealed !== 'string') return undefined;
  const [body, mac] = sealed.split('.');
  if (!body || !mac) return undefined;
  const expected = Buffer.from(flashMac(secret, body));
  const given = Buffer.from(mac);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  try {
    const value = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as Partial<Flash>;
    return typeof value.text === 'string' ? { ok: value.ok === true, text: value.text } : undefined;
  } catch {
    return undefined;
  }
}

export function flashCookieOptions(secure: boolean) {
  return { path: '/', httpOnly: true, sameSite: 'strict' as const, secure, maxAge: 120 };
}
