import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import type { Config } from '../config/schema.ts';
import type { Actor } from '../db/queries/audit.ts';
import type { ReadRouter } from '../db/replica.ts';
import { type Permission, type Principal, tokenActorOf } from '../operations/tokens.ts';
import type { HttpMetrics } from '../telemetry/http-metrics.ts';
import type { Logger } from '../telemetry/logger.ts';

/**
 * What every API route and console page works with: the server's dependencies, the principal the
 * auth hook puts on a request, and who a change through the API is recorded as. It lives apart from
 * server.ts so that the routes and the console, which server.ts registers, need not import it back.
 */

export interface WebDeps {
  pool: pg.Pool;
  /**
   * A pool of its own for token checks and /readyz (default: pool), so that requests waiting on a
   * lock or a slow page cannot starve the check every other request starts with.
   */
  authPool?: pg.Pool;
  /**
   * Where GET requests read (database.replica_url when set and fresh; src/db/replica.ts). Absent:
   * everything on pool. A write, and any request from a client that made a change in the last
   * database.replica_max_lag_seconds (a cookie says so), reads from pool.
   */
  reads?: ReadRouter;
  config: Readonly<Config>;
  /** The clock of this server: every change is stamped with it. */
  now: () => Date;
  logger: Logger;
  /** A pg-boss client (role 'client': it sends and reads, it does not work queues). */
  boss: PgBoss;
  /**
   * The web process's metrics (refused requests), served on its /metrics. Default: made by
   * buildServer when metrics.enabled, and shut down with the server.
   */
  metrics?: HttpMetrics;
}

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * Who the request is: on /v1 routes the bearer token's principal (set by the auth hook); on
     * console pages the session's (set by its guard); null elsewhere and before.
     */
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /** The permission a /v1 route needs; routes without one are open (health, OpenAPI, console). */
    permission?: Permission;
  }
}

/** The Db a read-only route reads from: the replica's router when there is one, else the pool. */
export function readDb(deps: WebDeps): pg.Pool {
  return deps.reads?.reads ?? deps.pool;
}

/** The actor of an API change: the token, by name and id (the auth hook has set the principal). */
export function tokenActor(principal: Principal | null): Actor {
  if (!principal) throw new Error('an API change without an authenticated principal');
  return tokenActorOf(principal, 'token');
}
