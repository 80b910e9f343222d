import type { Db } from '../../db/pool.ts';
import type { Actor } from '../../db/queries/audit.ts';
import type { Permission, Principal } from '../../operations/tokens.ts';
import type { WebDeps } from '../context.ts';

/**
 * What the console works with: the web server's dependencies (pool, config, clock, pg-boss
 * client), and the same authentication and permissions as the API (src/operations/tokens.ts), so
 * the console shows a token exactly what the API would let it see. Changes go through
 * src/operations/, which writes their audit rows.
 */

export type ConsolePermission = Permission;
export type ConsolePrincipal = Principal;

export interface ConsoleDeps {
  web: WebDeps;
  db: Db;
  now: () => Date;
  authenticate: (secret: string, now: Date) => Promise<ConsolePrincipal | null>;
  can: (principal: ConsolePrincipal, permission: ConsolePermission) => boolean;
  /** Cookies marked Secure (behind TLS): web.console_secure_cookies is not a key yet; false. */
  secureCookies: boolean;
  /** How often the queue page refreshes its rows, in seconds. */
  queueRefreshSeconds: number;
}

/** Who a console change is recorded as in the audit log. */
export function actorOf(principal: ConsolePrincipal): Actor {
  return { kind: 'console', name: principal.tokenName };
}
