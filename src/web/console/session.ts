import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The console's cookies. The session cookie holds the session's secret (src/operations/sessions.ts:
 * stored on the server only as a hash, bound to the token signed in with; HttpOnly,
 * SameSite=Strict, Path=/, Secure over https), never the token. The CSRF value of a session is an
 * HMAC of a fixed label keyed by that secret: every web process can compute and check it, a page
 * from another origin cannot read or guess it, and it dies with the session.
 */

export const SESSION_COOKIE = 'tasker_session';
export const CSRF_FIELD = '_csrf';

export function csrfFor(secret: string): string {
  return createHmac('sha256', secret).update('tasker-console-csrf:v1').digest('base64url');
}

export function csrfMatches(secret: string, submitted: unknown): boolean {
  if (typeof submitted !== 'string') return false;
  const expected = Buffer.from(csrfFor(secret));
  const given = Buffer.from(submitted);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** The session cookie's attributes; it lasts as long as the session may (maxAgeSeconds). */
export function sessionCookieOptions(secure: boolean, maxAgeSeconds: number) {
  return {
    path: '/',
    httpOnly: true,
    sameSite: 'strict' as const,
    secure,
    maxAge: maxAgeSeconds,
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
