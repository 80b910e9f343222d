import { UsageError } from '../errors.ts';

/**
 * The errors the operations throw besides src/errors.ts's NotFoundError and UsageError. Each surface
 * maps them the same way: NotFoundError 404 / exit 2, ConflictError 409 / exit 2 (with details: who
 * and when, where that applies), UsageError 400 / exit 2.
 */

/** The change conflicts with the current state (already resolved, already waiting, name taken). */
export class ConflictError extends UsageError {
  override name = 'ConflictError';
  /** What the client may want to show: who resolved it and when, the entry already pending, ... */
  readonly details: Record<string, unknown>;

  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.details = details;
  }
}
