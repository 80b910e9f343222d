import type { Db } from '../../db/pool.ts';
import type { TerminalResolutionStatus } from '../../domain/dlq.ts';

/**
 * What the console needs from the web server around it. The shapes mirror src/web/auth.ts (issue 11:
 * Principal, Permission, authenticateToken, can); server.ts passes the real ones, so the console
 * sees exactly what the API would let the same token see.
 */

export const CONSOLE_PERMISSIONS = [
  'dlq:read',
  'dlq:update',
  'dlq:stats',
  'jobs:read',
  'jobs:run',
  'archive:read',
  'archive:restore',
  'audit:read',
  '*',
] as const;
export type ConsolePermission = (typeof CONSOLE_PERMISSIONS)[number];

export interface ConsolePrincipal {
  tokenName: string;
  permissions: readonly string[];
}

export interface ResolveAction {
  entryUuid: string;
  status: TerminalResolutionStatus;
  notes: string;
}

export interface ConsoleDeps {
  db: Db;
  /** The clock; every page and change takes its time from here. */
  now: () => Date;
  /** The principal of a token secret, or undefined when it is unknown, expired or revoked. */
  authenticate: (secret: string, now: Date) => Promise<ConsolePrincipal | undefined>;
  can: (principal: ConsolePrincipal, permission: ConsolePermission) => boolean;
  /**
   * Resolves one pending entry as the principal (the audit-writing service of issue 11). Throws
   * the same errors as resolveEntry: NotFoundError, UsageError when not pending.
   */
  resolve: (principal: ConsolePrincipal, action: ResolveAction, now: Date) => Promise<void>;
  /** Cookies marked Secure (behind TLS). */
  secureCookies?: boolean;
  /** How often the queue page refreshes its rows, in seconds. */
  queueRefreshSeconds?: number;
}
