import { timingSafeEqual } from 'node:crypto';
import fastifyCookie from '@fastify/cookie';
import fastifyFormbody from '@fastify/formbody';
import type { FastifyInstance } from 'fastify';
import { tokenIdOf } from '../../operations/tokens.ts';
import { registerArchiveRoutes } from './archive-routes.ts';
import { CONSOLE_CSS, CONSOLE_JS } from './assets.ts';
import type { ConsoleDeps } from './deps.ts';
import { registerGroupRoutes } from './group-routes.ts';
import { entryAfterSignIn, registerInvestigationRoutes } from './investigation-routes.ts';
import { registerJobRoutes } from './job-routes.ts';
import { createKit, localPath, SIGNIN_CSRF_COOKIE } from './kit.ts';
import { CSRF_FIELD, csrfMatches, SESSION_COOKIE, sessionCookieOptions } from './session.ts';

/**
 * The console's routes under `/`: sign-in and sign-out, the assets, and the pages of each area
 * (investigation-routes.ts, job-routes.ts, archive-routes.ts). Signing in with a token opens a
 * session on the server (src/operations/sessions.ts) whose secret alone goes into the cookie;
 * signing out ends it there, so a copy of the cookie is refused from then on. Every page but
 * sign-in needs a live session whose token still authenticates; each page and action needs its
 * permission (the API's), and every POST a CSRF value that matches the session. Every accepted
 * POST answers with a redirect to the page that shows its outcome (kit.ts).
 */

export function registerConsoleRoutes(app: FastifyInstance, deps: ConsoleDeps): void {
  if (!app.hasRequestDecorator('cookies')) app.register(fastifyCookie);
  if (!app.hasContentTypeParser('application/x-www-form-urlencoded')) app.register(fastifyFormbody);
  const kit = createKit(deps);
  const sessionSeconds = deps.web.config.web.session_max_age_minutes * 60;

  app.get('/assets/console.css', async (_req, reply) =>
    reply
      .header('content-type', 'text/css; charset=utf-8')
      .header('cache-control', 'max-age=300')
      .send(CONSOLE_CSS),
  );
  app.get('/assets/console.js', async (_req, reply) =>
    reply
      .header('content-type', 'text/javascript; charset=utf-8')
      .header('cache-control', 'max-age=300')
      .send(CONSOLE_JS),
  );

  app.get('/sign-in', async (request, reply) => {
    const query = request.query as Record<string, unknown>;
    return kit.signIn(reply, 200, localPath(query.next) ?? '/', undefined, { ended: query.ended === '1' });
  });

  app.post('/sign-in', async (request, reply) => {
    const body = (request.body ?? {}) as Record<string, unknown>;
    const nonce = request.cookies[SIGNIN_CSRF_COOKIE];
    const given = typeof body[CSRF_FIELD] === 'string' ? (body[CSRF_FIELD] as string) : '';
    const next = localPath(body.next) ?? '/';
    // What a form held when its session ended (the resolve form's notes) rides along again.
    const draft = Object.fromEntries(
      Object.entries(body).filter(
        (e): e is [string, string] => e[0].startsWith('draft_') && typeof e[1] === 'string',
      ),
    );
    const token = typeof body.token === 'string' ? body.token.trim() : '';
    if (!nonce || given.length !== nonce.length || !timingSafeEqual(Buffer.from(given), Buffer.from(nonce))) {
      await deps.refused(request, {
        reason: 'csrf',
        status: 403,
        tokenId: tokenIdOf(token),
        detail: 'sign-in form',
      });
      return kit.signIn(reply, 403, next, 'The sign-in form expired or came from elsewhere; try again.', {
        draft,
      });
    }
    const session = token ? await deps.sessions.open(token, deps.now(), request.ip) : null;
    if (!session) {
      await deps.refused(request, {
        reason: 'bad_token',
        status: 401,
        tokenId: tokenIdOf(token),
        detail: 'sign-in',
      });
      return kit.signIn(reply, 401, next, 'That token is unknown, expired or revoked.', { draft });
    }
    const { principal } = session;
    deps.web.logger.info('console: signed in', {
      token: principal.tokenName,
      token_id: principal.tokenId,
      client_address: request.ip,
      expires_at: session.expiresAt,
    });
    void reply.clearCookie(SIGNIN_CSRF_COOKIE, { path: '/' });
    void reply.setCookie(
      SESSION_COOKIE,
      session.secret,
      sessionCookieOptions(kit.secure(request), sessionSeconds),
    );
    if (Object.keys(draft).length > 0) {
      // The draft goes straight back into its form (it may be long: never put into a URL). A
      // reload of this page signs in again and shows the same form: nothing is changed by it.
      const ctx = kit.contextFor(session.secret, principal, next.split('?')[0] ?? '/');
      const shown = await entryAfterSignIn(kit, reply, ctx, next, draft);
      if (shown) return shown;
    }
    return reply.redirect(next, 303);
  });

  // Ends the session on the server: the cookie, or any copy of it, is refused from now on.
  app.post('/sign-out', async (request, reply) => {
    const secret = request.cookies[SESSION_COOKIE];
    const body = (request.body ?? {}) as Record<string, unknown>;
    const check = secret ? await deps.sessions.check(secret, deps.now()) : undefined;
    if (secret && check?.ok) {
      if (!csrfMatches(secret, body[CSRF_FIELD])) {
        await deps.refused(request, {
          reason: 'csrf',
          status: 403,
          tokenId: check.principal.tokenId,
          detail: 'sign-out',
        });
        return kit.problem(
          reply,
          403,
          'Refused',
          'The form was not sent from this console; you are still signed in.',
        );
      }
      await deps.sessions.end(secret, deps.now());
      deps.web.logger.info('console: signed out', {
        token: check.principal.tokenName,
        token_id: check.principal.tokenId,
        client_address: request.ip,
      });
    }
    void reply.clearCookie(SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'strict' });
    return reply.redirect('/sign-in', 303);
  });

  registerInvestigationRoutes(app, kit);
  registerGroupRoutes(app, kit);
  registerJobRoutes(app, kit);
  registerArchiveRoutes(app, kit);
}
