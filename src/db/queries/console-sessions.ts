import type { Db } from '../pool.ts';

/** Queries on tasker_console_sessions (migrations/0182_console_sessions.sql). */

export type SessionEndReason = 'signed_out' | 'token_revoked';

export interface InsertSessionParams {
  secretSha256: Buffer;
  tokenId: string;
  createdAt: Date;
  expiresAt: Date;
  clientAddress: string | null;
}

export async function insertSession(db: Db, p: InsertSessionParams): Promise<void> {
  await db.query(
    `INSERT INTO tasker_console_sessions (secret_sha256, token_id, created_at, expires_at, last_seen_at, client_address)
     VALUES ($1, $2, $3, $4, $3, $5)`,
    [p.secretSha256, p.tokenId, p.createdAt, p.expiresAt, p.clientAddress],
  );
}

/** A session with the token it is bound to, as one request reads it. */
export interface SessionWithToken {
  token_id: string;
  created_at: Date;
  expires_at: Date;
  last_seen_at: Date;
  ended_at: Date | null;
  ended_reason: SessionEndReason | null;
  token_name: string;
  permissions: string[];
  token_expires_at: Date | null;
  token_revoked_at: Date | null;
}

/** A session by the hash of its secret (primary key), with its token (primary key), or undefined. */
export async function findSession(db: Db, secretSha256: Buffer): Promise<SessionWithToken | undefined> {
  const { rows } = await db.query<SessionWithToken>({
    // Unnamed, like every query here (PgBouncer in transaction mode).
    text: `SELECT s.token_id, s.created_at, s.expires_at, s.last_seen_at, s.ended_at, s.ended_reason,
                  t.name AS token_name, t.permissions, t.expires_at AS token_expires_at, t.revoked_at AS token_revoked_at
             FROM tasker_console_sessions s JOIN tasker_api_tokens t ON t.token_id = s.token_id
            WHERE s.secret_sha256 = $1`,
    values: [secretSha256],
  });
  return rows[0];
}

/**
 * Moves a live session's last_seen_at to now when it is at least `everySeconds` old, so a busy
 * session writes once a minute, not once a request (primary key).
 */
export async function touchSession(
  db: Db,
  secretSha256: Buffer,
  now: Date,
  everySeconds: number,
): Promise<void> {
  await db.query({
    text: `UPDATE tasker_console_sessions SET last_seen_at = $2
            WHERE secret_sha256 = $1 AND ended_at IS NULL AND last_seen_at < $2::timestamptz - make_interval(secs => $3)`,
    values: [secretSha256, now, everySeconds],
  });
}

/** Ends one session (primary key); false when it had already ended or does not exist. */
export async function endSession(
  db: Db,
  secretSha256: Buffer,
  at: Date,
  reason: SessionEndReason,
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE tasker_console_sessions SET ended_at = $2, ended_reason = $3
      WHERE secret_sha256 = $1 AND ended_at IS NULL`,
    [secretSha256, at, reason],
  );
  return (rowCount ?? 0) > 0;
}

/** Ends every live session of a token (idx_console_sessions_token); how many it ended. */
export async function endSessionsOfToken(
  db: Db,
  tokenId: string,
  at: Date,
  reason: SessionEndReason,
): Promise<number> {
  const { rowCount } = await db.query(
    `UPDATE tasker_console_sessions SET ended_at = $2, ended_reason = $3
      WHERE token_id = $1 AND ended_at IS NULL`,
    [tokenId, at, reason],
  );
  return rowCount ?? 0;
}

/** Deletes up to `limit` sessions that expired before `before` (idx_console_sessions_expires). */
export async function deleteExpiredSessions(db: Db, before: Date, limit: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM tasker_console_sessions
      WHERE secret_sha256 IN (SELECT secret_sha256 FROM tasker_console_sessions
                               WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)`,
    [before, limit],
  );
  return rowCount ?? 0;
}
