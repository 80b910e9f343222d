import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import type { SessionRefusal } from '../../operations/sessions.ts';
import type { ConsoleDeps, ConsolePermission, ConsolePrincipal } from './deps.ts';
import { html, type SafeHtml } from './html.ts';
import { type PageContext, page } from './layout.ts';
import {
  CSRF_FIELD,
  csrfFor,
  csrfMatches,
  FLASH_COOKIE,
  type Flash,
  flashCookieOptions,
  openFlash,
  SESSION_COOKIE,
  sealFlash,
  sessionCookieOptions,
} from './session.ts';
import { signInPage } from './sign-in-page.ts';

/**
 * What every console route works with: replying with a page, guarding a request (session,
 * permission, CSRF), and answering a POST the one way the console does: POST, then redirect (303)
 * to the page that shows the outcome, with a one-time notice. A reload of that page reads again and
 * never repeats the change. Only refusals that change nothing and would be refused the same way on
 * a reload (a form from elsewhere: no CSRF value; a token without the permission) answer in place,
 * with 403.
 */

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface Session {
  secret: string;
  principal: ConsolePrincipal;
}

export interface GuardOptions {
  /** Read and clear the one-time notice (full pages: yes; fragments refreshed in place: no). */
  consumeFlash?: boolean;
  /**
   * A POST whose session has ended gets the sign-in form in place, and after signing in goes here
   * (default: the page the form was on).
   */
  next?: string;
  /** What the form held that must not be lost (the resolve form's notes): carried through sign-in. */
  draft?: Record<string, string>;
}

export interface ConsoleKit {
  deps: ConsoleDeps;
  send(reply: FastifyReply, status: number, body: string): FastifyReply;
  /** A page in the console's layout. */
  page(reply: FastifyReply, status: number, title: string, body: SafeHtml, ctx?: PageContext): FastifyReply;
  problem(
    reply: FastifyReply,
    status: number,
    title: string,
    message: string,
    ctx?: PageContext,
  ): FastifyReply;
  /** The page context of a permitted request, or undefined after replying (redirect, 403). */
  guard(
    request: FastifyRequest,
    reply: FastifyReply,
    permission: ConsolePermission,
    options?: GuardOptions,
  ): Promise<PageContext | undefined>;
  /** The end of every accepted POST: 303 to the page that shows the outcome, with a notice for it. */
  redirect(reply: FastifyReply, ctx: PageContext, location: string, flash?: Flash): FastifyReply;
  /** A zod error as "field: message; field: message", naming unknown fields and what is allowed. */
  issuesText(error: z.ZodError): string;
  /** The sign-in form (a fresh nonce in its cookie), in place, with a status. */
  signIn(
    reply: FastifyReply,
    status: number,
    next: string,
    problem?: string,
    options?: { ended?: boolean; draft?: Readonly<Record<string, string>> | undefined },
  ): FastifyReply;
  /** The page context of a session just made (sign-in). */
  contextFor(secret: string, principal: ConsolePrincipal, path: string): PageContext;
  /** Whether cookies set in answer to this request are marked Secure. */
  secure(request: FastifyRequest): boolean;
}

export const SIGNIN_CSRF_COOKIE = 'tasker_signin_csrf';

/** Why a session cookie stands for no one, for the log. */
const SESSION_REFUSALS: Record<SessionRefusal, string> = {
  malformed: 'not a session cookie this console issues',
  unknown: 'no such session',
  signed_out: 'the session was signed out',
  expired: 'the session expired (web.session_max_age_minutes)',
  idle: 'the session was idle too long (web.session_idle_timeout_minutes)',
  token_revoked: "the session's token was revoked",
  token_expired: "the session's token expired",
};

/** Pages are never cached (the server's other security headers are on every response: server.ts). */
const PAGE_HEADERS = { 'cache-control': 'no-store' };

const CONSOLE_ORIGIN = 'http://console.invalid';

/**
 * A path of this console (never another origin), or undefined: where sign-in may send a browser
 * back to. Only printable ASCII without spaces or backslashes (a browser drops tabs and line
 * breaks from a URL and reads `\` as `/`, so `/\evil.example` and `/<tab>/evil.example` would
 * leave for evil.example, and a line break in a Location header is a 500), starting with one `/`
 * and not `//`; the same again once percent-decoded (`/%5Cevil.example`); and it must resolve
 * against this console to this console.
 */
export function localPath(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length > 2048) return undefined;
  if (!/^\/(?![/\\])[\x21-\x7e]*$/.test(value) || value.includes('\\')) return undefined;
  let decoded: string;
  try {
    decoded = decodeURIComponent(value);
  } catch {
    return undefined;
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the characters refused
  if (/[\u0000-\u001f\u007f-\u009f\\]/.test(decoded) || decoded.startsWith('//')) return undefined;
  try {
    if (new URL(value, CONSOLE_ORIGIN).origin !== CONSOLE_ORIGIN) return undefined;
  } catch {
    return undefined;
  }
  return value;
}

/** The page a form was sent from (same origin only; the console sends Referer same-origin). */
function refererPath(request: FastifyRequest): string | undefined {
  const referer = request.headers.referer;
  if (!referer) return undefined;
  try {
    const url = new URL(referer);
    if (url.host !== request.headers.host) return undefined;
    return localPath(`${url.pathname}${url.search}`);
  } catch {
    return undefined;
  }
}

export function createKit(deps: ConsoleDeps): ConsoleKit {
  const send = (reply: FastifyReply, status: number, body: string) =>
    reply
      .code(status)
      .headers({ 'content-type': 'text/html; charset=utf-8', ...PAGE_HEADERS })
      .send(body);

  const kit: ConsoleKit = {
    deps,
    send,
    page: (reply, status, title, body, ctx) => send(reply, status, page(title, body, ctx)),
    problem: (reply, status, title, message, ctx) =>
      send(
        reply,
        status,
        page(title, html`<h1>${title}</h1><p class="notice error" role="alert">${message}</p>`, ctx),
      ),

    async guard(request, reply, permission, options = {}) {
      const session = await sessionOf(request, reply);
      if (!session) {
        if (request.method === 'GET') {
          void reply.redirect(`/sign-in?next=${encodeURIComponent(request.url)}`, 303);
        } else {
          // Nothing was changed. The sign-in form, here, leads back to the form with its draft (a
          // reload of this page asks to sign in again: it changes nothing).
          const next = options.next ?? refererPath(request) ?? '/';
          kit.signIn(reply, 401, next, undefined, { ended: true, draft: options.draft });
        }
        return undefined;
      }
      request.principal = session.principal;
      const ctx: PageContext = {
        principal: session.principal,
        csrf: csrfFor(session.secret),
        deps,
        currentPath: request.url.split('?')[0] ?? '/',
      };
      if (request.method === 'POST') {
        const body = (request.body ?? {}) as Record<string, unknown>;
        if (!csrfMatches(session.secret, body[CSRF_FIELD])) {
          await deps.refused(request, { reason: 'csrf', status: 403, tokenId: session.principal.tokenId });
          kit.problem(
            reply,
            403,
            'Refused',
            'The form was not sent from this console (missing or wrong CSRF value); nothing changed.',
            ctx,
          );
          return undefined;
        }
      } else if (options.consumeFlash !== false && request.cookies[FLASH_COOKIE] !== undefined) {
        ctx.flash = openFlash(session.secret, request.cookies[FLASH_COOKIE]);
        void reply.clearCookie(FLASH_COOKIE, { path: '/' });
      }
      if (!deps.can(session.principal, permission)) {
        await deps.refused(request, {
          reason: 'forbidden',
          status: 403,
          tokenId: session.principal.tokenId,
          permission,
        });
        kit.problem(
          reply,
          403,
          'Not permitted',
          `Your token (${session.principal.tokenName}) lacks the permission ${permission}; nothing changed.`,
          ctx,
        );
        return undefined;
      }
      return ctx;
    },

    redirect(reply, _ctx, location, flash) {
      const secret = reply.request.cookies[SESSION_COOKIE];
      if (flash && secret)
        void reply.setCookie(
          FLASH_COOKIE,
          sealFlash(secret, flash),
          flashCookieOptions(deps.secureCookies(reply.request)),
        );
      return reply.header('cache-control', 'no-store').redirect(location, 303);
    },

    signIn(reply, status, next, problem, options) {
      const nonce = randomBytes(24).toString('base64url');
      void reply.setCookie(
        SIGNIN_CSRF_COOKIE,
        nonce,
        sessionCookieOptions(deps.secureCookies(reply.request), 1800),
      );
      return send(reply, status, page('Sign in', signInPage(nonce, next, problem, options)));
    },

    contextFor(secret, principal, path) {
      return { principal, csrf: csrfFor(secret), deps, currentPath: path };
    },

    secure: (request) => deps.secureCookies(request),

    issuesText(error) {
      return error.issues
        .map((i) => {
          const keys = 'keys' in i ? (i as { keys: string[] }).keys : undefined;
          if (keys) return `${keys.join(', ')}: unknown field; remove it`;
          return `${i.path.join('.') || 'form'}: ${i.message}`;
        })
        .join('; ');
    },
  };

  /**
   * The session the request's cookie stands for. A cookie that stands for no one (signed out,
   * expired, idle, its token revoked: a copied cookie after sign-out among them) is a refusal,
   * logged with the session's token, and cleared, so the browser asks once.
   */
  async function sessionOf(request: FastifyRequest, reply: FastifyReply): Promise<Session | undefined> {
    const secret = request.cookies[SESSION_COOKIE];
    if (!secret) return undefined;
    const check = await deps.sessions.check(secret, deps.now());
    if (check.ok) return { secret, principal: check.principal };
    await deps.refused(request, {
      reason: 'bad_session',
      status: request.method === 'GET' ? 303 : 401,
      tokenId: check.tokenId,
      detail: SESSION_REFUSALS[check.reason],
    });
    void reply.clearCookie(SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'strict' });
    return undefined;
  }

  return kit;
}
