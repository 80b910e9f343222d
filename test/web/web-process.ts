import { afterAll, beforeAll, beforeEach } from '@jest/globals';
import type pg from 'pg';
import { createToken, type Permission } from '../../src/operations/tokens.ts';
import { type CliProcess, startCli } from '../helpers/cli-process.ts';
import { resetTables, type TestDatabase } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';
import { installFor } from '../helpers/workers.ts';

/**
 * A real `web` process on a free loopback port (web.port 0, read back from its start log line),
 * and a small client for it. Tests stop it with stop(), which waits for the process to exit.
 */
export interface WebProcess {
  process: CliProcess;
  baseUrl: string;
  /** raw: a JSON body as text, sent as it is (for bodies JSON.stringify cannot make, such as 5,000 levels deep). */
  request(
    method: string,
    path: string,
    o?: { token?: string | null; body?: unknown; raw?: string },
  ): Promise<ApiResponse>;
  stop(): Promise<void>;
}

export interface ApiResponse {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests assert on the shape
  body: any;
  headers: Headers;
}

export async function installBoss(url: string): Promise<void> {
  await installFor(url);
}

export async function startWeb(databaseUrl: string, env: Record<string, string> = {}): Promise<WebProcess> {
  const child = startCli(['web'], {
    DATABASE_URL: databaseUrl,
    TASKER__web__host: '"127.0.0.1"',
    TASKER__web__port: '0',
    TASKER__logging__format: '"json"',
    TASKER__logging__level: '"info"',
    ...env,
  });
  const exited = child.done.then((r) => {
    throw new Error(`web exited early (code ${r.code}): ${r.stderr}`);
  });
  exited.catch(() => undefined);
  const port = await Promise.race([
    waitFor('web to log its port', async () => {
      const line = child
        .stderrSoFar()
        .split('\n')
        .find((l) => l.includes('web: listening on'));
      return line ? (JSON.parse(line).port as number) : undefined;
    }),
    exited,
  ]);
  const baseUrl = `http://127.0.0.1:${port}`;
  return {
    process: child,
    baseUrl,
    async request(method, path, o = {}) {
      const headers: Record<string, string> = {};
      if (o.token) headers.authorization = `Bearer ${o.token}`;
      if (o.body !== undefined || o.raw !== undefined) headers['content-type'] = 'application/json';
      const res = await fetch(`${baseUrl}${path}`, {
        method,
        headers,
        body: o.raw ?? (o.body === undefined ? undefined : JSON.stringify(o.body)),
      });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: left as text
      }
      return { status: res.status, body, headers: res.headers };
    },
    async stop() {
      child.kill('SIGTERM');
      const r = await child.done;
      if (r.code !== 0) throw new Error(`web exited with ${r.code}: ${r.stderr}`);
    },
  };
}

/**
 * A real `web` process for the test file that calls this at its top level, beside useTestDatabase:
 * pg-boss installed and the process started before the file's first test, stopped after its last;
 * before each test (ahead of the file's own beforeEach) the tables it serves are emptied
 * (resetTables, resetApiTables). The object answers for the process once it has started.
 */
export function useWebProcess(db: TestDatabase, env: Record<string, string> = {}): WebProcess {
  let current: WebProcess | undefined;
  beforeAll(async () => {
    await installBoss(db.url);
    current = await startWeb(db.url, env);
  }, 60_000);
  afterAll(async () => {
    await current?.stop();
  });
  beforeEach(async () => {
    await resetTables(db.pool);
    await resetApiTables(db.pool);
  });
  const get = () => {
    if (!current) throw new Error('the web process runs only inside tests and hooks');
    return current;
  };
  return {
    get process() {
      return get().process;
    },
    get baseUrl() {
      return get().baseUrl;
    },
    request: (method, path, o) => get().request(method, path, o),
    stop: () => get().stop(),
  };
}

/** A token with these permissions, created the way `token create` does (audited, by "test"). */
export async function tokenWith(
  pool: pg.Pool,
  name: string,
  permissions: Permission[],
  o: { now?: Date; expiresInDays?: number } = {},
): Promise<string> {
  const created = await createToken(pool, {
    name,
    permissions,
    expiresInDays: o.expiresInDays,
    actor: { kind: 'cli', name: 'test' },
    now: o.now ?? new Date(),
  });
  return created.token;
}

/** Empties the API's tables (the shared resetTables does not know them). */
export async function resetApiTables(pool: pg.Pool): Promise<void> {
  await pool.query('TRUNCATE tasker_console_sessions, tasker_api_tokens, tasker_audit_log');
}

export async function auditRows(pool: pg.Pool, action?: string) {
  const { rows } = await pool.query(
    `SELECT audit_id, at, actor, actor_kind, action, target_kind, target_id, before, after, details
       FROM tasker_audit_log WHERE ($1::text IS NULL OR action = $1) ORDER BY audit_id`,
    [action ?? null],
  );
  return rows;
}

/**
 * Signs in to the console as a browser does (the sign-in form's nonce cookie, then the form) and
 * returns the session cookie (`tasker_session=…`) and the Location it was sent to.
 */
export async function consoleSignIn(
  baseUrl: string,
  token: string,
  o: { next?: string; headers?: Record<string, string> } = {},
): Promise<{ cookie: string; location: string | null; status: number; setCookie: string[] }> {
  const form = await fetch(`${baseUrl}/sign-in`, { headers: o.headers });
  const nonce = /tasker_signin_csrf=([^;]+)/.exec(form.headers.getSetCookie().join('\n'))?.[1];
  if (!nonce) throw new Error('the sign-in page set no nonce cookie');
  const res = await fetch(`${baseUrl}/sign-in`, {
    method: 'POST',
    redirect: 'manual',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      cookie: `tasker_signin_csrf=${nonce}`,
      ...o.headers,
    },
    body: new URLSearchParams({
      _csrf: nonce,
      token,
      ...(o.next === undefined ? {} : { next: o.next }),
    }).toString(),
  });
  await res.text();
  const setCookie = res.headers.getSetCookie();
  const session = setCookie.map((c) => /^tasker_session=([^;]*)/.exec(c)?.[1]).find((v) => v);
  return {
    cookie: session ? `tasker_session=${session}` : '',
    location: res.headers.get('location'),
    status: res.status,
    setCookie,
  };
}
