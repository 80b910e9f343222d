import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
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
}

export const SIGNIN_CSRF_COOKIE = 'tasker_signin_csrf';

const SECURITY_HEADERS = {
  'cache-control': 'no-store',
  'x-frame-options': 'DENY',
  'referrer-policy': 'same-origin',
  'content-security-policy':
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
};

/** A path of this console (never another origin), or undefined. */
export function localPath(value: unknown): string | undefined {
  return typeof value === 'string' &&
    value.startsWith('/') &&
    !value.startsWith('//') &&
    !value.includes('\\')
    ? value
    : undefined;
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
  const secure = deps.secureCookies ?? false;

  const send = (reply: FastifyReply, status: number, body: string) =>
    reply
      .code(status)
      .headers({ 'content-type': 'text/html; charset=utf-8', ...SECURITY_HEADERS })
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
      const session = await sessionOf(request);
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
      const ctx: PageContext = {
        principal: session.principal,
        csrf: csrfFor(session.secret),
        deps,
        currentPath: request.url.split('?')[0] ?? '/',
      };
      if (request.method === 'POST') {
        const body = (request.body ?? {}) as Record<string, unknown>;
        if (!csrfMatches(session.secret, body[CSRF_FIELD])) {
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
        void reply.setCookie(FLASH_COOKIE, sealFlash(secret, flash), flashCookieOptions(secure));
      return reply.header('cache-control', 'no-store').redirect(location, 303);
    },

    signIn(reply, status, next, problem, options) {
      const nonce = randomBytes(24).toString('base64url');
      void reply.setCookie(SIGNIN_CSRF_COOKIE, nonce, { ...sessionCookieOptions(secure), maxAge: 1800 });
      return send(reply, status, page('Sign in', signInPage(nonce, next, problem, options)));
    },

    contextFor(secret, principal, path) {
      return { principal, csrf: csrfFor(secret), deps, currentPath: path };
    },

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

  async function sessionOf(request: FastifyRequest): Promise<Session | undefined> {
    const secret = request.cookies[SESSION_COOKIE];
    if (!secret) return undefined;
    const principal = await deps.authenticate(secret, deps.now());
    return principal ? { secret, principal } : undefined;
  }

  return kit;
}
