/**
 * A batch size that backs off when batches time out and recovers when they succeed (River's
 * breaker, made to heal): a timeout halves it (never below 1); after `growAfter` successes in a row
 * it doubles, never above the configured size.
 */
export class AdaptiveBatchSize {
  readonly max: number;
  readonly growAfter: number;
  #current: number;
  #successesInRow = 0;

  constructor(max: number, growAfter = 3) {
    if (!Number.isInteger(max) || max < 1)
      throw new RangeError(`batch size must be a whole number ≥ 1, got ${max}`);
    if (!Number.isInteger(growAfter) || growAfter < 1) {
      throw new RangeError(`growAfter must be a whole number ≥ 1, got ${growAfter}`);
    }
    this.max = max;
    this.growAfter = growAfter;
    this.#current = max;
  }

  get current(): number {
    return this.#current;
  }

  /** After a timeout: the size to retry with. */
  shrink(): number {
    this.#successesInRow = 0;
    this.#current = Math.max(1, Math.floor(this.#current / 2));
    return this.#current;
  }

  /** After a batch that finished: the size of the next one. */
  succeeded(): number {
    this.#successesInRow += 1;
    if (this.#current < this.max && this.#successesInRow >= this.growAfter) {
      this.#current = Math.min(this.max, this.#current * 2);
      this.#successesInRow = 0;
    }
    return this.#current;
  }
}
