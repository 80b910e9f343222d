/**
 * The CLI's groups (issue 27) on a real database: `dlq groups` (most pending first, filters,
 * --json, the entries in no group yet), `dlq group <fingerprint>` (what its entries share, its
 * entries), and `dlq resolve --group` (a preview unless --yes; --yes resolves exactly the group's
 * pending entries, one audit row; --expected-fingerprint refuses a set that changed), with exit 2
 * for bad input; `status` names the largest groups.
 */
import { beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { groupCountsDrift } from '../../src/db/queries/dlq-groups.ts';
import { databaseNow } from '../../src/db/queries/server.ts';
import { cli } from '../helpers/cli.ts';
import { resetTables, useTestDatabase } from '../helpers/db.ts';
import {
  hoursBefore,
  insertDlqEntry,
  insertTask,
  insertTemplate,
  NOW,
  type Template,
} from '../helpers/factories.ts';
import { enrichAll, failingEntry, fingerprintOf } from '../helpers/group-factories.ts';
import { installFor } from '../helpers/workers.ts';

const db = useTestDatabase();
let shop: Template;
let env: Record<string, string>;

beforeEach(async () => {
  await resetTables(db.pool);
  await db.pool.query('TRUNCATE tasker_audit_log');
  shop = await insertTemplate(db.pool, { namespace: 'shop', name: 'order' });
  env = { DATABASE_URL: db.url, USER: 'oncall' };
});

/** n entries of one cause, opened minutes before the database's now (the CLI's clock). */
async function storm(n: number, step = 'charge', reason = 'max_retries_exceeded') {
  const now = await databaseNow(db.pool);
  const entries: string[] = [];
  for (let i = 0; i < n; i++) {
    const { entry } = await failingEntry(db.pool, {
      template: shop,
      step,
      reason,
      error: `gateway timeout after ${1000 + i}ms on order ${i}`,
      minutesAgo: 10 + i,
      at: now,
    });
    entries.push(entry);
  }
  await enrichAll(db.pool, entries, now);
  return { entries, fingerprint: (await fingerprintOf(db.pool, entries[0]!))! };
}

describe('dlq groups', () => {
  it('lists groups most pending first with the shared diagnosis, filters them, and counts entries in no group', async () => {
    const big = await storm(3);
    const small = await storm(1, 'capture', 'staleness_timeout');
    await insertDlqEntry(db.pool, {
      task: await insertTask(db.pool, { template: shop, state: 'error', enteredAt: hoursBefore(NOW, 1) }),
      reason: 'staleness_timeout',
      at: hoursBefore(await databaseNow(db.pool), 1),
    });
    const r = await cli(['dlq', 'groups'], env);
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(
      /^pending\s+resolved\s+last_24h\s+reason\s+state\s+template\s+fingerprint\s+diagnosis$/,
    );
    expect(lines[1]).toContain(big.fingerprint);
    expect(lines[1]).toContain('blocked at charge (gateway timeout after <duration> on order <n>)');
    expect(lines[2]).toContain(small.fingerprint);
    expect(r.stdout).toContain('2 groups, 4 pending entries');
    expect(r.stdout).toContain('1 pending entry is in no group yet (not enriched yet)');
    const json = (await cli(['dlq', 'groups', '--reason', 'staleness_timeout', '--json'], env)).json();
    expect(json.groups.map((g: { fingerprint: string }) => g.fingerprint)).toEqual([small.fingerprint]);
    expect(json).toMatchObject({ total: 1, total_pending: 1, ungrouped_pending: { count: 1, more: false } });
    const bad = await cli(['dlq', 'groups', '--min-age-minutes', 'soon'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--min-age-minutes "soon": expected a whole number from 0 to 525600');
  });
});

describe('status', () => {
  beforeAll(async () => {
    await installFor(db.url); // status reads pg-boss's queues too
  });

  it('says how many groups the pending entries are in and names the three largest, most pending first', async () => {
    const groups = [
      await storm(4),
      await storm(3, 'capture'),
      await storm(2, 'ship'),
      await storm(1, 'bill'),
    ];
    const text = await cli(['status'], env);
    expect(text.stderr).toBe('');
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^investigations: 10 pending, oldest \S+.*, in 4 groups \(dlq groups\)$/m);
    const named = text.stdout.split('\n').filter((l) => l.includes('(dlq group '));
    expect(named.map((l) => /^ {2}(\d+) pending .*\(dlq group ([0-9a-f]{32})\)$/.exec(l)?.slice(1))).toEqual(
      groups.slice(0, 3).map((g, i) => [String(4 - i), g.fingerprint]),
    );
    expect(named[0]).toContain(
      'shop/order 0.1.0  blocked at charge (gateway timeout after <duration> on order <n>)',
    );
    const json = (await cli(['status', '--json'], env)).json();
    expect(json.investigations).toMatchObject({ pending: 10, groups: 4 });
    expect(json.investigations.largest_groups.map((g: { pending: number }) => g.pending)).toEqual([4, 3, 2]);
  });
});

describe('dlq group', () => {
  it('shows what its entries share and its entries; an unknown or malformed fingerprint exits 2', async () => {
    const { entries, fingerprint } = await storm(2);
    const r = await cli(['dlq', 'group', fingerprint], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^fingerprint:\s+[0-9a-f]{32}$/m);
    expect(r.stdout).toMatch(/^template:\s+shop\/order 0\.1\.0$/m);
    expect(r.stdout).toMatch(/^pending:\s+2$/m);
    expect(r.stdout).toContain('blocking:\n  charge: gateway timeout after <duration> on order <n>');
    expect(r.stdout).toContain('2 pending entries, longest waiting first:');
    for (const e of entries) expect(r.stdout).toContain(e);
    expect(r.stdout).toContain(`tasker-lifecycle dlq resolve --group ${fingerprint} --status S --notes TEXT`);
    // Each entry names its group.
    expect((await cli(['dlq', 'show', entries[0]!], env)).stdout).toContain(
      `group: ${fingerprint} blocked at charge (gateway timeout after <duration> on order <n>) (2 pending, 0 resolved; \`dlq group ${fingerprint}\`)`,
    );
    const unknown = await cli(['dlq', 'group', 'f'.repeat(32)], env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain(`no group of investigations has fingerprint ${'f'.repeat(32)}`);
    const malformed = await cli(['dlq', 'group', 'xyz'], env);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain(`<fingerprint> "xyz": expected a group's fingerprint: 32 hex digits`);
  });
});

describe('dlq resolve --group', () => {
  it('previews unless --yes; --yes resolves exactly its pending entries in one audit row; a changed set is refused', async () => {
    const target = await storm(4);
    const other = await storm(2, 'capture');
    const args = [
      'dlq',
      'resolve',
      '--group',
      target.fingerprint,
      '--status',
      'cancelled',
      '--notes',
      'gateway down',
    ];
    const preview = await cli(args, env);
    expect(preview.code).toBe(0);
    expect(preview.stdout).toContain(
      `would resolve 4 pending entries of group ${target.fingerprint} as cancelled`,
    );
    expect(preview.stdout).toContain('nothing was changed');
    const set = /^set: ([0-9a-f]{64})$/m.exec(preview.stdout)![1]!;
    const { rows: pending } = await db.pool.query(
      `SELECT count(*)::integer AS n FROM tasker_tasks_dlq WHERE resolution_status = 'pending'`,
    );
    expect(pending[0].n).toBe(6);

    // One more entry of the cause: the previewed set no longer matches, nothing is resolved.
    await storm(1);
    const refused = await cli([...args, '--yes', '--expected-fingerprint', set], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('5 match now, not the entries previewed; nothing was resolved');

    const done = await cli([...args, '--yes', '--json'], env);
    expect(done.code).toBe(0);
    expect(done.json()).toMatchObject({ group: target.fingerprint, dry_run: false, matched: 5, resolved: 5 });
    const { rows: audit } = await db.pool.query(
      `SELECT actor, actor_kind, details FROM tasker_audit_log WHERE action = 'dlq.bulk_resolve'`,
    );
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({
      actor: 'oncall',
      actor_kind: 'cli',
      details: { group: target.fingerprint, resolved: 5 },
    });
    for (const e of target.entries) expect(audit[0].details.dlq_entry_uuids).toContain(e);
    const { rows: left } = await db.pool.query(
      `SELECT failure_fingerprint AS fp FROM tasker_tasks_dlq WHERE resolution_status = 'pending'`,
    );
    expect(left.map((r) => r.fp)).toEqual([other.fingerprint, other.fingerprint]);
    expect(await groupCountsDrift(db.pool)).toEqual([]);
  });

  it('bad input exits 2: an entry and a group at once, neither, --yes without a group', async () => {
    const { entries, fingerprint } = await storm(1);
    const both = await cli(
      ['dlq', 'resolve', entries[0]!, '--group', fingerprint, '--status', 'cancelled', '--notes', 'x'],
      env,
    );
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('give either <entry_uuid> or --group FINGERPRINT, not both');
    const neither = await cli(['dlq', 'resolve', '--status', 'cancelled', '--notes', 'x'], env);
    expect(neither.code).toBe(2);
    expect(neither.stderr).toContain('missing <entry_uuid> (or --group FINGERPRINT)');
    const yes = await cli(
      ['dlq', 'resolve', entries[0]!, '--yes', '--status', 'cancelled', '--notes', 'x'],
      env,
    );
    expect(yes.code).toBe(2);
    expect(yes.stderr).toContain('--yes and --expected-fingerprint go with --group FINGERPRINT');
  });
});
