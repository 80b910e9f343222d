import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config/schema.ts';
import type { HttpMetrics, RefusalReason } from '../telemetry/http-metrics.ts';
import type { Logger } from '../telemetry/logger.ts';
import { sendError } from './errors.ts';

/**
 * Refusals are seen. Every refused request (a missing or bad token, a session that stands for no
 * one, a missing permission, a form without its CSRF value) is logged at warn with why, the route,
 * the token id when one was presented and could be read (never the secret), the permission it
 * lacked and the client's address, and counted in tasker_http_requests_refused_total by reason.
 *
 * Repeated refusals from one address are refused outright: past web.refusal_limit_per_address
 * refusals (a missing token does not count: that is a client not set up, not one guessing) within
 * web.refusal_window_seconds, every request from the address gets 429 with Retry-After until the
 * window ends. The count is @fastify/rate-limit's (its in-memory store, per web process; IPv6
 * addresses by /56, the plugin's default), incremented only by refusals and read without
 * incrementing on every request. Health checks, /metrics and the console's assets are never
 * refused this way.
 */

export interface Refusal {
  reason: RefusalReason;
  /** The status the request is answered with. */
  status: number;
  /** The token presented (its public id), when one was presented and could be read. */
  tokenId?: string | null | undefined;
  /** The permission it lacked (forbidden). */
  permission?: string | undefined;
  /** More on why, in a word or a few (a session's end: signed_out, idle, ...). */
  detail?: string | undefined;
}

export interface Refusals {
  /** Logs, counts, and counts against the client's address. Call before replying. */
  refused(request: FastifyRequest, refusal: Refusal): Promise<void>;
  /** An onRequest hook: 429 while the client's address is past its limit. */
  guard(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined>;
}

/** Paths never refused for their address: liveness, readiness, metrics, static assets. */
const NEVER_BLOCKED = /^\/(healthz|readyz|metrics)(\?|$)|^\/assets\//;

/** The route a request matched (its pattern, never its values), or its path. */
export function routeOf(request: FastifyRequest): string {
  return request.routeOptions.url ?? request.url.split('?')[0] ?? '/';
}

/** Whether a reply to this request is a console page (HTML) rather than the API's JSON. */
export function isConsoleRequest(request: FastifyRequest): boolean {
  const path = request.url.split('?')[0] ?? '/';
  return !(path === '/v1' || path.startsWith('/v1/') || path === '/openapi.json');
}

export function createRefusals(
  app: FastifyInstance,
  web: Pick<Config, 'web'>['web'],
  logger: Logger,
  metrics: HttpMetrics | undefined,
  /** A console page saying why (the console's layout, which server.ts has). */
  consolePage: (title: string, message: string) => string,
): Refusals {
  const count = app.createRateLimit({
    max: web.refusal_limit_per_address,
    timeWindow: web.refusal_window_seconds * 1000,
  });

  return {
    async refused(request, r) {
      metrics?.refused(r.reason);
      const fields: Record<string, unknown> = {
        reason: r.reason,
        status: r.status,
        method: request.method,
        route: routeOf(request),
        token_id: r.tokenId,
        permission: r.permission,
        detail: r.detail,
        client_address: request.ip,
      };
      for (const [k, v] of Object.entries(fields)) if (v === undefined || v === null) delete fields[k];
      logger.warn('request refused', fields);
      if (r.reason === 'no_token' || r.reason === 'rate_limited') return;
      const state = await count(request);
      // Past the limit, the guard refuses the address's next requests before they get here: this
      // is the refusal that crossed it (or one of a few sent at the same moment).
      if (!state.isAllowed && state.isExceeded) {
        logger.warn('client address refused until its window ends', {
          client_address: request.ip,
          refusals: state.max + 1,
          window_seconds: web.refusal_window_seconds,
          retry_after_seconds: state.ttlInSeconds,
        });
      }
    },

    async guard(request, reply) {
      if (NEVER_BLOCKED.test(request.url)) return undefined;
      const state = await count(request, { increment: false });
      if (state.isAllowed || !state.isExceeded) return undefined;
      metrics?.refused('rate_limited');
      const retryAfter = String(Math.max(1, state.ttlInSeconds));
      const message = `too many refused requests from ${request.ip} (more than ${state.max} in ${web.refusal_window_seconds} s); try again in ${retryAfter} s`;
      void reply.header('retry-after', retryAfter);
      if (!isConsoleRequest(request)) return sendError(reply, 429, 'TOO_MANY_REFUSALS', message);
      return reply
        .code(429)
        .header('content-type', 'text/html; charset=utf-8')
        .header('cache-control', 'no-store')
        .send(
          consolePage(
            'Too many refused requests',
            `Requests from your address were refused too often (a wrong token, an ended session, a missing permission); nothing more is answered from it for ${retryAfter} s. Then sign in again.`,
          ),
        );
    },
  };
}
