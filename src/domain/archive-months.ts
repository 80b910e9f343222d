/**
 * Months of the archive (UTC): archive partitions and the rollup are by calendar month of
 * archived_at in UTC.
 */

/** The first instant (UTC) of the month holding `now` and of each of the `ahead` months after it. */
export function monthsFrom(now: Date, ahead: number): Date[] {
  return Array.from(
    { length: ahead + 1 },
    (_, i) => new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + i, 1)),
  );
}

/** The first instant (UTC) of the month `months` before the one holding `now`. */
export function monthStartBefore(now: Date, months: number): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - months, 1));
}
