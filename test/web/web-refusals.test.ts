/**
 * Refusals are seen, and the answers carry their headers (issue 23), against real `web` processes:
 * every 401 and 403 is logged at warn with its reason, route, token id (when one was presented and
 * could be read) and client address, and counted in tasker_http_requests_refused_total on the web
 * process's /metrics; an address refused too often gets 429 until its window ends (behind a proxy
 * web.trust_proxy believes, by the client's address, not the proxy's); a 409 leaves an info line;
 * every answer has the security headers, a 401 WWW-Authenticate: Bearer, the API's JSON
 * Cache-Control: no-store; /readyz says ready or not and a reason code, the details only in the log.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { useTestDatabase } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';
import { installBoss, resetApiTables, startWeb, tokenWith, type WebProcess } from './web-process.ts';

const db = useTestDatabase();
let web: WebProcess;
let reader: string;

beforeAll(async () => {
  await installBoss(db.url);
  await resetApiTables(db.pool);
  reader = await tokenWith(db.pool, 'reader', ['dlq:read']);
  web = await startWeb(db.url, { TASKER__web__refusal_limit_per_address: '1000' });
}, 60_000);
afterAll(async () => {
  await web?.stop();
});

const idOf = (secret: string) => /^tlk_([0-9a-f]{16})_/.exec(secret)![1]!;

/** The web process's JSON log lines with this message, parsed. */
function logLines(w: WebProcess, message: string): Array<Record<string, unknown>> {
  return w.process
    .stderrSoFar()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.message === message);
}

async function refusedCounts(w: WebProcess): Promise<Record<string, number>> {
  const text = await (await fetch(`${w.baseUrl}/metrics`)).text();
  return Object.fromEntries(
    [...text.matchAll(/^tasker_http_requests_refused_total\{reason="(\w+)"\} (\d+)/gm)].map((m) => [
      m[1]!,
      Number(m[2]),
    ]),
  );
}

describe('every refusal is logged at warn and counted', () => {
  it('401 without a token, 401 with a bad one (its id, never its secret), 403 with the permission missing', async () => {
    const before = await refusedCounts(web);
    const unknown = `tlk_00000000000000ab_${'A'.repeat(43)}`;
    expect((await web.request('GET', '/v1/dlq')).status).toBe(401);
    expect((await web.request('GET', '/v1/dlq', { token: unknown })).status).toBe(401);
    expect((await web.request('GET', '/v1/dlq', { token: 'not-a-token' })).status).toBe(401);
    expect((await web.request('GET', '/v1/audit', { token: reader })).status).toBe(403);

    const lines = logLines(web, 'request refused');
    expect(lines.map((l) => l.level)).toEqual(['warn', 'warn', 'warn', 'warn']);
    expect(lines).toEqual([
      expect.objectContaining({
        reason: 'no_token',
        status: 401,
        route: '/v1/dlq',
        client_address: '127.0.0.1',
      }),
      expect.objectContaining({
        reason: 'bad_token',
        status: 401,
        route: '/v1/dlq',
        token_id: '00000000000000ab',
        client_address: '127.0.0.1',
      }),
      expect.objectContaining({ reason: 'bad_token', status: 401, client_address: '127.0.0.1' }),
      expect.objectContaining({
        reason: 'forbidden',
        status: 403,
        route: '/v1/audit',
        token_id: idOf(reader),
        permission: 'audit:read',
        client_address: '127.0.0.1',
      }),
    ]);
    expect(lines[2]).not.toHaveProperty('token_id'); // nothing readable was presented
    expect(web.process.stderrSoFar()).not.toContain('A'.repeat(43));
    expect(web.process.stderrSoFar()).not.toContain(reader);

    const after = await refusedCounts(web);
    expect({
      no_token: after.no_token! - before.no_token!,
      bad_token: after.bad_token! - before.bad_token!,
      forbidden: after.forbidden! - before.forbidden!,
    }).toEqual({ no_token: 1, bad_token: 2, forbidden: 1 });
    expect(Object.keys(after).sort()).toEqual(
      ['bad_session', 'bad_token', 'csrf', 'forbidden', 'no_token', 'rate_limited'].sort(),
    );
  });

  it('a 409 leaves an info line with the token and the address', async () => {
    const writer = await tokenWith(db.pool, 'writer', ['dlq:update']);
    const body = { filter: { namespace: 'nothing' }, resolution_status: 'cancelled', resolution_notes: 'x' };
    const r = await web.request('POST', '/v1/dlq/bulk-resolve', {
      token: writer,
      body: { ...body, dry_run: false, expected_fingerprint: 'f'.repeat(64) },
    });
    expect(r.status).toBe(409);
    // Written when the answer has gone (onResponse), so a moment after the client has it.
    await waitFor(
      'the conflict to be logged',
      async () => logLines(web, 'request refused: conflict').length > 0,
    );
    expect(logLines(web, 'request refused: conflict')).toEqual([
      expect.objectContaining({
        level: 'info',
        status: 409,
        route: '/v1/dlq/bulk-resolve',
        token: 'writer',
        token_id: idOf(writer),
        client_address: '127.0.0.1',
      }),
    ]);
  });
});

describe('headers', () => {
  it('every answer: the content security policy with base-uri none, nosniff, no framing; 401 says Bearer; API JSON is no-store', async () => {
    const answers = {
      refused: await fetch(`${web.baseUrl}/v1/dlq`),
      api: await fetch(`${web.baseUrl}/v1/dlq`, { headers: { authorization: `Bearer ${reader}` } }),
      signIn: await fetch(`${web.baseUrl}/sign-in`),
      missing: await fetch(`${web.baseUrl}/v1/nothing`),
    };
    for (const [name, res] of Object.entries(answers)) {
      const h = Object.fromEntries(res.headers);
      expect({ name, csp: h['content-security-policy'] }).toEqual({
        name,
        csp: "default-src 'self';style-src 'self' 'unsafe-inline';img-src 'self' data:;frame-ancestors 'none';form-action 'self';base-uri 'none'",
      });
      expect({ name, nosniff: h['x-content-type-options'], frame: h['x-frame-options'] }).toEqual({
        name,
        nosniff: 'nosniff',
        frame: 'DENY',
      });
      expect({ name, cache: h['cache-control'] }).toEqual({ name, cache: 'no-store' });
    }
    expect(answers.refused.headers.get('www-authenticate')).toBe('Bearer realm="tasker-lifecycle"');
    expect(answers.api.headers.get('content-type')).toMatch(/^application\/json/);
    const bad = await fetch(`${web.baseUrl}/v1/dlq`, {
      headers: { authorization: `Bearer tlk_${'0'.repeat(16)}_x` },
    });
    expect(bad.headers.get('www-authenticate')).toBe(
      'Bearer realm="tasker-lifecycle", error="invalid_token"',
    );
    // The console's assets may be cached for a while; nothing else is.
    expect((await fetch(`${web.baseUrl}/assets/console.css`)).headers.get('cache-control')).toBe(
      'max-age=300',
    );
  });
});

describe('/readyz', () => {
  it('says ready or not with a reason code; the database’s own words go to the log only', async () => {
    expect((await web.request('GET', '/readyz')).body).toEqual({ status: 'ready' });
    // A web process whose database then disappears.
    const admin = new pg.Client({ connectionString: process.env.TEST_ADMIN_URL });
    await admin.connect();
    const name = `tasker_readyz_${randomBytes(4).toString('hex')}`;
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${process.env.TEST_TEMPLATE_DB}`);
    const url = new URL(db.url);
    url.pathname = `/${name}`;
    await installBoss(url.toString());
    const doomed = await startWeb(url.toString());
    try {
      expect((await doomed.request('GET', '/readyz')).body).toEqual({ status: 'ready' });
      await admin.query(`DROP DATABASE ${name} WITH (FORCE)`);
      const r = await waitFor('readyz to say unavailable', async () => {
        const res = await doomed.request('GET', '/readyz');
        return res.status === 503 ? res : undefined;
      });
      expect(Object.keys(r.body).sort()).toEqual(['reason', 'status']);
      expect(r.body.status).toBe('unavailable');
      expect(['database_unavailable', 'database_error']).toContain(r.body.reason);
      expect(JSON.stringify(r.body)).not.toContain(name);
      expect(JSON.stringify(r.body)).not.toContain('5432');
      const logged = logLines(doomed, 'web: not ready');
      expect(logged[0]).toMatchObject({ level: 'warn', reason: r.body.reason });
      // The connection is cut first, then the database is gone: once it says so, asking again
      // logs nothing more (the same trouble is logged once).
      const gone = await waitFor('readyz to say the database is gone', async () => {
        const res = await doomed.request('GET', '/readyz');
        return res.body.reason === 'database_error' ? res : undefined;
      });
      expect(gone.body).toEqual({ status: 'unavailable', reason: 'database_error' });
      const seen = logLines(doomed, 'web: not ready');
      expect(String(seen.at(-1)!.detail)).toContain(`database "${name}" does not exist`);
      await doomed.request('GET', '/readyz');
      expect(logLines(doomed, 'web: not ready')).toHaveLength(seen.length);
    } finally {
      doomed.process.kill('SIGKILL');
      await doomed.process.done;
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    }
  });
});

describe('an address refused too often', () => {
  it('gets 429 with Retry-After until its window ends; health checks and other addresses still answer', async () => {
    // Behind a proxy it believes: the client's address is the one X-Forwarded-For gives.
    const limited = await startWeb(db.url, {
      TASKER__web__refusal_limit_per_address: '3',
      TASKER__web__refusal_window_seconds: '3',
      TASKER__web__trust_proxy: 'true',
    });
    try {
      const from = (address: string, token: string) =>
        fetch(`${limited.baseUrl}/v1/dlq`, {
          headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': address },
        });
      const guess = `tlk_${'1'.repeat(16)}_${'B'.repeat(43)}`;
      const statuses = [];
      for (let i = 0; i < 5; i++) statuses.push((await from('203.0.113.7', guess)).status);
      expect(statuses).toEqual([401, 401, 401, 401, 429]);
      // Now even the right token is refused from that address, with when to come back.
      const blocked = await from('203.0.113.7', reader);
      expect(blocked.status).toBe(429);
      const retryAfter = Number(blocked.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(3);
      expect(((await blocked.json()) as { error: { code: string } }).error.code).toBe('TOO_MANY_REFUSALS');
      // Another address, and the health check, are not.
      expect((await from('198.51.100.2', reader)).status).toBe(200);
      expect(
        (await fetch(`${limited.baseUrl}/healthz`, { headers: { 'x-forwarded-for': '203.0.113.7' } })).status,
      ).toBe(200);
      const refusals = logLines(limited, 'request refused');
      expect(refusals.filter((l) => l.client_address === '203.0.113.7').map((l) => l.reason)).toEqual([
        'bad_token',
        'bad_token',
        'bad_token',
        'bad_token',
      ]);
      expect(logLines(limited, 'client address refused until its window ends')).toEqual([
        expect.objectContaining({ level: 'warn', client_address: '203.0.113.7' }),
      ]);
      expect((await refusedCounts(limited)).rate_limited).toBe(2);
      // After the window, the address is answered again.
      await new Promise((resolve) => setTimeout(resolve, retryAfter * 1000 + 200));
      expect((await from('203.0.113.7', reader)).status).toBe(200);
    } finally {
      await limited.stop();
    }
  });
});
