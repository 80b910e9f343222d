/**
 * The console's sessions and refusals (issue 23), over HTTP against a real `web` process: sign-in's
 * `next` stays on this console; the cookie is a session the server can end (sign-out, revocation,
 * expiry, idleness), not the token, and a copy of it dies with it; Secure when https is seen or
 * configured; CSRF and permission refusals are logged with the token id and the address, and
 * counted; errors are pages with the console's headers, never a 500; a dlq:update-only token counts
 * what it would bulk-resolve without reading it; the entry and audit pages name the token, and
 * whom a resolution was said to be for.
 */
import { beforeEach, describe, expect, it } from '@jest/globals';
import { databaseNow } from '../../src/db/queries/server.ts';
import { revokeToken } from '../../src/operations/tokens.ts';
import { useTestDatabase } from '../helpers/db.ts';
import {
  insertDlqEntry,
  insertTask,
  insertTemplate,
  minutesBefore,
  type Template,
} from '../helpers/factories.ts';
import { waitFor } from '../helpers/wait.ts';
import { consoleSignIn, startWeb, tokenWith, useWebProcess } from './web-process.ts';

const db = useTestDatabase();
const web = useWebProcess(db, { TASKER__web__refusal_limit_per_address: '1000' });
let t: Template;
let now: Date;

beforeEach(async () => {
  t = await insertTemplate(db.pool, { namespace: 'billing', name: 'invoice' });
  now = await databaseNow(db.pool);
});

const idOf = (secret: string) => /^tlk_([0-9a-f]{16})_/.exec(secret)![1]!;

async function get(path: string, cookie: string, w = web) {
  const res = await fetch(`${w.baseUrl}${path}`, { headers: { cookie }, redirect: 'manual' });
  return {
    status: res.status,
    location: res.headers.get('location'),
    headers: res.headers,
    body: await res.text(),
  };
}

/** A form POST; the form as fields, or as the encoded body itself (for field names an object cannot hold). */
async function post(path: string, cookie: string, form: Record<string, string> | string, w = web) {
  const res = await fetch(`${w.baseUrl}${path}`, {
    method: 'POST',
    redirect: 'manual',
    headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
    body: typeof form === 'string' ? form : new URLSearchParams(form).toString(),
  });
  return {
    status: res.status,
    location: res.headers.get('location'),
    headers: res.headers,
    body: await res.text(),
  };
}

/** The page's CSRF value (every form carries it). */
async function csrfOf(cookie: string, path = '/'): Promise<string> {
  const page = await get(path, cookie);
  const value = /name="_csrf" value="([^"]+)"/.exec(page.body)?.[1];
  if (!value) throw new Error(`no CSRF value on ${path} (${page.status})`);
  return value;
}

function logLines(message: string, w = web): Array<Record<string, unknown>> {
  return w.process
    .stderrSoFar()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.message === message);
}

const pendingEntry = async () =>
  insertDlqEntry(db.pool, {
    task: await insertTask(db.pool, { template: t, state: 'error', enteredAt: minutesBefore(now, 30) }),
    reason: 'staleness_timeout',
    at: minutesBefore(now, 20),
    namespace: 'billing',
    taskName: 'invoice',
  });

describe("sign-in's next", () => {
  it.each([
    ['/\\evil.example', 'a backslash'],
    ['/\t/evil.example', 'a tab (a browser drops it: //evil.example)'],
    ['/%5Cevil.example', 'a percent-encoded backslash'],
    ['/x\r\nSet-Cookie: a=b', 'CR/LF (was a 500)'],
    ['//evil.example', 'a second slash'],
    ['https://evil.example/', 'another origin'],
  ])('%j (%s) is refused: back to the console’s /', async (next) => {
    const token = await tokenWith(db.pool, 'alice', ['dlq:read']);
    const signedIn = await consoleSignIn(web.baseUrl, token, { next });
    expect({ status: signedIn.status, location: signedIn.location }).toEqual({ status: 303, location: '/' });
    // The form sign-in shows carries only a path of this console, too.
    const form = await fetch(`${web.baseUrl}/sign-in?next=${encodeURIComponent(next)}`);
    expect(form.status).toBe(200);
    expect(await form.text()).toContain('<input type="hidden" name="next" value="/">');
  });

  it('a path of this console is kept', async () => {
    const token = await tokenWith(db.pool, 'alice', ['dlq:read']);
    const next = '/audit?actor=a%20b&since=1h';
    expect((await consoleSignIn(web.baseUrl, token, { next })).location).toBe(next);
    expect(web.process.stderrSoFar()).not.toContain('request failed');
  });
});

describe('sessions', () => {
  it('the cookie holds a session, not the token; a copy of it is dead after sign-out, and its use is logged', async () => {
    const token = await tokenWith(db.pool, 'alice', ['dlq:read', 'dlq:update']);
    const { cookie, setCookie } = await consoleSignIn(web.baseUrl, token);
    expect(cookie).toMatch(/^tasker_session=tlc_[A-Za-z0-9_-]{43}$/);
    expect(setCookie.join('\n')).not.toContain(token);
    expect(setCookie.find((c) => c.startsWith('tasker_session='))).toMatch(/HttpOnly; SameSite=Strict/);
    const { rows } = await db.pool.query(
      'SELECT token_id, client_address, ended_at FROM tasker_console_sessions',
    );
    expect(rows).toEqual([{ token_id: idOf(token), client_address: '127.0.0.1', ended_at: null }]);
    expect(JSON.stringify(rows)).not.toContain(cookie.split('=')[1]);

    const copy = cookie; // what someone who read the cookie off the machine holds
    expect((await get('/', copy)).status).toBe(200);
    const signedOut = await post('/sign-out', cookie, { _csrf: await csrfOf(cookie) });
    expect({ status: signedOut.status, location: signedOut.location }).toEqual({
      status: 303,
      location: '/sign-in',
    });
    const { rows: ended } = await db.pool.query('SELECT ended_reason FROM tasker_console_sessions');
    expect(ended).toEqual([{ ended_reason: 'signed_out' }]);

    const page = await get('/', copy);
    expect({ status: page.status, location: page.location }).toEqual({
      status: 303,
      location: '/sign-in?next=%2F',
    });
    const entry = await pendingEntry();
    const form = await post(`/dlq/${entry}/resolve`, copy, {
      status: 'cancelled',
      notes: 'with a stolen cookie',
    });
    expect(form.status).toBe(401);
    expect((await db.pool.query(`SELECT resolution_status::text AS s FROM tasker_tasks_dlq`)).rows[0].s).toBe(
      'pending',
    );
    // The bearer API never took a session cookie's secret as a token.
    const asBearer = await web.request('GET', '/v1/dlq', { token: copy.split('=')[1]! });
    expect(asBearer.status).toBe(401);

    const refusals = logLines('request refused').filter((l) => l.reason === 'bad_session');
    expect(refusals).toEqual([
      expect.objectContaining({
        level: 'warn',
        status: 303,
        route: '/',
        token_id: idOf(token),
        detail: 'the session was signed out',
        client_address: '127.0.0.1',
      }),
      expect.objectContaining({ status: 401, route: '/dlq/:uuid/resolve', token_id: idOf(token) }),
    ]);
  });

  it('revoking the token ends its sessions at once (recorded); expiry and idleness end one, either side of the limit', async () => {
    const token = await tokenWith(db.pool, 'bob', ['dlq:read']);
    const a = (await consoleSignIn(web.baseUrl, token)).cookie;
    const b = (await consoleSignIn(web.baseUrl, token)).cookie;
    expect((await get('/', a)).status).toBe(200);
    const revoked = await revokeToken(db.pool, {
      name: 'bob',
      actor: { kind: 'cli', name: 'test' },
      now: new Date(),
    });
    expect(revoked.sessions_ended).toBe(2);
    for (const c of [a, b]) expect((await get('/', c)).status).toBe(303);
    const { rows } = await db.pool.query('SELECT DISTINCT ended_reason FROM tasker_console_sessions');
    expect(rows).toEqual([{ ended_reason: 'token_revoked' }]);

    // The defaults: 60 minutes idle, 480 minutes in all. A minute either side of each.
    const carol = await tokenWith(db.pool, 'carol', ['dlq:read']);
    const cookies = [];
    for (let i = 0; i < 4; i++) cookies.push((await consoleSignIn(web.baseUrl, carol)).cookie);
    const { rows: sessions } = await db.pool.query(
      `SELECT secret_sha256 FROM tasker_console_sessions WHERE token_id = $1 ORDER BY created_at`,
      [idOf(carol)],
    );
    const set = (i: number, sql: string) =>
      db.pool.query(`UPDATE tasker_console_sessions SET ${sql} WHERE secret_sha256 = $1`, [
        sessions[i].secret_sha256,
      ]);
    await set(0, `last_seen_at = now() - interval '59 minutes'`);
    await set(1, `last_seen_at = now() - interval '61 minutes'`);
    await set(2, `created_at = now() - interval '479 minutes', expires_at = now() + interval '1 minute'`);
    await set(3, `created_at = now() - interval '481 minutes', expires_at = now() - interval '1 minute'`);
    const statuses = [];
    for (const c of cookies) statuses.push((await get('/', c)).status);
    expect(statuses).toEqual([200, 303, 200, 303]);
    const details = logLines('request refused')
      .filter((l) => l.token_id === idOf(carol))
      .map((l) => l.detail);
    expect(details).toEqual([
      'the session was idle too long (web.session_idle_timeout_minutes)',
      'the session expired (web.session_max_age_minutes)',
    ]);
    // A request moves last_seen_at: the session that was idle 59 minutes is fresh again.
    const { rows: seen } = await db.pool.query(
      `SELECT now() - last_seen_at < interval '1 minute' AS fresh FROM tasker_console_sessions WHERE secret_sha256 = $1`,
      [sessions[0].secret_sha256],
    );
    expect(seen[0].fresh).toBe(true);
  });

  it('Secure over https as a trusted proxy says, or always when configured; not over plain http', async () => {
    const token = await tokenWith(db.pool, 'dora', ['dlq:read']);
    const secureOf = (setCookie: string[]) =>
      setCookie.find((c) => c.startsWith('tasker_session='))?.includes('; Secure') ?? null;
    expect(secureOf((await consoleSignIn(web.baseUrl, token)).setCookie)).toBe(false);
    // Without web.trust_proxy, a header claiming https is not believed.
    expect(
      secureOf(
        (await consoleSignIn(web.baseUrl, token, { headers: { 'x-forwarded-proto': 'https' } })).setCookie,
      ),
    ).toBe(false);
    const proxied = await startWeb(db.url, { TASKER__web__trust_proxy: 'true' });
    const forced = await startWeb(db.url, { TASKER__web__secure_cookies: '"always"' });
    try {
      expect(
        secureOf(
          (await consoleSignIn(proxied.baseUrl, token, { headers: { 'x-forwarded-proto': 'https' } }))
            .setCookie,
        ),
      ).toBe(true);
      expect(secureOf((await consoleSignIn(proxied.baseUrl, token)).setCookie)).toBe(false);
      expect(secureOf((await consoleSignIn(forced.baseUrl, token)).setCookie)).toBe(true);
    } finally {
      await proxied.stop();
      await forced.stop();
    }
  });
});

describe('refusals in the console', () => {
  it('a form without its CSRF value, and an action without the permission: 403, logged with the token id and address, counted', async () => {
    const reader = await tokenWith(db.pool, 'reader', ['dlq:read']);
    const { cookie } = await consoleSignIn(web.baseUrl, reader);
    const entry = await pendingEntry();
    const metric = async () => {
      const text = await (await fetch(`${web.baseUrl}/metrics`)).text();
      return Object.fromEntries(
        [...text.matchAll(/^tasker_http_requests_refused_total\{reason="(\w+)"\} (\d+)/gm)].map((m) => [
          m[1],
          Number(m[2]),
        ]),
      );
    };
    const before = await metric();
    expect((await post(`/dlq/${entry}/resolve`, cookie, { status: 'cancelled', notes: 'x' })).status).toBe(
      403,
    );
    const csrf = await csrfOf(cookie);
    const forbidden = await post(`/dlq/${entry}/resolve`, cookie, {
      _csrf: csrf,
      status: 'cancelled',
      notes: 'x',
    });
    expect(forbidden.status).toBe(403);
    expect(forbidden.headers.get('content-type')).toMatch(/^text\/html/);
    const lines = logLines('request refused').filter((l) => l.token_id === idOf(reader));
    expect(lines).toEqual([
      expect.objectContaining({ level: 'warn', reason: 'csrf', status: 403, client_address: '127.0.0.1' }),
      expect.objectContaining({
        reason: 'forbidden',
        status: 403,
        permission: 'dlq:update',
        client_address: '127.0.0.1',
      }),
    ]);
    const after = await metric();
    expect([after.csrf - before.csrf, after.forbidden - before.forbidden]).toEqual([1, 1]);
    // A wrong token at sign-in: logged with the id it names, counted as bad_token.
    const guess = `tlk_${'2'.repeat(16)}_${'C'.repeat(43)}`;
    expect((await consoleSignIn(web.baseUrl, guess)).status).toBe(401);
    expect(logLines('request refused').at(-1)).toMatchObject({
      reason: 'bad_token',
      token_id: '2'.repeat(16),
      route: '/sign-in',
    });
    expect(web.process.stderrSoFar()).not.toContain('C'.repeat(43));
  });
});

describe('errors are pages with the console’s headers, never a 500', () => {
  it('NUL in a filter, a path or a form is 400; a job named after an Object member queues nothing', async () => {
    const all = await tokenWith(db.pool, 'all', ['*']);
    const { cookie } = await consoleSignIn(web.baseUrl, all);
    const csrf = await csrfOf(cookie, '/jobs');
    const pages = [
      await get('/audit?actor=%00', cookie),
      await get('/?namespace=%00', cookie),
      await get('/dlq/%00', cookie),
      await post('/bulk/resolve', cookie, { _csrf: csrf, status: 'cancelled', notes: 'a\u0000' }),
      await post(`/dlq/${await pendingEntry()}/resolve`, cookie, {
        _csrf: csrf,
        status: 'cancelled',
        notes: '\u0000',
      }),
    ];
    for (const p of pages) {
      expect({ status: p.status, type: p.headers.get('content-type') }).toEqual({
        status: 400,
        type: 'text/html; charset=utf-8',
      });
      expect(p.headers.get('content-security-policy')).toContain("base-uri 'none'");
      expect(p.headers.get('x-content-type-options')).toBe('nosniff');
      expect(p.body).toMatch(/id="problem">\w+: expected text without NUL characters/);
      expect(p.body).toContain('<html lang="en">');
    }
    const queued = async () =>
      Number(
        (await db.pool.query(`SELECT count(*)::int AS n FROM pgboss.job WHERE name LIKE 'tasker.%'`)).rows[0]
          .n,
      );
    const jobsBefore = await queued();
    for (const job of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
      const r = await post(`/jobs/${job}/runs`, cookie, { _csrf: csrf });
      expect({ job, status: r.status, location: r.location }).toEqual({
        job,
        status: 303,
        location: '/jobs',
      });
    }
    const proto = await post(
      '/jobs/tasker.detect-stale-tasks/runs',
      cookie,
      `_csrf=${encodeURIComponent(csrf)}&__proto__=x&dry_run=true`,
    );
    expect(proto.status).toBe(303);
    expect(await queued()).toBe(jobsBefore);
    const missing = await fetch(`${web.baseUrl}/no-such-page`, { headers: { cookie, accept: 'text/html' } });
    expect({ status: missing.status, type: missing.headers.get('content-type') }).toEqual({
      status: 404,
      type: 'text/html; charset=utf-8',
    });
    expect(web.process.stderrSoFar()).not.toContain('request failed');
  });
});

describe('what a page shows of the record', () => {
  it('a dlq:update-only token previews a bulk resolution as a count, without the entries', async () => {
    for (let i = 0; i < 3; i++) await pendingEntry();
    const writer = await tokenWith(db.pool, 'writer', ['dlq:update']);
    const page = await get(
      '/bulk?reason=staleness_timeout&preview=1',
      (await consoleSignIn(web.baseUrl, writer)).cookie,
    );
    expect(page.status).toBe(200);
    expect(page.body).toContain('<strong id="bulk-count">3</strong>');
    expect(page.body).toContain('id="bulk-withheld"');
    expect(page.body).not.toContain('id="bulk-preview"');
    expect(page.body).toContain('Resolve these 3');
    const reader = await tokenWith(db.pool, 'both', ['dlq:read', 'dlq:update']);
    const full = await get(
      '/bulk?reason=staleness_timeout&preview=1',
      (await consoleSignIn(web.baseUrl, reader)).cookie,
    );
    expect((full.body.match(/<li><a href="\/dlq\//g) ?? []).length).toBe(3);
  });

  it('the entry page names the token that resolved it and, apart, whom it was said to be for', async () => {
    const entry = await pendingEntry();
    const ops = await tokenWith(db.pool, 'ops', ['dlq:read', 'dlq:update']);
    const r = await web.request('PATCH', `/v1/dlq/entry/${entry}`, {
      token: ops,
      body: { resolution_status: 'cancelled', resolution_notes: 'dup', resolved_by: 'the-cfo' },
    });
    expect(r.status).toBe(200);
    const page = await get(`/dlq/${entry}`, (await consoleSignIn(web.baseUrl, ops)).cookie);
    expect(page.body).toContain(
      `<dd id="resolved-by">ops <span class="muted" id="resolved-by-token">(token ${idOf(ops)})</span></dd>`,
    );
    expect(page.body).toContain('<dt>On behalf of</dt><dd id="resolved-on-behalf-of">the-cfo');
  });

  it('the audit page tells a reused token name apart by its id, and filters by it', async () => {
    const [a, b] = [await pendingEntry(), await pendingEntry()];
    const first = await tokenWith(db.pool, 'updater', ['dlq:update', 'audit:read']);
    await web.request('PATCH', `/v1/dlq/entry/${a}`, {
      token: first,
      body: { resolution_status: 'cancelled' },
    });
    await revokeToken(db.pool, { name: 'updater', actor: { kind: 'cli', name: 'test' }, now: new Date() });
    const second = await tokenWith(db.pool, 'updater', ['dlq:update', 'audit:read']);
    await web.request('PATCH', `/v1/dlq/entry/${b}`, {
      token: second,
      body: { resolution_status: 'cancelled' },
    });
    const { cookie } = await consoleSignIn(web.baseUrl, second);
    const page = await get('/audit?actor=updater', cookie);
    for (const id of [idOf(first), idOf(second)])
      expect(page.body).toContain(
        `(token, token <a href="/audit?token_id=${id}" class="token-id">${id}</a>)`,
      );
    const one = await get(`/audit?token_id=${idOf(first)}`, cookie);
    expect((one.body.match(/<tr data-action=/g) ?? []).length).toBe(1);
    expect(one.body).toContain(a);
    expect(one.body).not.toContain(`href="/dlq/${b}"`);
    const bad = await get('/audit?token_id=updater', cookie);
    expect(bad.status).toBe(400);
    expect(bad.body).toContain('token_id');
    await waitFor('nothing failed', async () => !web.process.stderrSoFar().includes('request failed'));
  });
});
