import { migrate } from '../../db/migrate.ts';
import type { Command } from '../command.ts';
import { printJson } from '../output.ts';

export const migrateCommand: Command = {
  name: 'migrate',
  summary: "Apply this system's database migrations (safe to run from several processes at once).",
  args: { flags: {} },
  async run({ flags }, { io, runtime }) {
    const rt = runtime.get();
    const result = await migrate(rt.pool);
    if (flags.json) return printJson(io.stdout, { ...result, database: rt.target });
    if (result.applied.length === 0) {
      io.stdout.write(`database ${rt.target} is up to date (${result.alreadyApplied} migrations)\n`);
    } else {
      for (const file of result.applied) io.stdout.write(`applied ${file}\n`);
      io.stdout.write(
        `database ${rt.target} is up to date (${result.alreadyApplied + result.applied.length} migrations)\n`,
      );
    }
  },
};
