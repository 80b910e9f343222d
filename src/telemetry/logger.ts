import winston from 'winston';
import type { Config } from '../config/schema.ts';

/**
 * Structured logs (winston). Fields are snake_case (job, duration_ms, tasks_detected). Everything
 * goes to stderr, so a command's --json output on stdout stays clean.
 */
export type Logger = winston.Logger;

export function createLogger(logging: Config['logging'], defaultMeta: Record<string, unknown> = {}): Logger {
  const format =
    logging.format === 'json'
      ? winston.format.combine(
          winston.format.timestamp(),
          winston.format.errors({ stack: true }),
          winston.format.json(),
        )
      : winston.format.combine(
          winston.format.timestamp({ format: 'HH:mm:ss.SSS' }),
          winston.format.errors({ stack: true }),
          winston.format.printf(({ timestamp, level, message, ...meta }) => {
            const fields = Object.entries(meta)
              .filter(([k]) => k !== 'stack')
              .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
              .join(' ');
            return `${timestamp} ${level.padEnd(5)} ${message}${fields ? ` ${fields}` : ''}`;
          }),
        );
  return winston.createLogger({
    level: logging.level,
    format,
    defaultMeta,
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] })],
  });
}

/** A logger that writes nothing (tests, library use). */
export function silentLogger(): Logger {
  return winston.createLogger({
    silent: true,
    transports: [new winston.transports.Console({ silent: true })],
  });
}
