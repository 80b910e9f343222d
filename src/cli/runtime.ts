import type pg from 'pg';
import { type LoadedConfig, loadConfig } from '../config/load.ts';
import { connectionShares } from '../config/schema.ts';
import { createPool, databaseUrl, directDatabaseUrl, isEmbedded, sessionTimeouts } from '../db/pool.ts';
import { createReadRouter, type ReadRouter } from '../db/replica.ts';
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
  /**
   * A pool of one connection to database.direct_url (database.url when that is empty), for work
   * that needs a session across statements: migrations' advisory lock. Opened on first use.
   */
  directPool(): pg.Pool;
  /**
   * Where read-only commands read (status, dlq list|show|queue|stats|groups|group, audit):
   * database.replica_url when set and fresh, else the pool's database (src/db/replica.ts).
   */
  readRouter(): ReadRouter;
  /** readRouter().reads: a Db for read-only queries. */
  reads(): pg.Pool;
}

export class RuntimeHolder {
  #runtime: Runtime | undefined;
  #direct: pg.Pool | undefined;
  #router: ReadRouter | undefined;
  #applicationName = 'tasker-lifecycle-cli';
  readonly #io: CliIo;

  constructor(io: CliIo) {
    this.#io = io;
  }

  /**
   * Names this process's connections in pg_stat_activity after its command (`tasker-lifecycle-worker`,
   * `tasker-lifecycle-web`, …), as pg-boss's pool already is; call before get().
   */
  nameConnectionsFor(command: string): void {
    this.#applicationName = `tasker-lifecycle-${command.replaceAll(' ', '-')}`;
  }

  get(): Runtime {
    if (this.#runtime) return this.#runtime;
    const loaded = loadConfig({ env: this.#io.env });
    const logger = createLogger(loaded.config.logging, { service: 'tasker-lifecycle' });
    const url = databaseUrl(loaded.config);
    const pool = createPool(url, {
      // This system's share of database.max_connections_per_process; pg-boss has the rest.
      max: connectionShares(loaded.config.database).pool,
      logger,
      timeouts: sessionTimeouts(loaded.config.database),
      applicationName: this.#applicationName,
    });
    const target = targetOf(url, isEmbedded(loaded.config)).display;
    const directPool = () => {
      this.#direct ??= createPool(directDatabaseUrl(loaded.config), {
        max: 1,
        logger,
        applicationName: 'tasker-lifecycle-migrate',
      });
      return this.#direct;
    };
    const readRouter = () => {
      this.#router ??= createReadRouter({
        primary: pool,
        replicaUrl: loaded.config.database.replica_url,
        maxLagSeconds: loaded.config.database.replica_max_lag_seconds,
        logger,
        max: connectionShares(loaded.config.database).pool,
        applicationName: this.#applicationName,
        timeouts: sessionTimeouts(loaded.config.database),
      });
      return this.#router;
    };
    this.#runtime = {
      ...loaded,
      logger,
      pool,
      target,
      directPool,
      readRouter,
      reads: () => readRouter().reads,
    };
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
    await this.#router?.close();
    await this.#runtime?.pool.end();
    await this.#direct?.end();
    this.#runtime = undefined;
    this.#direct = undefined;
    this.#router = undefined;
  }
}
