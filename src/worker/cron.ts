/**
 * Cron expressions for the intervals the configuration allows. pg-boss evaluates cron with minute
 * resolution, so only intervals that repeat evenly are accepted (the config schema refuses the
 * rest): whole minutes dividing an hour, hours dividing a day, or a week. All in UTC.
 */

export function cronEverySeconds(seconds: number): string {
  const minutes = seconds / 60;
  if (!Number.isInteger(minutes) || minutes < 1 || 60 % minutes !== 0) {
    throw new Error(
      `${seconds} s cannot be kept by minute-resolution cron: use whole minutes dividing an hour`,
    );
  }
  if (minutes === 1) return '* * * * *';
  if (minutes === 60) return '0 * * * *';
  return `*/${minutes} * * * *`;
}

export function cronEveryHours(hours: number): string {
  if (hours === 168) return '0 0 * * 0';
  if (!Number.isInteger(hours) || hours < 1 || 24 % hours !== 0) {
    throw new Error(`${hours} h cannot be kept evenly by cron: use hours dividing a day, or 168`);
  }
  if (hours === 1) return '0 * * * *';
  if (hours === 24) return '0 0 * * *';
  return `0 */${hours} * * *`;
}
