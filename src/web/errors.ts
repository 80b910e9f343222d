import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { databaseTrouble } from '../db/errors.ts';
import { NotFoundError, UsageError } from '../errors.ts';
import { ConflictError } from '../operations/errors.ts';
import type { Logger } from '../telemetry/logger.ts';

/**
 * How the API answers when something is wrong: always {"error": {"code", "message", "details"?}},
 * with the status each error class maps to (NotFoundError 404, ConflictError 409, UsageError and
 * schema validation 400; the database away, busy or slow 503 with Retry-After; anything else 500
 * and logged). Routes call sendError for refusals of their own; server.ts installs errorHandler
 * for everything thrown.
 */

/** The API's error body: {"error": {"code", "message", "details"?}}. */
export function sendError(
  reply: FastifyReply,
  status: number,
  code: string,
  message: string,
  details?: Record<string, unknown>,
): FastifyReply {
  return reply.code(status).send({ error: details ? { code, message, details } : { code, message } });
}

/** "limit: expected a whole number ...", "body: unknown field \"x\"": the field first. */
function validationMessage(error: FastifyError & { validationContext?: string }): string {
  if (!hasZodFastifySchemaValidationErrors(error)) return error.message;
  const first = error.validation[0]!;
  const params = first.params as { keys?: string[] } | undefined;
  const path = first.instancePath.replace(/^\//, '').replaceAll('/', '.');
  if (first.keyword === 'unrecognized_keys' && params?.keys) {
    const where = path === '' ? (error.validationContext ?? 'request') : path;
    return `${params.keys.map((k) => (path === '' ? k : `${path}.${k}`)).join(', ')}: unknown field in ${where}; remove it`;
  }
  const field = path === '' ? (error.validationContext ?? 'request') : path;
  return `${field}: ${first.message}`;
}

/** Seconds to wait, code and message of a 503 for each kind of database trouble. */
const TROUBLE = {
  unavailable: [5, 'DATABASE_UNAVAILABLE', 'the database cannot be reached; try again shortly'],
  no_connection: [1, 'BUSY', 'every database connection of this server is in use; try again shortly'],
  busy: [1, 'BUSY', 'another session holds a row this request needs; try again shortly'],
  timed_out: [1, 'BUSY', 'the database took longer than database.statement_timeout_ms; try again shortly'],
} as const;

/** What an error thrown by a route or hook is answered with (the API as JSON, the console as a page). */
export interface ErrorAnswer {
  status: number;
  code: string;
  message: string;
  details?: Record<string, unknown> | undefined;
  /** Seconds, for Retry-After (503). */
  retryAfter?: number | undefined;
}

/**
 * How every error is answered: validation and UsageError 400, NotFoundError 404, ConflictError 409
 * (server.ts logs every 409 at info, with the token), the database away, busy or slow 503 with Retry-After (logged at
 * warn), any other 4xx as it says, anything else 500 (logged at error with its stack; the client
 * is told only that it was logged).
 */
export function answerFor(
  error: FastifyError & { validationContext?: string },
  request: FastifyRequest,
  logger: Logger,
): ErrorAnswer {
  if (error.validation) return { status: 400, code: 'BAD_REQUEST', message: validationMessage(error) };
  if (error instanceof NotFoundError) return { status: 404, code: 'NOT_FOUND', message: error.message };
  if (error instanceof ConflictError)
    return { status: 409, code: 'CONFLICT', message: error.message, details: error.details };
  if (error instanceof UsageError) return { status: 400, code: 'BAD_REQUEST', message: error.message };
  const trouble = databaseTrouble(error);
  if (trouble !== null) {
    const [retryAfter, code, message] = TROUBLE[trouble];
    logger.warn('request answered 503', { route: request.routeOptions.url, trouble, error: error.message });
    return { status: 503, code, message, retryAfter };
  }
  const status = error.statusCode ?? 500;
  if (status >= 400 && status < 500) return { status, code: 'BAD_REQUEST', message: error.message };
  logger.error('request failed', {
    method: request.method,
    route: request.routeOptions.url,
    error: error.message,
    stack: error.stack,
  });
  return { status: 500, code: 'INTERNAL_ERROR', message: 'internal error (logged by the server)' };
}

/** The server's error handler: anything a route throws, as the error body with its status. */
export function errorHandler(logger: Logger) {
  return (
    error: FastifyError & { validationContext?: string },
    request: FastifyRequest,
    reply: FastifyReply,
  ) => {
    const a = answerFor(error, request, logger);
    if (a.retryAfter !== undefined) void reply.header('retry-after', String(a.retryAfter));
    return sendError(reply, a.status, a.code, a.message, a.details);
  };
}
