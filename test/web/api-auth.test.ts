/**
 * Tokens and permissions against a real `web` process: every /v1 route answers 401 without a valid
 * token (missing, malformed, unknown, wrong secret, expired, revoked) and 403 without its
 * permission; `*` grants all; only /healthz, /readyz and /openapi.json are open. The `token` CLI
 * (create --json, list, revoke) and what it stores (a hash, never the secret).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { PERMISSIONS, type Permission } from '../../src/operations/tokens.ts';
import { cli } from '../helpers/cli.ts';
import { useTestDatabase } from '../helpers/db.ts';
import {
  auditRows,
  installBoss,
  resetApiTables,
  startWeb,
  tokenWith,
  type WebProcess,
} from './web-process.ts';

const db = useTestDatabase();
let web: WebProcess;
const tokens = new Map<Permission, string>();

const UUID = '0199c2a4-5e1f-7b3a-9d2e-4f6a8b0c1d2e';

/** Every /v1 route with the permission it needs and a request that passes validation. */
const ROUTES: Array<{ method: string; path: string; permission: Permission; body?: unknown }> = [
  { method: 'GET', path: '/v1/dlq', permission: 'dlq:read' },
  { method: 'GET', path: `/v1/dlq/task/${UUID}`, permission: 'dlq:read' },
  { method: 'GET', path: '/v1/dlq/investigation-queue', permission: 'dlq:read' },
  { method: 'GET', path: '/v1/dlq/staleness', permission: 'dlq:read' },
  { method: 'GET', path: '/v1/dlq/stats', permission: 'dlq:stats' },
  {
    method: 'PATCH',
    path: `/v1/dlq/entry/${UUID}`,
    permission: 'dlq:update',
    body: { resolution_notes: 'x' },
  },
  {
    method: 'POST',
    path: '/v1/dlq/entries',
    permission: 'dlq:update',
    body: { task_uuid: UUID, notes: 'x' },
  },
  {
    method: 'POST',
    path: '/v1/dlq/bulk-resolve',
    permission: 'dlq:update',
    body: { filter: {}, resolution_status: 'cancelled', resolution_notes: 'x' },
  },
  { method: 'GET', path: '/v1/jobs', permission: 'jobs:read' },
  { method: 'GET', path: `/v1/jobs/tasker.detect-stale-tasks/runs/${UUID}`, permission: 'jobs:read' },
  // Options that fail the job's schema: the request is refused (400) after the permission check.
  {
    method: 'POST',
    path: '/v1/jobs/tasker.detect-stale-tasks/runs',
    permission: 'jobs:run',
    body: { options: { batch_size: 0 } },
  },
  {
    method: 'POST',
    path: `/v1/jobs/tasker.archive-finished-tasks/dead-letters/${UUID}/retry`,
    permission: 'jobs:run',
  },
  { method: 'GET', path: `/v1/archive/tasks/${UUID}`, permission: 'archive:read' },
  { method: 'POST', path: `/v1/archive/tasks/${UUID}/restore`, permission: 'archive:restore' },
  { method: 'GET', path: '/v1/audit', permission: 'audit:read' },
];

beforeAll(async () => {
  await installBoss(db.url);
  await resetApiTables(db.pool);
  for (const p of PERMISSIONS)
    tokens.set(p, await tokenWith(db.pool, `only-${p.replace(/[:*]/g, '_')}`, [p]));
  // Debug level: every request is logged, so the log can be checked for secrets. The matrix below
  // is hundreds of refusals from one address: more than the per-address limit would let through.
  web = await startWeb(db.url, {
    TASKER__logging__level: '"debug"',
    TASKER__web__refusal_limit_per_address: '100000',
  });
}, 60_000);
afterAll(async () => {
  await web?.stop();
});

describe('401: no valid token', () => {
  const someToken = () => tokens.get('*')!;
  const cases: Array<[string, () => Promise<string | null>]> = [
    ['missing', async () => null],
    ['malformed', async () => 'not-a-token'],
    ['unknown id', async () => `tlk_0000000000000000_${'A'.repeat(43)}`],
    [
      'known id, wrong secret',
      async () => `${someToken().slice(0, -1)}${someToken().endsWith('A') ? 'B' : 'A'}`,
    ],
    [
      'expired',
      async () =>
        tokenWith(db.pool, 'expired', ['*'], {
          now: new Date(Date.now() - 2 * 86_400_000),
          expiresInDays: 1,
        }),
    ],
    [
      'revoked',
      async () => {
        const secret = await tokenWith(db.pool, 'revoked', ['*']);
        expect(
          (await cli(['token', 'revoke', 'revoked', '--by', 'alice'], { DATABASE_URL: db.url })).code,
        ).toBe(0);
        return secret;
      },
    ],
  ];
  it.each(cases)('%s token: 401 on every /v1 route', async (_, make) => {
    const token = await make();
    for (const r of ROUTES) {
      const res = await web.request(r.method, r.path, { token, body: r.body });
      expect({ route: `${r.method} ${r.path}`, status: res.status, code: res.body.error?.code }).toEqual({
        route: `${r.method} ${r.path}`,
        status: 401,
        code: 'UNAUTHORIZED',
      });
    }
  });

  it('a header that is not Bearer is 401', async () => {
    const res = await fetch(`${web.baseUrl}/v1/dlq`, {
      headers: { authorization: `Basic ${tokens.get('*')}` },
    });
    expect(res.status).toBe(401);
  });
});

describe('403: a valid token without the permission', () => {
  it.each(ROUTES.map((r) => [`${r.method} ${r.path}`, r] as const))('%s', async (_, r) => {
    for (const p of PERMISSIONS) {
      const res = await web.request(r.method, r.path, { token: tokens.get(p)!, body: r.body });
      const allowed = p === r.permission || p === '*';
      if (allowed) {
        expect({ p, refused: [401, 403].includes(res.status) }).toEqual({ p, refused: false });
      } else {
        expect({ p, status: res.status, code: res.body.error?.code }).toEqual({
          p,
          status: 403,
          code: 'FORBIDDEN',
        });
        expect(res.body.error.message).toContain(r.permission);
      }
    }
  });
});

describe('open endpoints', () => {
  it('/healthz, /readyz and /openapi.json need no token', async () => {
    expect((await web.request('GET', '/healthz')).body).toEqual({ status: 'ok' });
    expect((await web.request('GET', '/readyz')).body).toEqual({ status: 'ready' });
    const doc = await web.request('GET', '/openapi.json');
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toBe('3.1.0');
    // Every route is documented, with the enums and bounds of the CLI's schemas.
    for (const r of ROUTES) {
      const path = r.path
        .replace(UUID, r.path.includes('/dlq/task/') || r.path.includes('/archive/') ? '{task_uuid}' : '{id}')
        .replace('/dlq/entry/{id}', '/dlq/entry/{dlq_entry_uuid}')
        .replace(/\/jobs\/[a-z.-]+\//, '/jobs/{job}/');
      expect(doc.body.paths[path]?.[r.method.toLowerCase()]).toBeDefined();
    }
    const status = doc.body.paths['/v1/dlq'].get.parameters.find(
      (p: { name: string }) => p.name === 'resolution_status',
    );
    expect(status.schema.enum).toEqual(['pending', 'manually_resolved', 'permanently_failed', 'cancelled']);
  });
});

describe('token CLI', () => {
  it('create --json prints the secret once; only its hash is stored; list shows no secret; revoke', async () => {
    const env = { DATABASE_URL: db.url };
    const created = await cli(
      [
        'token',
        'create',
        '--name',
        'grafana',
        '--permissions',
        'dlq:read,dlq:stats',
        '--expires-in-days',
        '30',
        '--json',
      ],
      env,
    );
    expect(created.code).toBe(0);
    const body = created.json();
    expect(Object.keys(body).sort()).toEqual(['expires_at', 'name', 'permissions', 'token']);
    expect(body).toMatchObject({ name: 'grafana', permissions: ['dlq:read', 'dlq:stats'] });
    const days = (new Date(body.expires_at).getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThan(30.1);
    const { rows } = await db.pool.query(
      `SELECT t.*, encode(secret_sha256, 'hex') AS hex FROM tasker_api_tokens t WHERE name = 'grafana'`,
    );
    // The secret is base64url, which may itself contain '_': take everything after the id.
    const secretPart = /^tlk_[0-9a-f]{16}_(.{43})$/.exec(body.token)?.[1];
    expect(secretPart).toHaveLength(43);
    expect(JSON.stringify(rows)).not.toContain(secretPart);
    const works = await web.request('GET', '/v1/dlq/stats', { token: body.token });
    expect(works.status).toBe(200);

    const list = await cli(['token', 'list'], env);
    expect(list.stdout).toContain('grafana');
    expect(list.stdout).not.toContain(body.token);

    const dup = await cli(['token', 'create', '--name', 'grafana', '--permissions', 'dlq:read'], env);
    expect(dup.code).toBe(2);
    expect(dup.stderr).toContain('already exists');

    expect((await cli(['token', 'revoke', 'grafana'], env)).code).toBe(0);
    expect((await web.request('GET', '/v1/dlq/stats', { token: body.token })).status).toBe(401);
    expect((await cli(['token', 'revoke', 'grafana'], env)).code).toBe(2);

    const audit = (await auditRows(db.pool)).filter((a) => a.target_id === 'grafana');
    expect(audit.map((a) => a.action)).toEqual(['token.create', 'token.revoke']);
    expect(JSON.stringify(audit)).not.toContain(body.token);
  });

  it('refuses an unknown permission and a bad name, naming them', async () => {
    const env = { DATABASE_URL: db.url };
    const bad = await cli(['token', 'create', '--name', 'x', '--permissions', 'dlq:read,dlq:write'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--permissions "dlq:read,dlq:write"');
    expect(bad.stderr).toContain('audit:read');
    const name = await cli(['token', 'create', '--name', 'has space', '--permissions', 'dlq:read'], env);
    expect(name.code).toBe(2);
    expect(name.stderr).toContain('--name "has space"');
  });

  it('the web log (debug level: every request) never contains a secret', async () => {
    expect(web.process.stderrSoFar()).toContain('"route":"/v1/dlq"');
    expect(web.process.stderrSoFar()).not.toContain('tlk_');
  });
});
