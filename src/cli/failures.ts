import { redactCredentials } from '../redact.ts';

/**
 * What the person at the terminal reads when a command fails: the cause and the fix, in one or two
 * lines, never a stack trace (that is for --debug). Failures to get a database connection are the
 * ones a newcomer meets first, so each has its own wording.
 */
export interface Target {
  /** host:port/database, no password. */
  display: string;
  host: string;
  port: string;
  database: string;
  user: string;
  embedded: boolean;
}

export function targetOf(url: string, embedded: boolean): Target {
  const parsed = new URL(url);
  const port = parsed.port || '5432';
  const database =
    decodeURIComponent(parsed.pathname.replace(/^\//, '')) || decodeURIComponent(parsed.username);
  return {
    display: `${parsed.hostname}:${port}/${database}${embedded ? ' (embedded)' : ''}`,
    host: parsed.hostname,
    port,
    database,
    user: decodeURIComponent(parsed.username) || 'the current user',
    embedded,
  };
}

export function describeFailure(err: Error, target: Target | undefined): string {
  // A failure wrapped on its way up (pg-boss could not start: …) is described by its cause.
  const code = (err as { code?: string }).code ?? (err.cause as { code?: string } | undefined)?.code;
  const message = redactCredentials(err.message);
  if (!target) return message;
  const where = target.display;
  const fixUrl = target.embedded
    ? 'set DATABASE_URL to a server you run'
    : 'check DATABASE_URL (or database.url)';
  switch (code) {
    case 'ECONNREFUSED':
      return target.embedded
        ? `the embedded PostgreSQL is not running (nothing listens on ${target.host}:${target.port}): start it with \`npm start\` in another terminal, or set DATABASE_URL`
        : `cannot connect to ${where}: nothing listens there (connection refused). Start PostgreSQL there, or ${fixUrl}`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot connect to ${where}: the host ${JSON.stringify(target.host)} cannot be resolved. Check the host name in DATABASE_URL`;
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `cannot connect to ${where}: ${message}. Check the host, the port and any firewall between here and there, or ${fixUrl}`;
    case '28P01':
      return `PostgreSQL at ${where} refused the password of user ${JSON.stringify(target.user)}: check the user and password in DATABASE_URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE)`;
    case '28000':
      return `PostgreSQL at ${where} refused the connection (${message}): ${fixUrl}, or allow this user and host in the server's pg_hba.conf`;
    case '3D000':
      return `the database ${JSON.stringify(target.database)} does not exist on ${target.host}:${target.port}: create it (createdb ${target.database}) or fix the database name in DATABASE_URL`;
    case '53300':
      return `PostgreSQL at ${where} has no free connection slots (${message}): raise the server's max_connections, lower database.max_connections_per_process, or put PgBouncer in front (docs/operating.md, "Scaling out")`;
    case '57P03':
      return `PostgreSQL at ${where} is starting up or shutting down: try again in a moment`;
  }
  if (code === '42501' && /permission denied for database/.test(message)) {
    return `user ${JSON.stringify(target.user)} may not connect to ${where} (${message}): GRANT CONNECT ON DATABASE ${target.database} TO ${target.user}, or use another user`;
  }
  if (/client password must be a string|password must be a non-empty string/.test(message)) {
    return `PostgreSQL at ${where} asks for a password and none was given: put it in DATABASE_URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE) or set PGPASSWORD`;
  }
  if (
    /unsupported startup parameter: (statement_timeout|lock_timeout|idle_in_transaction_session_timeout)/.test(
      message,
    )
  ) {
    return `${where} (PgBouncer?) refuses the session timeouts this process sends when it connects (${message}): add \`ignore_startup_parameters = statement_timeout, lock_timeout, idle_in_transaction_session_timeout\` to pgbouncer.ini and set the timeouts on the server instead (ALTER ROLE … SET statement_timeout …), or set database.session_timeouts = false (docs/scaling.md, "PgBouncer")`;
  }
  if (
    /Connection terminated|ECONNRESET|EPIPE|terminating connection/i.test(message) ||
    code === 'ECONNRESET'
  ) {
    return `the connection to ${where} was cut (${message}): PostgreSQL stopped or restarted, or something between here and there closed it`;
  }
  if (/timeout expired|connection timeout/i.test(message)) {
    return `no answer from ${where} within the connection timeout: check the host, the port and any firewall, or ${fixUrl}`;
  }
  if (code === '42P01' || code === '42883' || /pg-boss is not installed/.test(message)) {
    return `${message}: the schema looks out of date; run \`tasker-lifecycle migrate\``;
  }
  return message;
}
