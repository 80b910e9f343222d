import { z } from 'zod';
import { dropArchiveMonth, exportArchiveMonth } from '../../db/archive-export.ts';
import { databaseNow } from '../../db/queries/server.ts';
import type { Command } from '../command.ts';
import { printFields, printJson } from '../output.ts';

/**
 * archive export and archive drop: one month of the archive to Parquet files with a verified
 * manifest, and one month's partitions dropped (refused for a month not exported and verified
 * unless --force). docs/archival.md.
 */

const month = z
  .string()
  .regex(/^\d{4}-(0[1-9]|1[0-2])$/, { error: 'expected a month as YYYY-MM, such as 2026-04' });
const directory = z.string().min(1, { error: 'expected a directory' });
/** --month, as export and drop take it. */
const monthFlag = {
  type: 'string',
  placeholder: 'YYYY-MM',
  required: true,
  schema: month,
  description: 'the month (UTC) of archived_at',
} as const;

/** lock_timeout and statement_timeout of each DETACH and DROP, in milliseconds. */
const DROP_LOCK_TIMEOUT_MS = 1000;
const DROP_STATEMENT_TIMEOUT_MS = 600_000;

export const archiveExportCommand: Command = {
  name: 'archive export',
  summary:
    'Write one month of every archive table as Parquet files (DIR/<table>.parquet) with a manifest of row counts and checksums, verified by reading them back.',
  args: {
    flags: {
      month: monthFlag,
      to: {
        type: 'string',
        placeholder: 'DIR',
        required: true,
        schema: directory,
        description: 'the directory to write (made if absent)',
      },
    },
    positionals: [],
  },
  async run({ flags }, { io, runtime }) {
    const { pool } = runtime.get();
    const manifest = await exportArchiveMonth(pool, {
      month: flags.month as string,
      directory: flags.to as string,
      now: await databaseNow(pool),
    });
    if (flags.json) return printJson(io.stdout, manifest);
    io.stdout.write(`exported ${manifest.month} to ${flags.to as string} (verified)\n`);
    printFields(
      io.stdout,
      Object.fromEntries(manifest.tables.map((t) => [t.table, `${t.rows} rows, ${t.file}`])),
    );
  },
};

export const archiveDropCommand: Command = {
  name: 'archive drop',
  summary:
    'Drop one month of the archive (its partitions, detached concurrently); refused for a month not exported and verified, or changed since, unless --force.',
  args: {
    flags: {
      month: monthFlag,
      force: { type: 'boolean', description: 'drop it even if it was not exported and verified' },
    },
    positionals: [],
  },
  async run({ flags }, { io, runtime }) {
    const { pool } = runtime.get();
    const dropped = await dropArchiveMonth(pool, {
      month: flags.month as string,
      force: flags.force === true,
      lockTimeoutMs: DROP_LOCK_TIMEOUT_MS,
      statementTimeoutMs: DROP_STATEMENT_TIMEOUT_MS,
    });
    if (flags.json) return printJson(io.stdout, { month: flags.month, dropped });
    io.stdout.write(`dropped ${flags.month as string}: ${dropped.join(', ')}\n`);
  },
};
