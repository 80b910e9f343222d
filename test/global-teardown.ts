import pg from 'pg';
import type { EmbeddedServer } from '../src/db/embedded.ts';

export default async function globalTeardown(): Promise<void> {
  const adminUrl = process.env.TEST_ADMIN_URL;
  const template = process.env.TEST_TEMPLATE_DB;
  if (adminUrl && template) {
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${template} WITH (FORCE)`).finally(() => admin.end());
  }
  await (globalThis as { __embeddedPostgres?: EmbeddedServer }).__embeddedPostgres?.stop();
}
