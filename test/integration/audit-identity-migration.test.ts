/**
 * Migration 0180 gives the audit rows written before it the token that made them: the one token of
 * that name that was live (created, not yet revoked) when the row was written, so a name given
 * again after a revocation is told apart in old rows too. A row that matches no token, or a CLI
 * row, keeps NULL. The database is migrated by the previous release's files (before 0180: this
 * build's own views name tables of later migrations), given rows as the previous build wrote them,
 * then migrated the rest of the way by this build.
 */
import { readdirSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { migrate } from '../../src/install/sql.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';
import { previousReleaseMigrations } from '../helpers/previous-release.ts';

let db: TestDatabase;
let before0180: string;

beforeAll(async () => {
  db = await createTestDatabase({ template: false });
  before0180 = previousReleaseMigrations();
  if (readdirSync(before0180).some((file) => /^0180_/.test(file)))
    throw new Error('the previous release already has 0180: this test needs one from before it');
});
afterAll(async () => {
  rmSync(before0180, { recursive: true, force: true });
  await db.drop();
});

it('0180 gives earlier audit rows the token live under their name at the time, and NULL where none was', async () => {
  await migrate(db.pool, before0180);
  const token = (id: string, name: string, created: string, revoked: string | null) =>
    db.pool.query(
      `INSERT INTO tasker_api_tokens (token_id, name, secret_sha256, permissions, created_at, created_by, revoked_at, revoked_by)
       VALUES ($1, $2, sha256(convert_to($1::text, 'UTF8')), ARRAY['*'], $3, 'test', $4, CASE WHEN $4::timestamptz IS NULL THEN NULL ELSE 'test' END)`,
      [id, name, created, revoked],
    );
  // `updater` twice: the first revoked at noon, the second created after; `ops` once.
  await token('aaaaaaaaaaaaaaaa', 'updater', '2026-06-01T09:00:00Z', '2026-06-01T12:00:00Z');
  await token('bbbbbbbbbbbbbbbb', 'updater', '2026-06-01T13:00:00Z', null);
  await token('cccccccccccccccc', 'ops', '2026-06-01T08:00:00Z', null);
  const audit = (at: string, actor: string, kind: string) =>
    db.pool.query(
      `INSERT INTO tasker_audit_log (at, actor, actor_kind, action, target_kind, target_id)
       VALUES ($1::timestamptz, $2, $3, 'dlq.update', 'dlq_entry', $1::text) RETURNING audit_id`,
      [at, actor, kind],
    );
  const rows = {
    firstUpdater: await audit('2026-06-01T10:00:00Z', 'updater', 'token'),
    betweenTheTwo: await audit('2026-06-01T12:30:00Z', 'updater', 'token'),
    secondUpdater: await audit('2026-06-01T14:00:00Z', 'updater', 'console'),
    ops: await audit('2026-06-01T15:00:00Z', 'ops', 'token'),
    cliNamedOps: await audit('2026-06-01T15:00:00Z', 'ops', 'cli'),
    beforeOps: await audit('2026-06-01T07:00:00Z', 'ops', 'token'),
  };

  const result = await migrate(db.pool);
  expect(result.applied.some((file) => file.startsWith('0180_'))).toBe(true);
  const { rows: after } = await db.pool.query<{ audit_id: string; actor_token_id: string | null }>(
    'SELECT audit_id::text, actor_token_id FROM tasker_audit_log',
  );
  const tokenOf = Object.fromEntries(after.map((r) => [r.audit_id, r.actor_token_id]));
  expect(
    Object.fromEntries(Object.entries(rows).map(([k, r]) => [k, tokenOf[String(r.rows[0].audit_id)]])),
  ).toEqual({
    firstUpdater: 'aaaaaaaaaaaaaaaa',
    betweenTheTwo: null,
    secondUpdater: 'bbbbbbbbbbbbbbbb',
    ops: 'cccccccccccccccc',
    cliNamedOps: null,
    beforeOps: null,
  });
});
