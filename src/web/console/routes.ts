import { timingSafeEqual } from 'node:crypto';
import fastifyCookie from '@fastify/cookie';
import fastifyFormbody from '@fastify/formbody';
import type { FastifyInstance } from 'fastify';
import { registerArchiveRoutes } from './archive-routes.ts';
import { CONSOLE_CSS, CONSOLE_JS } from './assets.ts';
import type { ConsoleDeps } from './deps.ts';
import { entryAfterSignIn, registerInvestigationRoutes } from './investigation-routes.ts';
import { registerJobRoutes } from './job-routes.ts';
import { createKit, localPath, SIGNIN_CSRF_COOKIE } from './kit.ts';
import { CSRF_FIELD, csrfMatches, SESSION_COOKIE, sessionCookieOptions } from './session.ts';

/**
 * The console's routes under `/`: sign-in and sign-out, the assets, and the pages of each area
 * (investigation-routes.ts, job-routes.ts, archive-routes.ts). Every page but sign-in needs a
 * session whose token still authenticates; each page and action needs its permission (the API's),
 * and every POST a CSRF value that matches the session. Every accepted POST answers with a
 * redirect to the page that shows its outcome (kit.ts).
 */

export function registerConsoleRoutes(app: FastifyInstance, deps: ConsoleDeps): void {
  if (!app.hasRequestDecorator('cookies')) app.register(fastifyCookie);
  if (!app.hasContentTypeParser('application/x-www-form-urlencoded')) app.register(fastifyFormbody);
  const secure = deps.secureCookies ?? false;
  const kit = createKit(deps);

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
    if (!nonce || given.length !== nonce.length || !timingSafeEqual(Buffer.from(given), Buffer.from(nonce))) {
      return kit.signIn(reply, 403, next, 'The sign-in form expired or came from elsewhere; try again.', {
        draft,
      });
    }
    const token = typeof body.token === 'string' ? body.token.trim() : '';
    const principal = token ? await deps.authenticate(token, deps.now()) : undefined;
    if (!principal) {
      return kit.signIn(reply, 401, next, 'That token is unknown, expired or revoked.', { draft });
    }
    void reply.clearCookie(SIGNIN_CSRF_COOKIE, { path: '/' });
    void reply.setCookie(SESSION_COOKIE, token, sessionCookieOptions(secure));
    if (Object.keys(draft).length > 0) {
      // The draft goes straight back into its form (it may be long: never put into a URL). A
      // reload of this page signs in again and shows the same form: nothing is changed by it.
      const ctx = kit.contextFor(token, principal, next.split('?')[0] ?? '/');
      const shown = await entryAfterSignIn(kit, reply, ctx, next, draft);
      if (shown) return shown;
    }
    return reply.redirect(next, 303);
  });

  app.post('/sign-out', async (request, reply) => {
    const secret = request.cookies[SESSION_COOKIE];
    const body = (request.body ?? {}) as Record<string, unknown>;
    const principal = secret ? await deps.authenticate(secret, deps.now()) : null;
    if (secret && principal && !csrfMatches(secret, body[CSRF_FIELD])) {
      return kit.problem(
        reply,
        403,
        'Refused',
        'The form was not sent from this console; you are still signed in.',
      );
    }
    void reply.clearCookie(SESSION_COOKIE, { path: '/' });
    return reply.redirect('/sign-in', 303);
  });

  registerInvestigationRoutes(app, kit);
  registerJobRoutes(app, kit);
  registerArchiveRoutes(app, kit);
}
