import type { FastifyRequest } from 'fastify';
import type { Db } from '../../db/pool.ts';
import type { Actor } from '../../db/queries/audit.ts';
import type { OpenedSession, SessionCheck } from '../../operations/sessions.ts';
import { type Permission, type Principal, tokenActorOf } from '../../operations/tokens.ts';
import type { WebDeps } from '../context.ts';
import type { Refusal } from '../refusals.ts';

/**
 * What the console works with: the web server's dependencies (pool, config, clock, pg-boss
 * client), sessions (src/operations/sessions.ts: opened by signing in with a token, bound to it),
 * and the same permissions as the API (src/operations/tokens.ts), so the console shows a token
 * exactly what the API would let it see. Changes go through src/operations/, which writes their
 * audit rows. Refusals are logged and counted by the server's refusals (refusals.ts).
 */

export type ConsolePermission = Permission;
export type ConsolePrincipal = Principal;

export interface ConsoleSessions {
  /** Signs in: a session bound to the token, or null when the token does not authenticate. */
  open(token: string, now: Date, clientAddress: string | null): Promise<OpenedSession | null>;
  /** Who a session cookie stands for, or why no one. */
  check(secret: string, now: Date): Promise<SessionCheck>;
  /** Signs out: the session ends on the server. */
  end(secret: string, now: Date): Promise<boolean>;
}

export interface ConsoleDeps {
  web: WebDeps;
  db: Db;
  now: () => Date;
  sessions: ConsoleSessions;
  can: (principal: ConsolePrincipal, permission: ConsolePermission) => boolean;
  /**
   * Whether cookies set in answer to this request are marked Secure: web.secure_cookies "always",
   * or the request came over https (to this process, or through a proxy web.trust_proxy believes).
   */
  secureCookies: (request: FastifyRequest) => boolean;
  /** Logs and counts a refusal, and counts it against the client's address. */
  refused: (request: FastifyRequest, refusal: Refusal) => Promise<void>;
  /** How often the queue page refreshes its rows, in seconds. */
  queueRefreshSeconds: number;
}

/** Who a console change is recorded as in the audit log: the session's token, by name and id. */
export function actorOf(principal: ConsolePrincipal): Actor {
  return tokenActorOf(principal, 'console');
}
