/**
 * The record an operator can trust (issue 23), through a real `web` process: who resolved an entry
 * is the token that did (a caller's resolved_by is kept as "on behalf of"), a resolved entry is
 * final, a PATCH that changes nothing writes nothing, a token name given again after a revocation
 * is told apart by its token id, a dlq:update-only token sees counts rather than entries, and every
 * input that used to be a 500 (NUL, deep nesting, control characters in names) is a 400 naming the
 * field with nothing changed.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import { databaseNow } from '../../src/db/queries/server.ts';
import { revokeToken } from '../../src/operations/tokens.ts';
import { cli } from '../helpers/cli.ts';
import { useTestDatabase } from '../helpers/db.ts';
import {
  insertDlqEntry,
  insertTask,
  insertTemplate,
  minutesBefore,
  type Template,
} from '../helpers/factories.ts';
import { auditRows, tokenWith, useWebProcess } from './web-process.ts';

const db = useTestDatabase();
const web = useWebProcess(db);
let t: Template;
let now: Date;
let token: string;
let tokenId: string;

beforeEach(async () => {
  t = await insertTemplate(db.pool, { namespace: 'billing', name: 'invoice' });
  now = await databaseNow(db.pool);
  token = await tokenWith(db.pool, 'ops', ['dlq:read', 'dlq:update']);
  tokenId = idOf(token);
});

const idOf = (secret: string) => /^tlk_([0-9a-f]{16})_/.exec(secret)![1]!;

const pendingEntry = async () =>
  insertDlqEntry(db.pool, {
    task: await insertTask(db.pool, { template: t, state: 'error', enteredAt: minutesBefore(now, 30) }),
    reason: 'staleness_timeout',
    at: minutesBefore(now, 20),
  });

async function entryRow(uuid: string) {
  const { rows } = await db.pool.query(
    `SELECT resolution_status::text AS resolution_status, resolution_notes, resolved_by, resolved_by_token_id,
            resolved_on_behalf_of, resolution_timestamp, metadata, updated_at, xmin::text AS xmin
       FROM tasker_tasks_dlq WHERE dlq_entry_uuid = $1`,
    [uuid],
  );
  return rows[0];
}

const patch = (uuid: string, body: unknown, as = token) =>
  web.request('PATCH', `/v1/dlq/entry/${uuid}`, { token: as, body });

describe('who resolved an entry is the token that did', () => {
  it('a forged resolved_by is kept as "on behalf of"; the entry and the audit row name the token', async () => {
    const entry = await pendingEntry();
    const r = await patch(entry, {
      resolution_status: 'manually_resolved',
      resolution_notes: 'restarted the step',
      resolved_by: 'the-cfo',
    });
    expect(r.status).toBe(200);
    expect(r.body.entry).toMatchObject({
      resolved_by: 'ops',
      resolved_by_token_id: tokenId,
      resolved_on_behalf_of: 'the-cfo',
    });
    expect(await entryRow(entry)).toMatchObject({
      resolution_status: 'manually_resolved',
      resolved_by: 'ops',
      resolved_by_token_id: tokenId,
      resolved_on_behalf_of: 'the-cfo',
    });
    const [audit] = await auditRows(db.pool, 'dlq.resolve');
    expect(audit).toMatchObject({
      actor: 'ops',
      actor_kind: 'token',
      after: expect.objectContaining({ resolved_by: 'ops', resolved_on_behalf_of: 'the-cfo' }),
    });
    const { rows } = await db.pool.query('SELECT actor_token_id FROM tasker_audit_log WHERE audit_id = $1', [
      audit.audit_id,
    ]);
    expect(rows[0].actor_token_id).toBe(tokenId);
    // Upstream's GET shows the same fields.
    const read = await web.request('GET', `/v1/dlq?resolution_status=manually_resolved`, { token });
    expect(read.body[0]).toMatchObject({ resolved_by: 'ops', resolved_on_behalf_of: 'the-cfo' });
  });

  it('resolved_by without resolution_status is 400 naming it, and changes nothing', async () => {
    const entry = await pendingEntry();
    const before = await entryRow(entry);
    const r = await patch(entry, { resolution_notes: 'looking', resolved_by: 'someone' });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(/^resolved_by: .*needs resolution_status/);
    expect(await entryRow(entry)).toEqual(before);
    expect(await auditRows(db.pool, 'dlq.update')).toHaveLength(0);
  });

  it.each([
    ['its notes', { resolution_notes: 'rewritten' }],
    ['who resolved it', { resolved_by: 'mallory', resolution_status: 'cancelled' }],
    ['its metadata', { metadata: { ticket: 'OPS-9' } }],
    ['its status', { resolution_status: 'permanently_failed' }],
  ])(
    'a resolved entry is final: rewriting %s is 409 naming who and when, nothing changed, no audit row',
    async (_, body) => {
      const entry = await pendingEntry();
      expect(
        (await patch(entry, { resolution_status: 'cancelled', resolution_notes: 'duplicate' })).status,
      ).toBe(200);
      const before = await entryRow(entry);
      const audits = (await auditRows(db.pool)).length;
      const r = await patch(entry, body);
      expect(r.status).toBe(409);
      expect(r.body.error.message).toContain(
        `it was cancelled by ops (token ${tokenId}) at ${before.resolution_timestamp.toISOString()}; a resolved entry is final`,
      );
      expect(r.body.error.details).toMatchObject({ resolved_by: 'ops', resolved_by_token_id: tokenId });
      expect(await entryRow(entry)).toEqual(before);
      expect(await auditRows(db.pool)).toHaveLength(audits);
    },
  );

  it('a PATCH that changes nothing writes nothing: no audit row, the row untouched', async () => {
    const entry = await pendingEntry();
    expect((await patch(entry, { resolution_notes: 'looking', metadata: { b: 1, a: [1, 2] } })).status).toBe(
      200,
    );
    expect(await auditRows(db.pool, 'dlq.update')).toHaveLength(1);
    const before = await entryRow(entry);
    // The same notes, the same metadata with its keys in another order.
    const r = await patch(entry, { resolution_notes: 'looking', metadata: { a: [1, 2], b: 1 } });
    expect(r.status).toBe(200);
    expect(r.body.entry).toMatchObject({ resolution_notes: 'looking', resolution_status: 'pending' });
    expect(await entryRow(entry)).toEqual(before); // same xmin: no UPDATE at all
    expect(await auditRows(db.pool, 'dlq.update')).toHaveLength(1);
    // A real change still writes.
    expect((await patch(entry, { resolution_notes: 'found it' })).status).toBe(200);
    expect(await auditRows(db.pool, 'dlq.update')).toHaveLength(2);
  });
});

describe('a token name given again after a revocation', () => {
  it('is another token: the entries, the audit rows (API, filter, CLI) and token list tell them apart', async () => {
    const first = await tokenWith(db.pool, 'updater', ['dlq:update', 'audit:read']);
    const [a, b] = [await pendingEntry(), await pendingEntry()];
    expect((await patch(a, { resolution_status: 'cancelled' }, first)).status).toBe(200);
    await revokeToken(db.pool, { name: 'updater', actor: { kind: 'cli', name: 'test' }, now: new Date() });
    const second = await tokenWith(db.pool, 'updater', ['dlq:update', 'audit:read']);
    expect(idOf(second)).not.toBe(idOf(first));
    expect((await patch(b, { resolution_status: 'cancelled' }, second)).status).toBe(200);

    expect(await entryRow(a)).toMatchObject({ resolved_by: 'updater', resolved_by_token_id: idOf(first) });
    expect(await entryRow(b)).toMatchObject({ resolved_by: 'updater', resolved_by_token_id: idOf(second) });

    const byName = await web.request('GET', '/v1/audit?actor=updater', { token: second });
    expect(
      byName.body.map((r: { target_id: string; actor_token_id: string }) => [r.target_id, r.actor_token_id]),
    ).toEqual([
      [b, idOf(second)],
      [a, idOf(first)],
    ]);
    const byToken = await web.request('GET', `/v1/audit?actor_token_id=${idOf(first)}`, { token: second });
    expect(byToken.body.map((r: { target_id: string }) => r.target_id)).toEqual([a]);
    const bad = await web.request('GET', '/v1/audit?actor_token_id=updater', { token: second });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/^actor_token_id: expected a token id/);

    const env = { DATABASE_URL: db.url };
    const shown = await cli(['audit', '--actor', 'updater'], env);
    expect(shown.stdout).toContain(`updater (token, token ${idOf(first)})`);
    expect(shown.stdout).toContain(`updater (token, token ${idOf(second)})`);
    const one = await cli(['audit', '--token-id', idOf(second)], env);
    expect(one.stdout.trim().split('\n')).toHaveLength(2); // the header and b's resolution
    const tokens = await cli(['token', 'list'], env);
    expect(tokens.stdout).toContain(idOf(first));
    expect(tokens.stdout).toContain(idOf(second));
  });
});

describe('a dlq:update-only token resolves without reading', () => {
  it('the bulk preview and result are counts, the PATCH and POST answers hold no snapshot or metadata', async () => {
    const writer = await tokenWith(db.pool, 'writer', ['dlq:update']);
    const entries = [await pendingEntry(), await pendingEntry(), await pendingEntry()];
    const body = {
      filter: { reason: 'staleness_timeout' },
      resolution_status: 'cancelled',
      resolution_notes: 'drained',
      preview_limit: 1000,
    };
    const preview = await web.request('POST', '/v1/dlq/bulk-resolve', { token: writer, body });
    expect(preview.status).toBe(200);
    expect(preview.body).toMatchObject({ dry_run: true, matched: 3, entries: [], entries_withheld: true });
    // The same request from a token that may read lists them.
    const reader = await web.request('POST', '/v1/dlq/bulk-resolve', { token, body });
    expect(reader.body.entries).toHaveLength(3);
    expect(reader.body).not.toHaveProperty('entries_withheld');

    const one = await patch(entries[0]!, { resolution_notes: 'looking' }, writer);
    expect(one.status).toBe(200);
    expect(one.body.entry).toMatchObject({ dlq_entry_uuid: entries[0], resolution_notes: 'looking' });
    expect(one.body.entry).not.toHaveProperty('task_snapshot');
    expect(one.body.entry).not.toHaveProperty('metadata');
    const opened = await web.request('POST', '/v1/dlq/entries', {
      token: writer,
      body: {
        task_uuid: await insertTask(db.pool, { template: t, state: 'error', enteredAt: now }),
        notes: 'x',
      },
    });
    expect(opened.status).toBe(201);
    expect(opened.body).toMatchObject({ dlq_reason: 'manual_dlq', resolution_status: 'pending' });
    expect(opened.body).not.toHaveProperty('task_snapshot');

    const applied = await web.request('POST', '/v1/dlq/bulk-resolve', {
      token: writer,
      body: { ...body, dry_run: false, expected_fingerprint: preview.body.fingerprint },
    });
    expect(applied.body).toMatchObject({ resolved: 3, entries: [], entries_withheld: true });
  });
});

describe('bad input is 400 naming the field, never 500, and changes nothing', () => {
  /** {"metadata": {"a": {"a": … 1 …}}}, nested `levels` deep, as JSON text. */
  const deep = (levels: number) => ({ raw: `{"metadata":${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}}` });

  async function state() {
    const { rows } = await db.pool.query(
      `SELECT (SELECT count(*) FROM tasker_tasks_dlq)::int AS entries,
              (SELECT string_agg(xmin::text, ',' ORDER BY dlq_entry_uuid) FROM tasker_tasks_dlq) AS versions,
              (SELECT count(*) FROM tasker_audit_log)::int AS audit`,
    );
    return rows[0];
  }

  it('NUL, deep nesting and control characters in names: every field of every change and filter', async () => {
    const entry = await pendingEntry();
    const taskUuid = await insertTask(db.pool, { template: t, state: 'error', enteredAt: now });
    const all = await tokenWith(db.pool, 'all', ['*']);
    const bulk = (extra: Record<string, unknown>) => ({
      filter: {},
      resolution_status: 'cancelled',
      resolution_notes: 'x',
      dry_run: false,
      ...extra,
    });
    const cases: Array<[string, string, unknown, RegExp]> = [
      ['PATCH', `/v1/dlq/entry/${entry}`, { resolution_notes: 'a\u0000b' }, /^resolution_notes: .*NUL/],
      [
        'PATCH',
        `/v1/dlq/entry/${entry}`,
        { resolution_notes: 'a\u001b[2Jb' },
        /^resolution_notes: .*control/,
      ],
      [
        'PATCH',
        `/v1/dlq/entry/${entry}`,
        { resolution_status: 'cancelled', resolved_by: 'x\u0000' },
        /^resolved_by: .*NUL/,
      ],
      [
        'PATCH',
        `/v1/dlq/entry/${entry}`,
        { resolution_status: 'cancelled', resolved_by: 'alice\u001b[31m' },
        /^resolved_by: .*one line, without control characters/,
      ],
      ['PATCH', `/v1/dlq/entry/${entry}`, { metadata: { note: 'a\u0000' } }, /^metadata\.note: .*NUL/],
      ['PATCH', `/v1/dlq/entry/${entry}`, { metadata: { 'k\u0000': 1 } }, /^metadata: .*keys without NUL/],
      ['PATCH', `/v1/dlq/entry/${entry}`, deep(5000), /^metadata(\.a)+: nested more than 32/],
      ['PATCH', `/v1/dlq/entry/${entry}`, deep(40), /nested more than 32/],
      ['POST', '/v1/dlq/entries', { task_uuid: taskUuid, notes: '\u0000' }, /^notes: .*NUL/],
      ['POST', '/v1/dlq/bulk-resolve', bulk({ resolution_notes: 'n\u0000' }), /^resolution_notes: .*NUL/],
      [
        'POST',
        '/v1/dlq/bulk-resolve',
        bulk({ filter: { namespace: 'b\u0000' } }),
        /^filter\.namespace: .*NUL/,
      ],
      [
        'POST',
        '/v1/dlq/bulk-resolve',
        bulk({ filter: { original_state: 'error\u0007' } }),
        /^filter\.original_state: .*control/,
      ],
      ['GET', '/v1/audit?actor=a%00b', undefined, /^actor: .*NUL/],
      ['GET', '/v1/audit?target_id=%00', undefined, /^target_id: .*NUL/],
      ['GET', '/v1/audit?actor=a%1Bb', undefined, /^actor: .*control/],
      ['GET', `/v1/dlq/task/${'a'.repeat(8)}%00`, undefined, /^task_uuid: .*NUL/],
      [
        'POST',
        '/v1/jobs/tasker.archive-finished-tasks/runs',
        { options: { namespace: 'x\u0000', dry_run: true } },
        /^options\.namespace: .*NUL/,
      ],
    ];
    const before = await state();
    const problems = [];
    for (const [method, path, body, message] of cases) {
      const raw = (body as { raw?: string } | undefined)?.raw;
      const r = await web.request(
        method,
        path,
        raw === undefined ? { token: all, body } : { token: all, raw },
      );
      if (r.status !== 400 || !message.test(r.body.error?.message ?? ''))
        problems.push({ method, path, status: r.status, body: r.body });
    }
    expect(problems).toEqual([]);
    expect(await state()).toEqual(before);
    expect(web.process.stderrSoFar()).not.toContain('request failed');
  });
});
