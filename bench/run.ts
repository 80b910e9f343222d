/**
 * npm run bench [-- <name> ...]: runs bench/<name>.bench.ts (all of them when no name is given).
 * Each benchmark prints its figures and ratios. The database is DATABASE_URL's server if set (a
 * database is created and dropped per benchmark), else an embedded PostgreSQL started here.
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startBenchDatabase } from './db.ts';

const dir = dirname(fileURLToPath(import.meta.url));
const available = readdirSync(dir)
  .filter((f) => f.endsWith('.bench.ts'))
  .map((f) => f.slice(0, -'.bench.ts'.length))
  .sort();
const requested = process.argv.slice(2);
for (const name of requested) {
  if (!available.includes(name)) {
    console.error(`unknown benchmark ${JSON.stringify(name)}: expected one of ${available.join(', ')}`);
    process.exit(2);
  }
}

const server = await startBenchDatabase();
try {
  for (const name of requested.length > 0 ? requested : available) {
    const mod = (await import(join(dir, `${name}.bench.ts`))) as {
      default: (s: typeof server) => Promise<void>;
    };
    console.log(`\n=== ${name} ===`);
    await mod.default(server);
  }
} finally {
  await server.stop();
}
