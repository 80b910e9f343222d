import type pg from 'pg';
import { type LoadedConfig, loadConfig } from '../config/load.ts';
import { createPool, databaseUrl, isEmbedded } from '../db/pool.ts';
import { createLogger, type Logger } from '../telemetry/logger.ts';
import { type Target, targetOf } from './failures.ts';
import type { Out } from './output.ts';

/**
 * What a command needs, created on first use so that --help and argument errors never touch the
 * configuration or the database.
 */
export interface CliIo {
  stdout: Out;
  stderr: Out;
  env: Record<string, string | undefined>;
  /** stdout is a terminal (progress bars, colours). */
  isTTY: boolean;
}

export interface Runtime extends LoadedConfig {
  logger: Logger;
  pool: pg.Pool;
  /** A short description of where we connect, for messages (no password). */
  target: string;
}

export class RuntimeHolder {
  #runtime: Runtime | undefined;
  readonly #io: CliIo;

  constructor(io: CliIo) {
    this.#io = io;
  }

  get(): Runtime {
    if (this.#runtime) return this.#runtime;
    const loaded = loadConfig({ env: this.#io.env });
    const logger = createLogger(loaded.config.logging, { service: 'tasker-lifecycle' });
    const url = databaseUrl(loaded.config);
    const pool = createPool(url, {
      max: loaded.config.database.pool_max,
      logger,
      applicationName: 'tasker-lifecycle-cli',
    });
    const target = targetOf(url, isEmbedded(loaded.config)).display;
    this.#runtime = { ...loaded, logger, pool, target };
    return this.#runtime;
  }

  /** Where commands connect, for failure messages; undefined before (or without) a configuration. */
  target(): Target | undefined {
    if (!this.#runtime) return undefined;
    return targetOf(databaseUrl(this.#runtime.config), isEmbedded(this.#runtime.config));
  }

  debugLogging(): boolean {
    return this.#runtime?.config.logging.level === 'debug';
  }

  async close(): Promise<void> {
    await this.#runtime?.pool.end();
    this.#runtime = undefined;
  }
}
