import type { Db } from '../pool.ts';

/** Queries on tasker_api_tokens (migrations/0080_api_tokens_and_audit.sql). */

export interface TokenRow {
  token_id: string;
  name: string;
  permissions: string[];
  created_at: Date;
  created_by: string;
  expires_at: Date | null;
  revoked_at: Date | null;
  revoked_by: string | null;
}

export interface TokenWithHash extends TokenRow {
  secret_sha256: Buffer;
}

const COLUMNS = 'token_id, name, permissions, created_at, created_by, expires_at, revoked_at, revoked_by';

export interface InsertTokenParams {
  tokenId: string;
  name: string;
  secretSha256: Buffer;
  permissions: readonly string[];
  createdAt: Date;
  createdBy: string;
  expiresAt: Date | null;
}

/** Inserts a token; null when a live token already has this name (idx_api_tokens_live_name). */
export async function insertToken(db: Db, p: InsertTokenParams): Promise<TokenRow | null> {
  const { rows } = await db.query<TokenRow>(
    `INSERT INTO tasker_api_tokens (token_id, name, secret_sha256, permissions, created_at, created_by, expires_at)
     VALUES ($1, $2, $3, $4::text[], $5, $6, $7)
     ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING
     RETURNING ${COLUMNS}`,
    [p.tokenId, p.name, p.secretSha256, p.permissions, p.createdAt, p.createdBy, p.expiresAt],
  );
  return rows[0] ?? null;
}

/** A token by its public id, with its hash (primary key). */
export async function findTokenById(db: Db, tokenId: string): Promise<TokenWithHash | undefined> {
  const { rows } = await db.query<TokenWithHash>({
    // An unnamed statement, like every query here: PgBouncer in transaction mode (1.18) does not
    // carry named prepared statements from one server connection to the next.
    text: `SELECT ${COLUMNS}, secret_sha256 FROM tasker_api_tokens WHERE token_id = $1`,
    values: [tokenId],
  });
  return rows[0];
}

/** Tokens, newest first (idx_api_tokens_created), revoked ones included. */
export async function listTokens(db: Db, limit: number): Promise<TokenRow[]> {
  const { rows } = await db.query<TokenRow>(
    `SELECT ${COLUMNS} FROM tasker_api_tokens ORDER BY created_at DESC, token_id LIMIT $1`,
    [limit],
  );
  return rows;
}

/** Revokes the live token of a name (idx_api_tokens_live_name); null when there is none. */
export async function revokeToken(db: Db, name: string, at: Date, by: string): Promise<TokenRow | null> {
  const { rows } = await db.query<TokenRow>(
    `UPDATE tasker_api_tokens SET revoked_at = $2, revoked_by = $3
      WHERE name = $1 AND revoked_at IS NULL
      RETURNING ${COLUMNS}`,
    [name, at, by],
  );
  return rows[0] ?? null;
}
