/**
 * What a database error says about the database rather than about the request or run that met
 * it, for the worker (an interruption, not a failure) and the API (503 with a retry hint, not 500).
 * Walks an error's causes: callers wrap the driver's error in their own.
 */

/** SQLSTATEs of a database that is away, going away, refusing connections or out of them. */
const UNAVAILABLE_CODES = /^(08|57P0[1-3]|53300)/;
/** The driver's and the network's words for the same, where there is no SQLSTATE. */
const UNAVAILABLE_MESSAGES =
  /Connection terminated|connection (?:error|refused|reset)|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|the database system is (?:starting up|shutting down|in recovery mode)|terminating connection/i;

export type DatabaseTrouble =
  /** The server is away, restarting, or cut the connection. */
  | 'unavailable'
  /** No connection of this process's pool came free in time. */
  | 'no_connection'
  /** A lock another session holds was not granted within lock_timeout (55P03). */
  | 'busy'
  /** A statement ran past its statement_timeout (57014). */
  | 'timed_out';

export function databaseTrouble(err: unknown): DatabaseTrouble | null {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (/timeout exceeded when trying to connect/.test(e.message)) return 'no_connection';
    const code = (e as { code?: string }).code;
    if (code === '55P03') return 'busy';
    if (code === '57014') return 'timed_out';
    if ((code && UNAVAILABLE_CODES.test(code)) || UNAVAILABLE_MESSAGES.test(e.message)) return 'unavailable';
  }
  return null;
}
