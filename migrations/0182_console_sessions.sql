-- 0182: console sessions the server can end (issue 23).
--
-- The console's cookie used to hold the API token itself: a copied cookie worked as a bearer token
-- until the token expired, and signing out ended nothing. Now signing in makes a session: the
-- cookie holds a random session secret (32 bytes), and only its SHA-256 is stored here (like a
-- token's). A session is bound to the token it was opened with and has its own expiry
-- (web.session_max_age_minutes) and idle timeout (web.session_idle_timeout_minutes, measured from
-- last_seen_at, which a request moves at most once a minute). Signing out ends it
-- (ended_reason 'signed_out'); revoking its token ends every session of the token in the same
-- transaction ('token_revoked'); an expired or revoked token ends them at once in any case, since
-- every request reads the token with the session. Rows stay after they end (who signed in, from
-- where, until when) and are deleted a week after they expire.
CREATE TABLE tasker_console_sessions (
  secret_sha256 bytea PRIMARY KEY CHECK (octet_length(secret_sha256) = 32),
  token_id text NOT NULL REFERENCES tasker_api_tokens (token_id),
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  last_seen_at timestamptz NOT NULL,
  -- The client's address at sign-in, as the server saw it (behind web.trust_proxy: the proxy's word).
  client_address text,
  ended_at timestamptz,
  ended_reason text CHECK (ended_reason IN ('signed_out', 'token_revoked')),
  CHECK (expires_at > created_at),
  CHECK ((ended_at IS NULL) = (ended_reason IS NULL))
);
-- token revoke: the token's sessions, to end them.
CREATE INDEX idx_console_sessions_token ON tasker_console_sessions (token_id);
-- Deleting sessions a week past their expiry, a bounded number at each sign-in.
CREATE INDEX idx_console_sessions_expires ON tasker_console_sessions (expires_at);
